"""``torchlime demo``: explain a synthetic demo song with the shipped demo model (no download)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ._common import (
    DEMO_FACTORY,
    ModelSpec,
    add_command,
    add_run_args,
    add_target_args,
    check_run_args,
    describe_samples,
    device_of,
    explain,
    parse_targets,
    target_spec,
    print_top,
    sampling_options,
    write_outputs,
)

__all__ = ["add_parser", "run", "demo_song"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", "explain a synthetic demo song with the shipped demo model (no download)",
                    "Synthesise a demo song (4 stems at 8 kHz, 12 lyric lines) whose class is planted (dense drums "
                    "in segments 2-4 and two trigger lines make it positive), explain it with the shipped demo "
                    "classifier and write <out>/demo.json, demo_label<k>.png and demo_label<k>_top_audio.wav.")
    add_run_args(p)
    p.add_argument("--song-seed", type=int, default=7, help="seed of the synthetic song")
    p.add_argument("--label", type=int, default=1, choices=[0, 1],
                   help="the song's planted class: 1 positive (the cause planted), 0 negative")
    add_target_args(p)
    p.set_defaults(run=run)


def demo_song(label: int, song_seed: int, num_segments: int, unit: str, device: torch.device) -> tuple:
    """The demo model's spec, a demo song's factorizations and what the JSON records of it."""
    from ..music import StemFactorization
    from ..music.demo import data as demo_data
    from ..music.demo import factory as demo_factory

    spec = ModelSpec.from_factory(demo_factory.factory(device), DEMO_FACTORY)
    song = demo_data.make_song(label, song_seed)
    audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=num_segments)
    lyrics = spec.lyrics(song.lyrics, unit, device)
    info = {"demo_song_seed": song_seed, "label": label, "model": DEMO_FACTORY, "segments": num_segments,
            "unit": unit, "planted_cause": song.cause_features + [song.lines[i] for i in song.cause_lines]}
    return spec, audio, lyrics, info, song


def run(args: argparse.Namespace) -> int:
    check_run_args(args)
    asked = parse_targets(args.target)
    device = device_of(args)
    spec, audio, lyrics, info, song = demo_song(args.label, args.song_seed, 10, "line", device)
    start = time.perf_counter()
    exp = explain(
        spec.explainer(), audio, lyrics, target_spec(asked), num_features=args.num_features,
        generator=torch.Generator(device).manual_seed(args.seed), perturbations_per_eval=args.perturbations_per_eval,
        show_progress=not args.quiet, song_info=info, memory_budget=args.memory_budget, **sampling_options(args),
    )
    elapsed = time.perf_counter() - start
    print(f"Demo song {args.song_seed} (true label {args.label}); explained in {elapsed:.2f} s "
          f"({describe_samples(exp)}, {audio.num_features} audio + {lyrics.num_features} lyric features)")
    print(f"planted cause: drums in segments {song.cause_segments}, lyric lines {song.cause_lines}")
    targets = list(exp.labels)
    print_top(exp, targets, spec.label_names)
    for path in write_outputs(exp, Path(args.out), "demo", targets, spec.label_names):
        print(f"wrote {path}")
    return 0
