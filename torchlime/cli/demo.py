"""``torchlime demo``: explain a synthetic demo song with the shipped demo model (no download)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ._common import add_run_args, explain, print_top, write_outputs

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="explain a synthetic demo song with the shipped demo model (no download)")
    add_run_args(p)
    p.add_argument("--song-seed", type=int, default=7)
    p.add_argument("--label", type=int, default=1, choices=[0, 1])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..music import StemFactorization
    from ..music.demo import data as demo_data
    from ..music.demo import factory as demo_factory
    from ._common import ModelSpec

    device = torch.device(args.device)
    spec = ModelSpec.from_factory(demo_factory.factory(device), "torchlime.music.demo.factory:factory")
    song = demo_data.make_song(args.label, args.song_seed)
    audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=10)
    lyrics = spec.lyrics(song.lyrics, "line", device)
    target = args.label
    start = time.perf_counter()
    exp = explain(
        spec.explainer(), audio, lyrics, [target], n_samples=args.n_samples, num_features=args.num_features,
        generator=torch.Generator(device).manual_seed(args.seed), perturbations_per_eval=args.batch_size,
        show_progress=not args.quiet, song_info={"demo_song_seed": args.song_seed, "label": args.label},
    )
    elapsed = time.perf_counter() - start
    print(f"Demo song {args.song_seed} (true label {args.label}); explained in {elapsed:.2f} s "
          f"({args.n_samples} samples, {audio.num_features} audio + {lyrics.num_features} lyric features)")
    print(f"planted cause: drums in segments {song.cause_segments}, lyric lines {song.cause_lines}")
    print_top(exp, [target], spec.label_names)
    for path in write_outputs(exp, Path(args.out), "demo", [target], spec.label_names):
        print(f"wrote {path}")
    return 0
