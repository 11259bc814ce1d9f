"""Scenario 3, many songs: explanations per second as the number of songs per call grows.

m songs of the same shape (8.19 s demo songs at 8 kHz: the demo model's whole window,
4 stems x 10 segments + 20 lyric lines, n samples each) explained

- **batched**: one ``MusicLime.explain([audio_1..audio_m], [lyrics_1..lyrics_m], ...,
  songs_per_batch=m)`` call, which runs the forwards of the m songs together;
- **looped**: ``explain(audio_i, lyrics_i, ...)`` once per song, one after the other.

``songs_per_batch`` is being added to ``MusicLime.explain``; where the installed
torchlime does not take it yet (checked with ``inspect.signature``) the batched side
passes the lists without it (the explainer then loops inside) and the JSON says
``batched_songs_supported: false``. Explanations per second = m / wall time of the call
(the factorizations are built once per song, timed apart as "setup", and shared by
both sides). Songs per call: 1, 4, 16 on CPU and 1, 4, 16, 64 on CUDA.

Run it through the harness: ``python -m benchmarks --only many_songs [--quick] [--device ...]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ._context import Context
from ._fixtures import (
    NUM_SEGMENTS, TARGET, DemoForward, explain_parameters, factorize, fresh_tokenizer, make_inputs, music_explain,
)
from ._harness import envelope, fmt_count, fmt_s, fmt_x, log, measure, measure_round_robin, ratio
from ._profile import profile_phases, ranged

__all__ = ["NAME", "run", "markdown", "targets", "plot"]

NAME = "many_songs"


def batched_songs_supported() -> bool:
    """Whether ``MusicLime.explain`` takes ``songs_per_batch``."""
    return "songs_per_batch" in explain_parameters()


def run(ctx: Context) -> dict[str, Any]:
    """Scenario 3 on one device."""
    from torchlime.music import MusicLime
    from torchlime.music.demo import load_demo

    started = time.perf_counter()
    device = ctx.device
    songs_per_call = ctx.pick([1, 4, 16], [1, 4], [1, 2], cuda=[1, 4, 16, 64])
    n_samples = ctx.pick(300, 100, 20, cuda=1000)
    # Rows per forward call: on CPU 100 per song (the model is compute-bound, bigger batches
    # gain little); on CUDA up to 8192 rows per call on both sides (a looped song gets all its
    # n in one forward, m batched songs get 8192 / m each), so batching is not credited with
    # a bigger batch than the loop may use.
    max_rows = ctx.pick(None, None, None, cuda=8192)
    per_song = ctx.pick(100, 100, 20)
    repeats = ctx.n_repeats(1, 1) if not ctx.cuda else ctx.n_repeats(3, 1)
    supported = batched_songs_supported()

    model, tokenizer = load_demo(device)
    forward = DemoForward(model)
    seconds = forward.max_samples / forward.sample_rate
    songs = [make_inputs(seconds, seed=100 + i) for i in range(max(songs_per_call))]
    stems = [s.stems.to(device) for s, _ in songs]
    explainer = MusicLime(ranged("model", forward))

    def setup(i: int, tok: Any) -> tuple[Any, Any]:
        song, lyrics = songs[i]
        return factorize(stems[i], song.sample_rate, lyrics, tok, device)

    def batch_size(m: int) -> int:
        return per_song if max_rows is None else max(1, min(n_samples, max_rows // m))

    def batched(pairs: list[tuple[Any, Any]]) -> Any:
        m = len(pairs)
        kwargs: dict[str, Any] = dict(n_samples=n_samples, generator=torch.Generator(device).manual_seed(0))
        if supported:
            kwargs["songs_per_batch"] = m
        with torch.no_grad():
            return music_explain(explainer, [a for a, _ in pairs], [l for _, l in pairs], target=[TARGET],
                                 perturbations_per_eval=batch_size(m), **kwargs)

    def looped(pairs: list[tuple[Any, Any]]) -> Any:
        out = []
        gen = torch.Generator(device).manual_seed(0)
        for a, l in pairs:
            with torch.no_grad():
                out.append(music_explain(explainer, a, l, target=[TARGET], n_samples=n_samples,
                                         perturbations_per_eval=batch_size(1), generator=gen))
        return out

    rows = []
    batched([setup(0, tokenizer)])  # warm-up: kernels, tokenizer, allocator
    for m in songs_per_call:
        # The factorizations (stems cut, lyrics tokenized once and the fast path verified) are
        # built once per song, timed apart, and shared by both sides.
        # One tokenizer object per size, unseen before (songs share a forward call only with one
        # tokenizer): every song's first setup, its fast-path check included.
        tok = fresh_tokenizer(tokenizer)
        setup_time, pairs = measure(lambda: [setup(i, tok) for i in range(m)], device, repeats=1, warmup=0)
        rec: dict[str, Any] = {"songs_per_call": m, "n_samples": n_samples,
                               "batch_size": {"batched": batch_size(m), "looped": batch_size(1)},
                               "rows_per_forward": {"batched": batch_size(m) * (m if supported else 1),
                                                    "looped": batch_size(1)},
                               "setup": setup_time}
        # Round-robin, one run of each side per round. On CUDA one warm-up round per size (the
        # allocator's first call at a new size is slow); on CPU none (the timed run would double).
        sides = {"batched": lambda: batched(pairs), "looped": lambda: looped(pairs)}
        times, outs = measure_round_robin(sides, device, repeats, warmup=1 if ctx.cuda else 0)
        for side, fn in sides.items():
            summary, out = times[side], outs[side]
            profile, _ = profile_phases(fn, device)
            ops = {k: int(v) for k, v in profile["total"].items() if k in ("ops", "kernels", "scalar_reads")}
            rec[side] = {**summary, "explanations_per_s": m / summary["median_s"],
                         "explanations_per_s_with_setup": m / (summary["median_s"] + setup_time["median_s"]),
                         "explanations": len(out) if isinstance(out, list) else 1,
                         "ops": ops, "ops_per_song": ops["ops"] / m, "ops_by_phase": {
                             k: int(v["ops"]) for k, v in profile["phases"].items()}}
        rec["speedup"] = ratio(rec["looped"]["median_s"], rec["batched"]["median_s"])
        rows.append(rec)
        log(f"  many songs m={m}: batched {rec['batched']['explanations_per_s']:.2f}/s, "
            f"looped {rec['looped']['explanations_per_s']:.2f}/s (setup {fmt_s(setup_time['median_s'] / m)} per song; "
            f"ops per song {fmt_count(rec['batched']['ops_per_song'])} / {fmt_count(rec['looped']['ops_per_song'])})")
    parameters = {
        "songs_per_call": songs_per_call,
        "n_samples_per_song": n_samples,
        "batch_size": "per song per forward call: %s" % (
            f"{per_song} on both sides" if max_rows is None else
            f"looped min(n, {max_rows}), batched min(n, {max_rows} // m) (at most {max_rows} rows per forward)"),
        "repeats": repeats,
        "song_seconds": seconds,
        "features": f"4 stems x {NUM_SEGMENTS} segments + 20 lyric lines",
        "songs": "demo songs (class 1), seeds 100.., same length (same audio shape)",
        "model": "torchlime.music.demo (shipped weights), probabilities",
        "batched_call": "MusicLime.explain(list of StemFactorization, list of LyricsFactorization, target=[1], "
        "n_samples, batch_size, generator, songs_per_batch=m)" if supported else
        "MusicLime.explain(lists, ...) WITHOUT songs_per_batch (not supported by this torchlime: it loops inside)",
        "looped_call": "MusicLime.explain(audio_i, lyrics_i, ...) for each song",
        "timed": "explanations_per_s = songs / median wall time of the explain call(s), batched and looped timed "
        "round-robin (one run of each per round); the factorizations (StemFactorization + LyricsFactorization "
        "per song: setup) are built once per size, timed apart and shared by both sides; "
        "explanations_per_s_with_setup adds them",
        "ops": "one more run of each side under torch.profiler: aten operator calls (nested included), kernels "
        "and scalar reads of the whole call (see the music scenario), ops_per_song = ops / songs per call, "
        "ops_by_phase by the engine's ranges (model = the demo model)",
    }
    body = {"batched_songs_supported": supported, "rows": rows}
    result = envelope(ctx, NAME, parameters, body, started)
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue sets no number for this scenario: it is reported, not checked."""
    return []


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if not result["batched_songs_supported"]:
        lines += ["`songs_per_batch` is not in this torchlime's `MusicLime.explain`: the batched column passes "
                  "the song lists without it (batched_songs_supported: false).", ""]
    lines += ["| songs per call | n per song | rows per forward (batched / looped) | batched expl/s | looped expl/s "
              "| speedup | setup per song | batched expl/s with setup | ops per song batched / looped |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        rows = r["rows_per_forward"]
        lines.append(f"| {r['songs_per_call']} | {r['n_samples']} | {rows['batched']} / {rows['looped']} "
                     f"| {r['batched']['explanations_per_s']:.2f} | {r['looped']['explanations_per_s']:.2f} "
                     f"| {fmt_x(r['speedup'])} | {fmt_s(r['setup']['median_s'] / r['songs_per_call'])} "
                     f"| {r['batched']['explanations_per_s_with_setup']:.2f} "
                     f"| {fmt_count(r['batched']['ops_per_song'])} / {fmt_count(r['looped']['ops_per_song'])} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Explanations per second vs songs per call, batched and looped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    m = [r["songs_per_call"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for side, style in (("batched", "o-"), ("looped", "s--")):
        ax.plot(m, [r[side]["explanations_per_s"] for r in rows], style, label=side)
    ax.plot(m, [r["batched"]["explanations_per_s_with_setup"] for r in rows], "o:", color="gray",
            label="batched, with factorization setup")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("songs per call")
    ax.set_ylabel("explanations / s")
    supported = "" if result["batched_songs_supported"] else " (songs_per_batch not supported yet)"
    ax.set_title(f"Many songs on {result['device']}{supported}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
