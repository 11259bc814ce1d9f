"""Scenario 4, cost growth: time and peak memory as the problem grows.

Five sweeps. Three of ``MusicLime.explain`` from a base point (a 10 s mono song at 16 kHz,
4 random stems x 10 segments + 20 lyric lines from the demo tokenizer, 100 samples per
forward call) with a trivial model (the mean of the audio and of the attention mask: it
reads its inputs once, so almost only the explainer is measured):

- ``n_samples``: 10^2 .. 10^5 samples (the 10 s song on CUDA, a 2 s song on the CPU);
- ``seconds``: 5 .. 240 s songs (n = 200 on CPU, 1000 on CUDA);
- ``features``: 10 .. 10^4 audio features, 5 stems (vocals, drums, bass, piano, other)
  x 2 .. 2000 segments, audio only (n = 1000);

and two memory sweeps (issue 15), each point in a fresh subprocess on the CPU:

- ``lime_n``: ``torchlime.Lime`` (its default lasso) on one ``(1, 8)`` input (F = 8) and
  a linear model, n_samples 10^3 .. 10^7, 10^4 samples per forward call: the weighted normal
  equations are sums over samples, so the peak can stay O(F^2) whatever n; the table gives
  the peak per mask entry (n x F);
- ``song_minutes``: ``MusicLime`` with ``memory_budget=256 MB`` on 1 .. 120 minute songs at
  8 kHz (4 stems x 10 segments + 20 lines, n = 64): the peak next to "the song's own stems
  plus the chunk budget" (where the installed torchlime has no ``memory_budget``, a call
  takes ``perturbations_per_eval`` samples: the JSON says so).

Peak memory, per point:

- CUDA: ``torch.cuda.max_memory_allocated()`` less ``memory_allocated()`` at the start
  (``peak_bytes``) or before the inputs were made (``peak_total_bytes``);
- CPU: the resident-set high-water mark ``VmHWM`` after resetting it
  (``/proc/self/clear_refs`` = 5) at the start, less ``VmRSS`` then (``peak_bytes``: extra
  over the inputs already held) or before the inputs were made (``peak_total_bytes``: the
  song's stems included); where the reset is not allowed, ``ru_maxrss`` after minus before.
  The memory sweeps also run the point once more under ``torch.profiler(profile_memory=True)``:
  ``peak_alloc_bytes`` is the highest sum of torch's own allocations during the call
  (independent of the allocator's caching and of other libraries).

Points that would take more than 60% of the machine's RAM (predicted from the inputs and
the sweep's previous point, linearly) are skipped and recorded as skipped; a worker whose
resident set passes 70% of RAM is stopped and recorded as such.

``--quick`` and ``--tiny`` use a few points (the MusicLime sweeps in one subprocess per
sweep, or one in all, to save start-up time). Run it through the harness:
``python -m benchmarks --only growth [--quick] [--device ...]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ._context import Context, target
from ._fixtures import FIVE_STEMS, TARGET, LinearForward, TrivialModel, demo_tokenizer, explain_parameters
from ._fixtures import factorize, music_explain, pool_lyrics, random_stems
from ._harness import envelope, fmt_bytes, fmt_count, fmt_s, log, measure, total_memory_bytes
from ._profile import profile_phases

__all__ = ["NAME", "run", "markdown", "targets", "plot", "run_point", "sweeps"]

NAME = "growth"
RATE = 16000
LONG_RATE = 8000
MEMORY_BUDGET = 256 << 20
LIME_FEATURES = 8
LIME_PPE = 10_000
#: Skip a point predicted to take more than this share of RAM; stop a worker past the second.
SKIP_SHARE, KILL_SHARE = 0.6, 0.7
#: The folder that holds the ``benchmarks`` package as imported (not resolved: under
#: ``--compare-to`` it is a folder with a link to this checkout's benchmarks only, and the
#: torchlime under test comes from PYTHONPATH).
PACKAGE_PARENT = Path(__file__).absolute().parent.parent
MUSIC_SWEEPS = ("n_samples", "seconds", "features")
MEMORY_SWEEPS = ("lime_n", "song_minutes")


# -- peak memory ----------------------------------------------------------------------------


def _status_kb(key: str, pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def resident_bytes(device: torch.device) -> int:
    """What the process holds now: CUDA allocated bytes, or the CPU resident set (0 if unknown)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    kb = _status_kb("VmRSS")
    return 0 if kb is None else kb * 1024


class _PeakMemory:
    """Peak memory of a region over its start and over an earlier ``before`` (bytes held then)."""

    def __init__(self, device: torch.device, before: int | None = None) -> None:
        self.device = device
        self.before = before

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated() - memory_allocated() at start"
        else:
            self.hwm = _reset_hwm() and _status_kb("VmHWM") is not None
            if self.hwm:
                self.base = _status_kb("VmRSS") * 1024
                self.method = "VmHWM (reset via /proc/self/clear_refs) - VmRSS at start, fresh subprocess"
            else:
                self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                self.method = "ru_maxrss after - ru_maxrss before (peak above the setup's only), fresh subprocess"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.hwm:
            peak = _status_kb("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_bytes = max(0, peak - self.base)
        self.peak_total_bytes = None if self.before is None else max(0, peak - self.before)


# -- one point (runs in a worker subprocess on CPU) -----------------------------------------


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one point and measure its peak memory (see the module docstring)."""
    if spec["sweep"] == "lime_n":
        return _lime_point(spec)
    return _music_point(spec)


def _music_point(spec: dict[str, Any]) -> dict[str, Any]:
    from torchlime.music import MusicLime

    device = torch.device(spec["device"])
    S, G, n, bs = spec["stems"], spec["segments"], spec["n_samples"], spec["batch_size"]
    rate = spec.get("rate", RATE)
    budget = spec.get("memory_budget")
    T = int(round(spec["seconds"] * rate))
    names = list(FIVE_STEMS) if S == 5 else None
    tokenizer = demo_tokenizer() if spec["lyrics"] else None
    lyrics_text = pool_lyrics() if spec["lyrics"] else None
    explainer = MusicLime(TrivialModel())
    modality = "both" if spec["lyrics"] else "audio"

    def go(factorization: Any, lyr: Any, samples: int, seed: int = 0) -> Any:
        with torch.no_grad():
            return music_explain(explainer, factorization, lyr, target=[TARGET], n_samples=samples,
                                 perturbations_per_eval=bs, memory_budget=budget, modality=modality,
                                 generator=torch.Generator(device).manual_seed(seed))

    # Warm-up on a small problem (a 1 s song, 10 segments at most, one chunk): kernels, the
    # tokenizer, thread pools, the allocator's first pools; before the inputs are made, so that
    # peak_total_bytes is the point's own (not this point itself: at 10^4 features or 10^5
    # samples that would double its cost).
    small = factorize(random_stems(S, 1, rate, seed=1), rate, lyrics_text, tokenizer, device,
                      num_segments=min(G, 10), stem_names=names)
    go(*small, min(n, bs), seed=1)
    del small
    before = resident_bytes(device)
    stems = random_stems(S, 1, T).to(device)
    audio, lyrics = factorize(stems, rate, lyrics_text, tokenizer, device, num_segments=G, stem_names=names)
    with _PeakMemory(device, before) as mem:
        summary, exp = measure(lambda: go(audio, lyrics, n), device, repeats=spec["repeats"], warmup=0,
                               budget_s=spec["budget_s"])
    F = audio.num_features + (lyrics.num_features if lyrics is not None else 0)
    budget_supported = "memory_budget" in explain_parameters()
    per_call = _samples_per_call(exp)
    out = {
        **spec,
        "audio_samples": T,
        "num_features": F,
        "time": summary,
        "peak_bytes": mem.peak_bytes,
        "peak_total_bytes": mem.peak_total_bytes,
        "peak_method": mem.method,
        "stems_bytes": stems.numel() * 4,
        "chunk_bytes": min(bs, n) * T * 4,
        "all_samples_bytes": n * T * 4,
        "masks_bytes": n * F * 4,
        "memory_budget_supported": budget_supported,
        "samples_per_call": per_call,
    }
    if spec.get("alloc"):
        profile, _ = profile_phases(lambda: go(audio, lyrics, n), device, memory=True)
        out["peak_alloc_bytes"] = profile["peak_alloc_bytes"]
    if budget is not None:
        out["bound_bytes"] = out["stems_bytes"] + (budget if budget_supported else min(bs, n) * T * 4)
    return out


def _samples_per_call(exp: Any) -> int | None:
    """The samples per forward call an explanation records (None where it does not)."""
    meta = getattr(exp, "metadata", None)
    value = meta.get("samples_per_call") if isinstance(meta, dict) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _lime_point(spec: dict[str, Any]) -> dict[str, Any]:
    import torchlime

    device = torch.device(spec["device"])
    F, n, ppe = spec["features"], spec["n_samples"], spec["perturbations_per_eval"]
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(F, 2, generator=gen)
    x = torch.randn(1, F, generator=gen)
    lime = torchlime.Lime(LinearForward(weight.to(device)))
    x = x.to(device)

    def go(samples: int, seed: int = 0) -> Any:
        return lime.attribute(x, target=1, n_samples=samples, perturbations_per_eval=min(ppe, samples),
                              generator=torch.Generator(device).manual_seed(seed))

    go(min(n, 1000), seed=1)  # warm-up: kernels, thread pools, the allocator's first pools
    before = resident_bytes(device)
    with _PeakMemory(device, before) as mem:
        summary, _ = measure(lambda: go(n), device, repeats=spec["repeats"], warmup=0, budget_s=spec["budget_s"])
    out = {
        **spec,
        "num_features": F,
        "time": summary,
        "peak_bytes": mem.peak_bytes,
        "peak_total_bytes": mem.peak_total_bytes,
        "peak_method": mem.method,
        "mask_entries": n * F,
        "masks_bytes": n * F * 4,
        "peak_bytes_per_mask_entry": mem.peak_bytes / (n * F),
    }
    if spec.get("alloc"):
        profile, _ = profile_phases(lambda: go(n), device, memory=True)
        out["peak_alloc_bytes"] = profile["peak_alloc_bytes"]
        out["fit_ops"] = {k: int(v) for k, v in profile["phases"].get("fit", {}).items() if k in ("ops", "kernels")}
    return out


# -- workers --------------------------------------------------------------------------------


def _run_worker(specs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Run points in one fresh subprocess (``python -m benchmarks.bench_growth --worker``).

    The subprocess imports the same ``benchmarks`` and ``torchlime`` as this process (same
    working folder and PYTHONPATH); it is stopped when its resident set passes
    ``KILL_SHARE`` of the machine's RAM.
    """
    cmd = [sys.executable, "-m", "benchmarks.bench_growth", "--worker", json.dumps(specs)]
    limit = KILL_SHARE * (total_memory_bytes() or float("inf"))
    start = time.perf_counter()
    peak_seen = 0
    with subprocess.Popen(cmd, cwd=PACKAGE_PARENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        killed = None
        while proc.poll() is None:
            rss = (_status_kb("VmRSS", proc.pid) or 0) * 1024
            peak_seen = max(peak_seen, rss)
            if rss > limit:
                killed = f"stopped: resident memory {fmt_bytes(rss)} passed {KILL_SHARE:.0%} of RAM"
            elif time.perf_counter() - start > timeout_s:
                killed = f"timed out after {timeout_s:.0f} s"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.2)
        stdout, stderr = proc.communicate()
    if killed:
        return [{**s, "error": killed} for s in specs]
    if proc.returncode != 0:
        tail = (stderr or "").strip().splitlines()[-3:]
        return [{**s, "error": f"worker exited {proc.returncode}: {' | '.join(tail)}"} for s in specs]
    return json.loads(stdout.strip().splitlines()[-1])


def _worker_main(arg: str) -> None:
    out = [run_point(spec) for spec in json.loads(arg)]
    sys.stdout.write(json.dumps(out) + "\n")


# -- the sweeps -----------------------------------------------------------------------------


def sweeps(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """The points of each sweep for this device and mode."""
    repeats = ctx.repeats or ctx.pick(3, 3, 1, cuda=5)
    base = {"device": str(ctx.device), "seconds": 10.0, "stems": 4, "segments": 10, "lyrics": True,
            "batch_size": 100, "n_samples": 1000, "repeats": repeats, "budget_s": ctx.pick(8.0, 3.0, 1.0)}
    n_grid = ctx.pick([100, 1000, 10_000, 100_000], [100, 1000], [100])
    # CPU: the n_samples sweep explains a 2 s song (10^5 samples of 10 s would take minutes
    # here); CUDA: the 10 s song.
    n_seconds = ctx.pick(2.0, 2.0, 2.0, cuda=10.0)
    s_grid = ctx.pick([5, 15, 30, 60, 120, 240], [5, 30], [5])
    f_grid = ctx.pick([10, 100, 1000, 10_000], [10, 100], [10])
    n_for_seconds = ctx.pick(200, 200, 100, cuda=1000)
    n_for_features = ctx.pick(1000, 500, 100)
    lime_grid = ctx.pick([10**3, 10**4, 10**5, 10**6, 10**7], [10**3, 10**5, 10**6], [10**3])
    minutes = ctx.pick([1, 10, 30, 60, 120], [1, 10], [0.1])
    memory = {"repeats": 1, "budget_s": 0.0, "alloc": True}
    return {
        "n_samples": [{**base, "sweep": "n_samples", "n_samples": n, "seconds": n_seconds} for n in n_grid],
        "seconds": [{**base, "sweep": "seconds", "seconds": float(s), "n_samples": n_for_seconds} for s in s_grid],
        "features": [{**base, "sweep": "features", "stems": 5, "segments": f // 5, "lyrics": False,
                      "n_samples": n_for_features} for f in f_grid],
        "lime_n": [{"device": str(ctx.device), "sweep": "lime_n", "features": LIME_FEATURES, "n_samples": n,
                    "perturbations_per_eval": LIME_PPE, **memory} for n in lime_grid],
        "song_minutes": [{**base, "sweep": "song_minutes", "minutes": m, "seconds": 60.0 * m, "rate": LONG_RATE,
                          "n_samples": 64, "memory_budget": MEMORY_BUDGET, **memory} for m in minutes],
    }


def predicted_bytes(spec: dict[str, Any], previous: dict[str, Any] | None) -> int:
    """A generous guess of a point's peak: its inputs and chunk, or the previous point's peak scaled linearly."""
    if spec["sweep"] == "lime_n":
        guess = 48 * spec["n_samples"] * spec["features"]  # today's ~32 bytes per mask entry, and room
        size = spec["n_samples"]
    else:
        T = int(round(spec["seconds"] * spec.get("rate", RATE)))
        chunk = min(spec["batch_size"], spec["n_samples"]) * T * 4
        if spec.get("memory_budget") is not None and "memory_budget" in explain_parameters():
            chunk = min(chunk, spec["memory_budget"] + T * 4)
        guess = spec["stems"] * T * 4 + 2 * chunk
        size = T * spec["n_samples"] * spec["stems"] * spec["segments"]
    if previous is not None and "error" not in previous and "skipped" not in previous:
        prev_size = (previous["n_samples"] if spec["sweep"] == "lime_n" else
                     previous["audio_samples"] * previous["n_samples"] * previous["stems"] * previous["segments"])
        prev_peak = previous.get("peak_total_bytes") or previous["peak_bytes"]
        guess = max(guess, int(prev_peak * size / max(prev_size, 1)))
    return int(guess)


def run(ctx: Context) -> dict[str, Any]:
    """Scenario 4 on one device."""
    started = time.perf_counter()
    grid = sweeps(ctx)
    ram = total_memory_bytes()
    skip_above = None if ram is None else SKIP_SHARE * ram
    points: list[dict[str, Any]] = []

    def admit(spec: dict[str, Any]) -> bool:
        previous = next((p for p in reversed(points) if p["sweep"] == spec["sweep"] and "error" not in p
                         and "skipped" not in p), None)
        guess = predicted_bytes(spec, previous)
        if ctx.cuda:
            free, _ = torch.cuda.mem_get_info(ctx.device)
            limit = SKIP_SHARE * free
        else:
            limit = skip_above
        if limit is not None and guess > limit:
            points.append({**spec, "skipped": f"predicted peak {fmt_bytes(guess)} > {SKIP_SHARE:.0%} of "
                           f"{'free device memory' if ctx.cuda else 'RAM'} ({fmt_bytes(limit / SKIP_SHARE)})"})
            _log_point(points[-1])
            return False
        return True

    if ctx.cuda:  # in-process: the peak statistics are the allocator's own, reset per point
        isolation = "in-process (CUDA allocator statistics reset per point)"
        for specs in grid.values():
            for spec in specs:
                if admit(spec):
                    points.append(_guarded(spec))
                    torch.cuda.empty_cache()
                    _log_point(points[-1])
    else:
        # The memory sweeps: a fresh subprocess per point (--tiny: one for all). The MusicLime
        # sweeps: full runs one per point, --quick one per sweep, --tiny one in all (points in
        # ascending size; the high-water mark is reset per point), to save start-ups.
        music = [s for k in MUSIC_SWEEPS for s in grid[k]]
        memory = [s for k in MEMORY_SWEEPS for s in grid[k]]
        groups = ctx.pick([[s] for s in music + memory],
                          [grid[k] for k in MUSIC_SWEEPS] + [[s] for s in memory],
                          [music + memory])
        isolation = ctx.pick("fresh subprocess per point",
                             "fresh subprocess per MusicLime sweep and per memory-sweep point", "one subprocess")
        for group in groups:
            group = [s for s in group if admit(s)]
            if not group:
                continue
            for p in _run_worker(group, timeout_s=ctx.pick(600, 300, 120)):
                points.append(p)
                _log_point(p)
    parameters = {
        "model": "MusicLime sweeps: trivial, scores from the mean of the audio and of the attention mask; lime_n: "
        f"x @ W with W ({LIME_FEATURES}, 2), target 1",
        "sample_rate": RATE,
        "base": "10 s mono, 4 random stems x 10 segments + 20 lyric lines (demo tokenizer), batch_size 100; "
        "the n_samples sweep uses a %s s song" % grid["n_samples"][0]["seconds"],
        "lime_n": f"torchlime.Lime(model) defaults (lasso), input (1, {LIME_FEATURES}) with the default feature mask "
        f"(F = {LIME_FEATURES}), perturbations_per_eval = min(n, {LIME_PPE}), one timed call",
        "song_minutes": f"MusicLime, {LONG_RATE} Hz mono, 4 random stems x 10 segments + 20 lines, n = 64, "
        f"perturbations_per_eval 100, memory_budget = {MEMORY_BUDGET} bytes (where the installed torchlime takes "
        "it), one timed call; bound_bytes = stems + memory_budget",
        "warmup": "one untimed call on a small problem (<= 10 segments, one chunk; Lime: n = 1000) before each point",
        "sweeps": {k: [{kk: s[kk] for kk in ("n_samples", "seconds", "stems", "segments", "lyrics", "features",
                                              "minutes") if kk in s} for s in v] for k, v in grid.items()},
        "peak_memory": "peak_bytes: extra over what the process held at the start of the timed call(s); "
        "peak_total_bytes: over what it held before the inputs (stems, x) were made; CUDA: max_memory_allocated; "
        "CPU: VmHWM/ru_maxrss in a fresh subprocess (see peak_method per point); peak_alloc_bytes (memory sweeps): "
        "the highest running sum of torch's own allocations on the device in one more call under "
        "torch.profiler(profile_memory=True)",
        "skipping": f"a point whose predicted peak (inputs + chunk, or the sweep's previous peak scaled linearly with "
        f"the size) is over {SKIP_SHARE:.0%} of RAM (CUDA: of free memory) is skipped and recorded; a worker whose "
        f"resident set passes {KILL_SHARE:.0%} of RAM is stopped",
        "cpu_caps": "n_samples sweep on a 2 s song (10 s on CUDA), seconds <= 240 at n=200 (1000 on CUDA), "
        "features <= 1e4 at n=1000; timed runs per point stop after budget_s (at least one)",
        "isolation": isolation,
        "ram_bytes": ram,
    }
    body = {"points": points}
    result = envelope(ctx, NAME, parameters, body, started)
    result["memory_bounded_by_chunk"] = memory_bounded(points)
    result["lime_memory"] = lime_memory(points)
    result["song_memory"] = song_memory(points)
    result["targets"] = targets(result)
    return result


def _guarded(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_point(spec)
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {**spec, "error": f"out of memory: {str(err).splitlines()[0]}"}


def _log_point(p: dict[str, Any]) -> None:
    what = (f"n={p['n_samples']} F={p['features']}" if p["sweep"] == "lime_n" else
            f"n={p['n_samples']} {p['seconds']:.0f} s {p['stems']}x{p['segments']}")
    if "skipped" in p:
        log(f"  growth {p['sweep']} {what}: skipped, {p['skipped']}")
    elif "error" in p:
        log(f"  growth {p['sweep']} {what}: {p['error']}")
    else:
        log(f"  growth {p['sweep']} {what}: {fmt_s(p['time']['median_s'])}, peak +{fmt_bytes(p['peak_bytes'])}"
            + (f", torch allocations {fmt_bytes(p['peak_alloc_bytes'])}" if p.get("peak_alloc_bytes") is not None
               else ""))


def _ok(points: list[dict[str, Any]], sweep: str) -> list[dict[str, Any]]:
    return [p for p in points if p.get("sweep") == sweep and "error" not in p and "skipped" not in p]


def memory_bounded(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Does the peak stay flat in n_samples? Ratio of the peaks at the largest and smallest n."""
    ok = _ok(points, "n_samples")
    if len(ok) < 2:
        return {"checked": False, "note": "fewer than two n_samples points"}
    lo, hi = min(ok, key=lambda p: p["n_samples"]), max(ok, key=lambda p: p["n_samples"])
    lo_peak = max(lo["peak_bytes"], 1)
    grow_n = hi["n_samples"] / lo["n_samples"]
    grow_peak = hi["peak_bytes"] / lo_peak
    return {
        "checked": True,
        "n_samples_growth": grow_n,
        "peak_growth": grow_peak,
        "peak_at_max_n_bytes": hi["peak_bytes"],
        "chunk_bytes": hi["chunk_bytes"],
        "all_samples_bytes_at_max_n": hi["all_samples_bytes"],
        "peak_over_chunk": hi["peak_bytes"] / hi["chunk_bytes"],
        # Masks (n x F floats), outputs and weights do grow with n; they are small next to audio.
        "bounded": hi["peak_bytes"] < 0.25 * hi["all_samples_bytes"] and grow_peak < 0.25 * grow_n,
    }


def lime_memory(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Lime at F = 8: how the peak grows with n (flat is O(F^2); linear is O(nF))."""
    ok = _ok(points, "lime_n")
    if len(ok) < 2:
        return {"checked": False, "note": "fewer than two lime_n points"}
    lo, hi = min(ok, key=lambda p: p["n_samples"]), max(ok, key=lambda p: p["n_samples"])
    grow_n = hi["n_samples"] / lo["n_samples"]
    return {
        "checked": True,
        "n_samples_growth": grow_n,
        "peak_growth": hi["peak_bytes"] / max(lo["peak_bytes"], 1),
        "max_n": hi["n_samples"],
        "peak_at_max_n_bytes": hi["peak_bytes"],
        "peak_alloc_at_max_n_bytes": hi.get("peak_alloc_bytes"),
        "bytes_per_mask_entry_at_max_n": hi["peak_bytes_per_mask_entry"],
        "masks_float32_bytes_at_max_n": hi["masks_bytes"],
    }


def song_memory(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Long songs: the peak (stems included) over the song's stems plus the chunk budget."""
    ok = [p for p in _ok(points, "song_minutes") if p.get("peak_total_bytes") is not None]
    if not ok:
        return {"checked": False, "note": "no song_minutes point"}
    worst = max(ok, key=lambda p: p["peak_total_bytes"] / p["bound_bytes"])
    longest = max(ok, key=lambda p: p["seconds"])
    return {
        "checked": True,
        "worst_peak_over_bound": worst["peak_total_bytes"] / worst["bound_bytes"],
        "worst_minutes": worst["minutes"],
        "longest_minutes": longest["minutes"],
        "peak_at_longest_bytes": longest["peak_total_bytes"],
        "bound_at_longest_bytes": longest["bound_bytes"],
        "memory_budget_supported": all(p["memory_budget_supported"] for p in ok),
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issues 5 and 15: the peak bounded by the chunk as n grows (MusicLime, Lime), by stems + budget as songs grow."""
    out = []
    m = result["memory_bounded_by_chunk"]
    if m.get("checked"):
        out.append(target("peak memory bounded by the chunk, not n_samples (peak growth over n growth)",
                          m["peak_growth"] / m["n_samples_growth"], 0.25, higher_is_better=False,
                          where=f"n_samples x{m['n_samples_growth']:.0f}",
                          note=f"peak at max n {fmt_bytes(m['peak_at_max_n_bytes'])} = {m['peak_over_chunk']:.1f} "
                          f"chunks of {fmt_bytes(m['chunk_bytes'])}; all samples would be "
                          f"{fmt_bytes(m['all_samples_bytes_at_max_n'])}"))
    lm = result.get("lime_memory", {})
    if lm.get("checked"):
        out.append(target(f"Lime F={LIME_FEATURES}: peak memory per mask entry at the largest n (4 = one float32 copy "
                          "of the masks)", lm["bytes_per_mask_entry_at_max_n"], 4.0, higher_is_better=False,
                          unit="bytes", where=f"n = {lm['max_n']:.0e}",
                          note=f"peak {fmt_bytes(lm['peak_at_max_n_bytes'])} (torch allocations "
                          f"{fmt_bytes(lm['peak_alloc_at_max_n_bytes'])}); n grew {lm['n_samples_growth']:.0f}x, the "
                          f"peak {lm['peak_growth']:.0f}x; flat in n (O(F^2) normal equations) goes to 0 per entry"))
    sm = result.get("song_memory", {})
    if sm.get("checked"):
        out.append(target("long songs: peak memory over (the song's stems + the chunk budget)",
                          sm["worst_peak_over_bound"], 1.0, higher_is_better=False,
                          where=f"worst point ({sm['worst_minutes']} min at {LONG_RATE} Hz)",
                          note=f"{sm['longest_minutes']} min: peak {fmt_bytes(sm['peak_at_longest_bytes'])}, stems + "
                          f"budget {fmt_bytes(sm['bound_at_longest_bytes'])}"
                          + ("" if sm["memory_budget_supported"] else "; memory_budget not supported by this "
                             "torchlime: the bound uses its perturbations_per_eval chunk")))
    return out


def markdown(result: dict[str, Any]) -> str:
    points = result["points"]
    lines = ["| sweep | n_samples | song | features | time (median) | peak extra memory | chunk audio | all samples |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in (p for p in points if p["sweep"] in MUSIC_SWEEPS):
        head = f"| {p['sweep']} | {p['n_samples']} | {p['seconds']:.0f} s "
        if "error" in p or "skipped" in p:
            lines.append(head + f"| {p['stems'] * p['segments']} | {p.get('error') or 'skipped: ' + p['skipped']} "
                         "| | | |")
            continue
        lines.append(head + f"| {p['num_features']} | {fmt_s(p['time']['median_s'])} | {fmt_bytes(p['peak_bytes'])} "
                     f"| {fmt_bytes(p['chunk_bytes'])} | {fmt_bytes(p['all_samples_bytes'])} |")
    m = result["memory_bounded_by_chunk"]
    if m.get("checked"):
        lines += ["", f"Peak memory vs n_samples: n grew {m['n_samples_growth']:.0f}x, the peak {m['peak_growth']:.2f}x "
                  f"({'bounded by the chunk' if m['bounded'] else 'NOT bounded by the chunk'}; peak at the largest n = "
                  f"{m['peak_over_chunk']:.1f} chunks of composed audio)."]
    lime = [p for p in points if p["sweep"] == "lime_n"]
    if lime:
        lines += ["", f"`torchlime.Lime` at F = {LIME_FEATURES} (default lasso, {LIME_PPE} samples per forward call; "
                  "fresh subprocess per point):", "",
                  "| n_samples | time | peak extra RSS | torch allocations (peak) | bytes per mask entry "
                  "| float32 masks | fit ops / kernels |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for p in lime:
            if "error" in p or "skipped" in p:
                lines.append(f"| {p['n_samples']:.0e} | {p.get('error') or 'skipped: ' + p['skipped']} | | | | | |")
                continue
            fit = p.get("fit_ops") or {}
            lines.append(f"| {p['n_samples']:.0e} | {fmt_s(p['time']['median_s'])} | {fmt_bytes(p['peak_bytes'])} "
                         f"| {fmt_bytes(p.get('peak_alloc_bytes'))} | {p['peak_bytes_per_mask_entry']:.1f} "
                         f"| {fmt_bytes(p['masks_bytes'])} "
                         f"| {fmt_count(fit.get('ops'))} / {fmt_count(fit.get('kernels'))} |")
    songs = [p for p in points if p["sweep"] == "song_minutes"]
    if songs:
        lines += ["", f"`MusicLime` on long songs at {LONG_RATE} Hz, memory_budget {fmt_bytes(MEMORY_BUDGET)} "
                  "(n = 64; fresh subprocess per point); peak with the stems, against the stems plus the budget:", "",
                  "| song | samples | stems | samples per call | time | peak RSS (with stems) | torch allocations "
                  "(peak) | stems + budget | peak / (stems + budget) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in songs:
            head = f"| {p['minutes']:g} min "
            if "error" in p or "skipped" in p:
                lines.append(head + f"| {p.get('error') or 'skipped: ' + p['skipped']} | | | | | | | |")
                continue
            lines.append(head + f"| {fmt_count(p['audio_samples'])} | {fmt_bytes(p['stems_bytes'])} "
                         f"| {p['samples_per_call'] if p['samples_per_call'] is not None else 'n/a'} "
                         f"| {fmt_s(p['time']['median_s'])} | {fmt_bytes(p['peak_total_bytes'])} "
                         f"| {fmt_bytes(p.get('peak_alloc_bytes'))} | {fmt_bytes(p['bound_bytes'])} "
                         f"| {p['peak_total_bytes'] / p['bound_bytes']:.2f} |")
        if not all(p.get("memory_budget_supported", True) for p in songs if "time" in p):
            lines += ["", "This torchlime's `MusicLime.explain` takes no `memory_budget`: a call composes "
                      "`perturbations_per_eval` samples, and the bound uses that chunk."]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Time and peak memory against n_samples, song length and feature count, Lime's n and long songs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps_ = (("n_samples", "n_samples", "n_samples"), ("seconds", "seconds", "song length (s)"),
               ("features", "num_features", "features"), ("lime_n", "n_samples", f"Lime n_samples (F={LIME_FEATURES})"),
               ("song_minutes", "minutes", f"song length (min, {LONG_RATE} Hz)"))
    fig, axes = plt.subplots(2, len(sweeps_), figsize=(4 * len(sweeps_), 6.5))
    for col, (sweep, key, label) in enumerate(sweeps_):
        pts = sorted(_ok(result["points"], sweep), key=lambda p: p[key])
        x = [p[key] for p in pts]
        ax_t, ax_m = axes[0, col], axes[1, col]
        ax_t.plot(x, [p["time"]["median_s"] for p in pts], "o-")
        ax_t.set_ylabel("seconds")
        if sweep in MUSIC_SWEEPS:
            ax_m.plot(x, [p["peak_bytes"] / 1e6 for p in pts], "o-", label="peak extra memory")
            ax_m.plot(x, [p["chunk_bytes"] / 1e6 for p in pts], "k:", label="one chunk of composed audio")
            if sweep == "n_samples":
                ax_m.plot(x, [p["all_samples_bytes"] / 1e6 for p in pts], "r--", label="all samples at once")
        elif sweep == "lime_n":
            ax_m.plot(x, [p["peak_bytes"] / 1e6 for p in pts], "o-", label="peak extra RSS")
            ax_m.plot(x, [(p.get("peak_alloc_bytes") or 0) / 1e6 for p in pts], "s--", label="torch allocations")
            ax_m.plot(x, [p["masks_bytes"] / 1e6 for p in pts], "k:", label="float32 masks (n x F)")
        else:
            ax_m.plot(x, [p["peak_total_bytes"] / 1e6 for p in pts], "o-", label="peak RSS with stems")
            ax_m.plot(x, [(p.get("peak_alloc_bytes") or 0) / 1e6 for p in pts], "s--", label="torch allocations")
            ax_m.plot(x, [p["bound_bytes"] / 1e6 for p in pts], "k:", label="stems + budget")
        ax_m.set_ylabel("MB")
        for ax in (ax_t, ax_m):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3, which="both")
            ax.set_xlabel(label)
        ax_m.legend(fontsize=7)
    fig.suptitle(f"Cost growth on {result['device']} ({result['mode']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.bench_growth --worker '<json list of points>' "
                 "(the harness runs this; use python -m benchmarks --only growth)")
