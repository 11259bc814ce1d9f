"""Scenario 5, the limit: how close torchlime gets to what the hardware and the model allow.

- **Copy bandwidth** of the device: ``dst.copy_(src)`` on a large float32 tensor
  (256 MB on CPU, 2 GB on CUDA: far past the caches), bytes read + written / time.
- **Composition**: :func:`torchlime.functional.compose_segments` through
  :meth:`torchlime.music.StemFactorization.compose` on one chunk of masks, written into a
  reused ``out=`` buffer as ``MusicLime`` does (``fresh_output``: into a fresh allocation,
  whose page faults on CPU cost as much as the composition); bytes moved = bytes written
  (``n x C x T x 4``, the composed audio) + bytes read (the stems ``S x C x T x 4`` and the
  masks), over time; reported as a fraction of the copy bandwidth (the issue's target:
  >= 50%). Composing can never beat writing its output once, which is what the copy
  measures. ``inplace_probe`` times the same products written straight into one
  preallocated output (``torch.mm(z_g, stems[:, c, a:b], out=out[:, c, a:b])``), and
  ``bmm_probe`` all segments in one ``torch.bmm`` per channel through a strided view of the
  output: the benchmark's own sketches, not torchlime code, to tell the hardware's limit
  from the library's (``vs_inplace_probe``: the library's bytes/s over the first's).
  Every configuration times the copy, the library and the sketches round-robin, one run of
  each per round, so a busy machine slows them alike; its fractions are of the copy
  bandwidth measured in those rounds (``copy_bandwidth`` at the top: measured alone first).
- **Explainer share** of the end-to-end run: copied from the one-song scenario when it
  ran in the same invocation, else measured here on a 10 s song (n = 1000; 200 with
  ``--quick``): (wall time - the model's forward) / wall time.

Run it through the harness: ``python -m benchmarks --only limit [--quick] [--device ...]``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ._context import Context, target
from ._fixtures import NUM_LINES, NUM_SEGMENTS, DemoForward, breakdown, make_inputs, make_masks, run_torchlime
from ._harness import envelope, fmt_bytes, fmt_s, log, measure, measure_round_robin, ratio
from ._profile import profile_phases

__all__ = ["NAME", "run", "markdown", "targets"]

NAME = "limit"


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int) -> dict[str, Any]:
    """Bytes read + written per second by ``dst.copy_(src)``."""
    numel = nbytes // 4
    src = torch.empty(numel, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    summary, _ = measure(lambda: dst.copy_(src), device, repeats=repeats, warmup=2)
    moved = 2 * numel * 4
    return {"tensor_bytes": numel * 4, "bytes_moved": moved, "time": summary,
            "bytes_per_s": moved / summary["median_s"], "best_bytes_per_s": moved / summary["min_s"]}


def compose_inplace(stems: torch.Tensor, boundaries: list[tuple[int, int]], masks: torch.Tensor,
                    out: torch.Tensor) -> torch.Tensor:
    """The per-segment products written straight into ``out`` ``(n, C, T)`` (BLAS leading dimension)."""
    S, C, _ = stems.shape
    for g, (a, b) in enumerate(boundaries):
        zg = masks[:, g * S : (g + 1) * S]
        for c in range(C):
            torch.mm(zg, stems[:, c, a:b], out=out[:, c, a:b])
    return out


def compose_bmm(stems: torch.Tensor, masks: torch.Tensor, out: torch.Tensor, segments: int) -> torch.Tensor:
    """All segments in one batched product per channel, written into ``out`` (equal segments only).

    ``(G, n, S) @ (G, S, T/G)`` with the output viewed as ``(G, n, T/G)`` over ``out``'s
    memory (strides ``(T/G, C*T, 1)``): one kernel instead of one per segment.
    """
    S, C, T = stems.shape
    n, Tg = masks.shape[0], T // segments
    zg = masks.reshape(n, segments, S).transpose(0, 1)
    for c in range(C):
        torch.bmm(zg, stems[:, c].reshape(S, segments, Tg).transpose(0, 1),
                  out=out[:, c].view(n, segments, Tg).transpose(0, 1))
    return out


def composition(device: torch.device, name: str, rate: int, seconds: float, channels: int, segments: int,
                chunk: int, repeats: int, copy_src: torch.Tensor, copy_dst: torch.Tensor) -> dict[str, Any]:
    """Bytes per second of ``StemFactorization.compose`` on one chunk, of the sketches and of the copy."""
    from torchlime.music import StemFactorization

    S = 4
    T = int(round(rate * seconds))
    gen = torch.Generator().manual_seed(0)
    stems = (0.1 * torch.randn(S, channels, T, generator=gen)).to(device)
    f = StemFactorization(stems, sample_rate=rate, num_segments=segments)
    masks = torch.bernoulli(torch.full((chunk, f.num_features), 0.5), generator=gen).to(device)
    written = chunk * channels * T * 4
    read = stems.numel() * 4 + masks.numel() * 4
    moved = written + read
    bufs = [torch.empty(chunk, channels, T, device=device) for _ in range(3)]
    fns = {
        "copy": lambda: copy_dst.copy_(copy_src),
        "library": lambda: f.compose(masks, out=bufs[0]),
        "fresh": lambda: f.compose(masks),
        "inplace": lambda: compose_inplace(f.stems, f.boundaries, masks, bufs[1]),
    }
    if T % segments == 0:
        fns["bmm"] = lambda: compose_bmm(f.stems, masks, bufs[2], segments)
    t, outs = measure_round_robin(fns, device, repeats)
    reference = outs["fresh"]
    copy_bps = 2 * copy_src.numel() * 4 / t["copy"]["median_s"]

    def probe(key: str) -> dict[str, Any] | None:
        if key not in t:
            return None
        bps = moved / t[key]["median_s"]
        return {"time": t[key], "bytes_per_s": bps, "fraction_of_copy_bandwidth": bps / copy_bps,
                "same_output": bool(torch.allclose(reference, outs[key], rtol=1e-5, atol=1e-6))}

    library, fresh, inplace, bmm = probe("library"), probe("fresh"), probe("inplace"), probe("bmm")
    one_thread = None
    if device.type == "cpu" and torch.get_num_threads() > 1:
        # The same rounds on one thread: on a shared machine whose other tenants keep its cores
        # busy, every multithreaded BLAS call waits for the scheduler (milliseconds per call),
        # which the default-thread numbers above then measure; one thread measures the code.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t1, _ = measure_round_robin({k: fns[k] for k in ("copy", "library", "inplace", "bmm") if k in fns},
                                        device, repeats)
        finally:
            torch.set_num_threads(threads)
        copy1 = 2 * copy_src.numel() * 4 / t1["copy"]["median_s"]
        frac = {k: moved / t1[k]["median_s"] / copy1 for k in t1 if k != "copy"}
        one_thread = {"copy_bytes_per_s": copy1, "time": t1, "fraction_of_copy_bandwidth": frac["library"],
                      "inplace_fraction_of_copy_bandwidth": frac["inplace"],
                      "bmm_fraction_of_copy_bandwidth": frac.get("bmm"),
                      "vs_inplace_probe": frac["library"] / frac["inplace"]}
    return {
        "name": name, "sample_rate": rate, "seconds": seconds, "channels": channels, "stems": S,
        "segments": segments, "chunk": chunk, "bytes_written": written, "bytes_read": read, "bytes_moved": moved,
        "time": t["library"], "bytes_per_s": library["bytes_per_s"],
        "fraction_of_copy_bandwidth": library["fraction_of_copy_bandwidth"], "same_output": library["same_output"],
        "vs_inplace_probe": library["bytes_per_s"] / inplace["bytes_per_s"],
        "copy": {"time": t["copy"], "bytes_per_s": copy_bps},
        "fresh_output": fresh, "inplace_probe": inplace, "bmm_probe": bmm, "one_thread": one_thread,
    }


def _explainer_share(ctx: Context) -> dict[str, Any]:
    """From the one-song scenario of this run, else one instrumented 10 s song here."""
    music = ctx.earlier.get("music")
    if music is not None:
        return {"source": "the music scenario of this run", "rows": [
            {"seconds": r["seconds"], "n_samples": r["n_samples"],
             "explainer_share": r["torchlime"]["explainer_share"],
             "explainer_share_with_separation": r["torchlime"]["explainer_share_with_separation"],
             "reference_explainer_share": r["reference"]["explainer_share"]} for r in music["rows"]]}
    from torchlime.music.demo import load_demo

    model, tokenizer = load_demo(ctx.device)
    forward = DemoForward(model)
    seconds = ctx.pick(10.0, 10.0, 4.0)
    n = ctx.pick(1000, 200, 40)
    bs = ctx.pick(100, 100, 20)
    song, lyrics = make_inputs(seconds)
    masks = make_masks(n, NUM_SEGMENTS * 4 + NUM_LINES)
    run_torchlime(forward, tokenizer, song, lyrics, masks[: 2 * bs], bs, ctx.device)  # warm-up
    profile, _ = profile_phases(lambda: run_torchlime(forward, tokenizer, song, lyrics, masks, bs, ctx.device),
                                ctx.device)
    phases = breakdown(profile, ctx.cuda)
    total = profile["wall_s"]
    fwd = phases["model forward"]
    return {"source": "measured here (the music scenario did not run in this invocation), one profiled run",
            "rows": [{"seconds": seconds, "n_samples": n, "explainer_share": ratio(total - fwd, total),
                      "explainer_share_with_separation": None, "reference_explainer_share": None,
                      "breakdown_s": phases, "total_s": total}]}


def run(ctx: Context) -> dict[str, Any]:
    """Scenario 5 on one device."""
    started = time.perf_counter()
    device = ctx.device
    repeats = ctx.pick(10, 5, 3, cuda=20)
    nbytes = ctx.pick(256 << 20, 256 << 20, 64 << 20, cuda=2 << 30)
    copy = copy_bandwidth(device, nbytes, repeats)
    log(f"  copy bandwidth: {fmt_bytes(copy['bytes_per_s'])}/s")
    copy_src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    copy_dst = torch.empty_like(copy_src)
    configs = ctx.pick(
        [("scenario 2 song: 10 s at 8 kHz mono, chunk 100", 8000, 10.0, 1, 10, 100),
         ("10 s at 22.05 kHz mono, chunk 100", 22050, 10.0, 1, 10, 100),
         ("10 s at 44.1 kHz stereo, chunk 50", 44100, 10.0, 2, 10, 50)],
        [("scenario 2 song: 10 s at 8 kHz mono, chunk 100", 8000, 10.0, 1, 10, 100),
         ("10 s at 22.05 kHz mono, chunk 100", 22050, 10.0, 1, 10, 100)],
        [("4 s at 8 kHz mono, chunk 20", 8000, 4.0, 1, 10, 20)],
        cuda=[("scenario 2 song: 10 s at 8 kHz mono, chunk 500", 8000, 10.0, 1, 10, 500),
              ("10 s at 22.05 kHz mono, chunk 500", 22050, 10.0, 1, 10, 500),
              ("10 s at 44.1 kHz stereo, chunk 500", 44100, 10.0, 2, 10, 500)],
    )
    comps = []
    for name, rate, seconds, channels, segments, chunk in configs:
        c = composition(device, name, rate, seconds, channels, segments, chunk, repeats, copy_src, copy_dst)
        comps.append(c)
        log(f"  composition {name}: {fmt_bytes(c['bytes_per_s'])}/s = {c['fraction_of_copy_bandwidth']:.0%} of copy "
            f"({c['vs_inplace_probe']:.2f}x the in-place sketch; fresh output {_pct(c['fresh_output'])}; sketches: "
            f"in-place {_pct(c['inplace_probe'])}, one bmm {_pct(c['bmm_probe'])})"
            + ("" if c["one_thread"] is None else
               f"; one thread: {c['one_thread']['fraction_of_copy_bandwidth']:.0%} of copy"))
    del copy_src, copy_dst
    share = _explainer_share(ctx)
    parameters = {
        "repeats": repeats,
        "copy": "dst.copy_(src), float32, bytes_moved = 2 x tensor bytes (read + write)",
        "composition": "StemFactorization.compose(masks, out=buf) on one chunk (no residual), buf reused across "
        "calls as MusicLime reuses it; bytes_moved = written (chunk x C x T x 4) + read (stems + masks); "
        "fraction_of_copy_bandwidth against the copy timed in the same rounds",
        "fresh_output": "StemFactorization.compose(masks): the same into a fresh allocation (page faults included)",
        "round_robin": "per configuration, copy, library, fresh, in-place sketch and bmm sketch run once each per "
        "round, 2 warm-up rounds then `repeats` timed rounds; medians",
        "one_thread": "CPU with more than one torch thread: copy, library and sketches again, round-robin, under "
        "torch.set_num_threads(1) (restored after); fractions of the one-thread copy",
        "inplace_probe": "benchmark-local sketch: torch.mm(z_g, stems[:, c, a:b], out=out[:, c, a:b]) into one "
        "preallocated (chunk, C, T) buffer; same output checked",
        "bmm_probe": "benchmark-local sketch: one torch.bmm per channel over all (equal) segments, "
        "(G, n, S) @ (G, S, T/G) written through a (G, n, T/G) view of a preallocated (chunk, C, T) buffer; "
        "same output checked; null where T is not a multiple of G",
        "explainer_share": "(explanation wall time - model forward) / explanation wall time",
    }
    body = {"copy_bandwidth": copy, "composition": comps, "explainer_share": share}
    result = envelope(ctx, NAME, parameters, body, started)
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issues 12 and 16: composition at >= 50% of the copy bandwidth, and at least as fast as the in-place sketch."""
    comps = result["composition"]
    if not comps:
        return []
    worst = min(comps, key=lambda c: c["fraction_of_copy_bandwidth"])
    slowest = min(comps, key=lambda c: c["vs_inplace_probe"])
    out = [target("composition bytes/s vs measured copy bandwidth", worst["fraction_of_copy_bandwidth"], 0.5,
                  where=f"worst configuration ({worst['name']})",
                  note="benchmark-local sketches of the same products, in place per segment / one bmm: "
                  + ", ".join(f"{_pct(c['inplace_probe'])} / {_pct(c['bmm_probe'])}" for c in comps)),
           target("composition bytes/s vs the in-place per-segment sketch", slowest["vs_inplace_probe"], 1.0,
                  where=f"worst configuration ({slowest['name']})",
                  note="same rounds, same buffers reused: " + ", ".join(f"{c['vs_inplace_probe']:.2f}x" for c in comps))]
    ones = [c for c in comps if c.get("one_thread")]
    if ones:
        worst1 = min(ones, key=lambda c: c["one_thread"]["fraction_of_copy_bandwidth"])
        out.append(target("composition bytes/s vs copy bandwidth, both on one thread",
                          worst1["one_thread"]["fraction_of_copy_bandwidth"], 0.5,
                          where=f"worst configuration ({worst1['name']})",
                          note="torch.set_num_threads(1) for the same rounds; compose vs in-place sketch: "
                          + ", ".join(f"{c['one_thread']['vs_inplace_probe']:.2f}x" for c in ones)))
    return out


def _pct(probe: dict[str, Any] | None) -> str:
    return "n/a" if probe is None else f"{probe['fraction_of_copy_bandwidth']:.0%}"


def markdown(result: dict[str, Any]) -> str:
    copy = result["copy_bandwidth"]
    lines = [f"Copy bandwidth ({fmt_bytes(copy['tensor_bytes'])} tensor, read + write): "
             f"{fmt_bytes(copy['bytes_per_s'])}/s (median; best {fmt_bytes(copy['best_bytes_per_s'])}/s), measured "
             "alone; each row's fractions are of the copy timed round-robin with it.", "",
             "| composition | bytes moved | copy bw (same rounds) | StemFactorization.compose(out=) | bytes/s "
             "| of copy bw | fresh output: of copy bw | sketch: in place per segment | of copy bw "
             "| sketch: one bmm | of copy bw | compose vs in-place sketch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in result["composition"]:
        p, b = c["inplace_probe"], c["bmm_probe"]
        lines.append(f"| {c['name']} | {fmt_bytes(c['bytes_moved'])} | {fmt_bytes(c['copy']['bytes_per_s'])}/s "
                     f"| {fmt_s(c['time']['median_s'])} | {fmt_bytes(c['bytes_per_s'])}/s "
                     f"| {c['fraction_of_copy_bandwidth']:.0%} | {_pct(c['fresh_output'])} "
                     f"| {fmt_s(p['time']['median_s'])} | {_pct(p)} "
                     f"| {fmt_s(b['time']['median_s']) if b else 'n/a'} | {_pct(b)} | {c['vs_inplace_probe']:.2f}x |")
    ones = [c for c in result["composition"] if c.get("one_thread")]
    if ones:
        lines += ["", "The same rounds on one thread (`torch.set_num_threads(1)`, copy included): on a shared machine "
                  "whose cores other processes keep busy, each multithreaded BLAS call of the default-thread rounds "
                  "waits for the scheduler.", "",
                  "| composition | copy bw (1 thread) | compose(out=): of copy bw | sketch in place: of copy bw "
                  "| sketch one bmm: of copy bw | compose vs in-place sketch |", "|---|---:|---:|---:|---:|---:|"]
        for c in ones:
            o = c["one_thread"]
            bmm = o["bmm_fraction_of_copy_bandwidth"]
            lines.append(f"| {c['name']} | {fmt_bytes(o['copy_bytes_per_s'])}/s | {o['fraction_of_copy_bandwidth']:.0%} "
                         f"| {o['inplace_fraction_of_copy_bandwidth']:.0%} | {'n/a' if bmm is None else f'{bmm:.0%}'} "
                         f"| {o['vs_inplace_probe']:.2f}x |")
    share = result["explainer_share"]
    lines += ["", f"Explainer share of the end-to-end wall time ({share['source']}):", "",
              "| song | n | torchlime | torchlime, separation counted as model | reference |", "|---:|---:|---:|---:|---:|"]
    for r in share["rows"]:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.1%}"

        lines.append(f"| {r['seconds']:.0f} s | {r['n_samples']} | {pct(r['explainer_share'])} "
                     f"| {pct(r['explainer_share_with_separation'])} | {pct(r['reference_explainer_share'])} |")
    return "\n".join(lines)
