"""Scenario 4, cost growth: time and peak memory of ``MusicLime.explain`` as the problem grows.

Three sweeps, each from a base point (a 10 s mono song at 16 kHz, 4 random stems x 10
segments + 20 lyric lines from the demo tokenizer, ``batch_size`` 100 samples per
forward), with a trivial model (the mean of the audio and of the attention mask: it reads
its inputs once, so almost only the explainer is measured):

- ``n_samples``: 10^2 .. 10^5 samples (the 10 s song on CUDA, a 2 s song on the CPU);
- ``seconds``: 5 .. 240 s songs (n = 200 on CPU, 1000 on CUDA);
- ``features``: 10 .. 10^4 audio features, 5 stems (vocals, drums, bass, piano, other)
  x 2 .. 2000 segments, audio only (n = 1000).

Peak memory is the extra memory the explanation takes over what its inputs already hold:

- CUDA: ``torch.cuda.max_memory_allocated() - memory_allocated()`` at the start (peak
  statistics reset after the warm-up);
- CPU: the resident-set high-water mark, measured in a fresh subprocess per point (so no
  earlier point's allocator cache hides anything): ``VmHWM`` from ``/proc/self/status``
  after resetting it (``/proc/self/clear_refs`` = 5) at the start, minus ``VmRSS`` then;
  where the reset is not allowed, ``getrusage(RUSAGE_SELF).ru_maxrss`` after minus before
  (it then only sees a peak above the setup's). The JSON names the method per point.

Expected: the peak follows the chunk (``batch_size x C x T x 4`` bytes of composed audio
plus the model's temporaries), flat in ``n_samples``, linear in the song length; the
JSON gives ``chunk_bytes`` and ``all_samples_bytes`` (what holding every perturbed
waveform at once, as the reference pipeline's lists do, would take) next to it.

CPU caps (this 2-core machine, the whole suite under 15 minutes): the n_samples sweep on a
2 s song, songs up to 240 s at n = 200, features up to 10^4 at n = 1000; each point's
timed runs stop after ``budget_s`` (at least one). ``--quick`` and ``--tiny`` use a few
points (and one subprocess per sweep, or one in all, to save start-up time).

Run it through the harness: ``python -m benchmarks --only growth [--quick] [--device ...]``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ._context import Context
from ._harness import envelope, fmt_bytes, fmt_s, log, measure

__all__ = ["NAME", "run", "markdown", "targets", "plot", "run_point"]

NAME = "growth"
RATE = 16000
TARGET = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
FIVE_STEMS = ("vocals", "drums", "bass", "piano", "other")


class TrivialModel:
    """Two scores from the mean of the audio and of the attention mask: reads each input once."""

    def __call__(self, audio: torch.Tensor, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        a = audio.mean(dim=(1, 2))
        t = attention_mask.float().mean(1) if attention_mask is not None else torch.zeros_like(a)
        return torch.stack([a - t, a + t], dim=1)


# -- one point (runs in a worker subprocess on CPU) -----------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
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


class _PeakMemory:
    """Extra peak memory of a region, by the best method the device and OS allow."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

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


def _demo_tokenizer() -> Any:
    from importlib import resources

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # LyricsFactorization tokenizes the whole lyrics once, past the model's 128 tokens (it
    # truncates per sample); transformers warns about that on every point.
    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(resources.files("torchlime.music.demo") / "tokenizer"))


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one point and measure its extra peak memory (see the module docstring)."""
    from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
    from torchlime.music.demo import DEMO_MAX_LENGTH, lyric_pool

    device = torch.device(spec["device"])
    S, G, n, bs = spec["stems"], spec["segments"], spec["n_samples"], spec["batch_size"]
    T = int(round(spec["seconds"] * RATE))
    gen = torch.Generator().manual_seed(0)
    stems = (0.1 * torch.randn(S, 1, T, generator=gen)).to(device)
    names = list(FIVE_STEMS) if S == 5 else None
    audio = StemFactorization(stems, sample_rate=RATE, num_segments=G, stem_names=names)
    lyrics = None
    if spec["lyrics"]:
        lyrics = LyricsFactorization("\n".join(lyric_pool()[:20]), _demo_tokenizer(), unit="line",
                                     max_length=DEMO_MAX_LENGTH, device=device)
    explainer = MusicLime(TrivialModel())
    modality = "both" if lyrics is not None else "audio"

    def go(samples: int) -> Any:
        with torch.no_grad():
            return explainer.explain(audio, lyrics, target=[TARGET], n_samples=samples, perturbations_per_eval=bs,
                                     modality=modality, generator=torch.Generator(device).manual_seed(0))

    # Warm-up on a small problem (10 segments at most, one chunk): kernels, tokenizer, thread
    # pools. Not this point itself: at 10^4 features or 10^5 samples that would double its cost.
    small = StemFactorization(stems, sample_rate=RATE, num_segments=min(G, 10), stem_names=names)
    with torch.no_grad():
        explainer.explain(small, lyrics, target=[TARGET], n_samples=min(n, bs), perturbations_per_eval=bs, modality=modality,
                          generator=torch.Generator(device).manual_seed(1))
    with _PeakMemory(device) as mem:
        summary, _ = measure(lambda: go(n), device, repeats=spec["repeats"], warmup=0, budget_s=spec["budget_s"])
    F = audio.num_features + (lyrics.num_features if lyrics is not None else 0)
    return {
        **spec,
        "audio_samples": T,
        "num_features": F,
        "time": summary,
        "peak_bytes": mem.peak_bytes,
        "peak_method": mem.method,
        "stems_bytes": stems.numel() * 4,
        "chunk_bytes": min(bs, n) * T * 4,
        "all_samples_bytes": n * T * 4,
        "masks_bytes": n * F * 4,
    }


def _run_worker(specs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Run points in one fresh subprocess (``python -m benchmarks.bench_growth --worker``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "benchmarks.bench_growth", "--worker", json.dumps(specs)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return [{**s, "error": f"timed out after {timeout_s:.0f} s"} for s in specs]
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return [{**s, "error": f"worker exited {proc.returncode}: {' | '.join(tail)}"} for s in specs]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker_main(arg: str) -> None:
    out = [run_point(spec) for spec in json.loads(arg)]
    sys.stdout.write(json.dumps(out) + "\n")


# -- the sweeps -----------------------------------------------------------------------------


def sweeps(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """The points of each sweep for this device and mode."""
    base = {"device": str(ctx.device), "seconds": 10.0, "stems": 4, "segments": 10, "lyrics": True,
            "batch_size": 100, "n_samples": 1000, "repeats": ctx.repeats or ctx.pick(3, 3, 1, cuda=5),
            "budget_s": ctx.pick(8.0, 3.0, 1.0)}
    n_grid = ctx.pick([100, 1000, 10_000, 100_000], [100, 1000], [100])
    # CPU: the n_samples sweep explains a 2 s song (10^5 samples of 10 s would take minutes
    # here); CUDA: the 10 s song.
    n_seconds = ctx.pick(2.0, 2.0, 2.0, cuda=10.0)
    s_grid = ctx.pick([5, 15, 30, 60, 120, 240], [5, 30], [5])
    f_grid = ctx.pick([10, 100, 1000, 10_000], [10, 100], [10])
    n_for_seconds = ctx.pick(200, 200, 100, cuda=1000)
    n_for_features = ctx.pick(1000, 500, 100)
    return {
        "n_samples": [{**base, "sweep": "n_samples", "n_samples": n, "seconds": n_seconds} for n in n_grid],
        "seconds": [{**base, "sweep": "seconds", "seconds": float(s), "n_samples": n_for_seconds} for s in s_grid],
        "features": [{**base, "sweep": "features", "stems": 5, "segments": f // 5, "lyrics": False,
                      "n_samples": n_for_features} for f in f_grid],
    }


def run(ctx: Context) -> dict[str, Any]:
    """Scenario 4 on one device."""
    started = time.perf_counter()
    grid = sweeps(ctx)
    points: list[dict[str, Any]] = []
    if ctx.cuda:  # in-process: the peak statistics are the allocator's own, reset per point
        isolation = "in-process (CUDA allocator statistics reset per point)"
        for specs in grid.values():
            for spec in specs:
                points.append(_guarded(spec))
                torch.cuda.empty_cache()
                _log_point(points[-1])
    else:
        # Full runs: a fresh subprocess per point. --quick: one per sweep, --tiny: one in all
        # (points in ascending size; the high-water mark is reset per point), to save start-ups.
        groups = ctx.pick([[s] for specs in grid.values() for s in specs], list(grid.values()),
                          [[s for specs in grid.values() for s in specs]])
        isolation = ctx.pick("fresh subprocess per point", "fresh subprocess per sweep", "one subprocess")
        for group in groups:
            for p in _run_worker(group, timeout_s=ctx.pick(400, 200, 120)):
                points.append(p)
                _log_point(p)
    parameters = {
        "model": "trivial: scores from the mean of the audio and of the attention mask",
        "sample_rate": RATE,
        "base": "10 s mono, 4 random stems x 10 segments + 20 lyric lines (demo tokenizer), batch_size 100; "
        "the n_samples sweep uses a %s s song" % n_seconds_of(grid),
        "warmup": "one untimed call on a small problem (<= 10 segments, one chunk) before each point",
        "sweeps": {k: [{kk: s[kk] for kk in ("n_samples", "seconds", "stems", "segments", "lyrics")} for s in v]
                   for k, v in grid.items()},
        "peak_memory": "extra bytes over the inputs already held: CUDA max_memory_allocated; CPU VmHWM/ru_maxrss "
        "in a fresh subprocess per point (see peak_method per point)",
        "cpu_caps": "n_samples sweep on a 2 s song (10 s on CUDA), seconds <= 240 at n=200 (1000 on CUDA), "
        "features <= 1e4 at n=1000; timed runs per point stop after budget_s (at least one)",
        "isolation": isolation,
    }
    body = {"points": points}
    result = envelope(ctx, NAME, parameters, body, started)
    result["memory_bounded_by_chunk"] = memory_bounded(points)
    result["targets"] = targets(result)
    return result


def n_seconds_of(grid: dict[str, list[dict[str, Any]]]) -> float:
    return grid["n_samples"][0]["seconds"]


def _guarded(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_point(spec)
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {**spec, "error": f"out of memory: {str(err).splitlines()[0]}"}


def _log_point(p: dict[str, Any]) -> None:
    if "error" in p:
        log(f"  growth {p['sweep']}: {p['error']}")
    else:
        log(f"  growth {p['sweep']} n={p['n_samples']} {p['seconds']:.0f} s F={p['num_features']}: "
            f"{fmt_s(p['time']['median_s'])}, peak +{fmt_bytes(p['peak_bytes'])}")


def memory_bounded(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Does the peak stay flat in n_samples? Ratio of the peaks at the largest and smallest n."""
    ok = [p for p in points if p.get("sweep") == "n_samples" and "error" not in p]
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


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue asks for the peak to stay bounded by the chunk size; reported with the numbers."""
    from ._context import target

    m = result["memory_bounded_by_chunk"]
    if not m.get("checked"):
        return []
    return [target("peak memory bounded by the chunk, not n_samples (peak growth over n growth)",
                   m["peak_growth"] / m["n_samples_growth"], 0.25, higher_is_better=False,
                   where=f"n_samples x{m['n_samples_growth']:.0f}",
                   note=f"peak at max n {fmt_bytes(m['peak_at_max_n_bytes'])} = {m['peak_over_chunk']:.1f} chunks "
                   f"of {fmt_bytes(m['chunk_bytes'])}; all samples would be {fmt_bytes(m['all_samples_bytes_at_max_n'])}")]


def markdown(result: dict[str, Any]) -> str:
    lines = ["| sweep | n_samples | song | features | time (median) | peak extra memory | chunk audio | all samples |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        if "error" in p:
            lines.append(f"| {p['sweep']} | {p['n_samples']} | {p['seconds']:.0f} s | {p['stems'] * p['segments']} "
                         f"| {p['error']} | | | |")
            continue
        lines.append(f"| {p['sweep']} | {p['n_samples']} | {p['seconds']:.0f} s | {p['num_features']} "
                     f"| {fmt_s(p['time']['median_s'])} | {fmt_bytes(p['peak_bytes'])} | {fmt_bytes(p['chunk_bytes'])} "
                     f"| {fmt_bytes(p['all_samples_bytes'])} |")
    m = result["memory_bounded_by_chunk"]
    if m.get("checked"):
        lines += ["", f"Peak memory vs n_samples: n grew {m['n_samples_growth']:.0f}x, the peak {m['peak_growth']:.2f}x "
                  f"({'bounded by the chunk' if m['bounded'] else 'NOT bounded by the chunk'}; peak at the largest n = "
                  f"{m['peak_over_chunk']:.1f} chunks of composed audio)."]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """2 x 3 panels: time and peak memory against n_samples, song length and feature count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps_ = (("n_samples", "n_samples", "n_samples"), ("seconds", "seconds", "song length (s)"),
               ("features", "num_features", "features"))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for col, (sweep, key, label) in enumerate(sweeps_):
        pts = sorted((p for p in result["points"] if p.get("sweep") == sweep and "error" not in p),
                     key=lambda p: p[key])
        x = [p[key] for p in pts]
        ax_t, ax_m = axes[0, col], axes[1, col]
        ax_t.plot(x, [p["time"]["median_s"] for p in pts], "o-")
        ax_t.set_ylabel("seconds")
        ax_m.plot(x, [p["peak_bytes"] / 1e6 for p in pts], "o-", label="peak extra memory")
        ax_m.plot(x, [p["chunk_bytes"] / 1e6 for p in pts], "k:", label="one chunk of composed audio")
        if sweep == "n_samples":
            ax_m.plot(x, [p["all_samples_bytes"] / 1e6 for p in pts], "r--", label="all samples at once")
        ax_m.set_ylabel("MB")
        for ax in (ax_t, ax_m):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3, which="both")
            ax.set_xlabel(label)
        ax_m.legend(fontsize=7)
    fig.suptitle(f"Cost growth of MusicLime.explain on {result['device']} ({result['mode']})", fontsize=10)
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
