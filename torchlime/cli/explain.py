"""``torchlime explain``: explain one song file with your model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ._common import add_run_args, add_song_args, explain, load_model_spec, prepare_song, print_top, write_outputs

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one song with your model")
    add_run_args(p)
    p.add_argument("--audio", required=True, help="audio file (anything soundfile reads)")
    p.add_argument("--lyrics", required=True, help="lyrics text file")
    p.add_argument("--model", required=True, help="module:factory returning forward, sample_rate, tokenizer "
                                                  "(e.g. torchlime.music.demo.factory:factory)")
    add_song_args(p)
    p.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    p.add_argument("--targets", type=int, nargs="+", default=[1])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..music import OpenUnmixSeparator

    device = torch.device(args.device)
    spec = load_model_spec(args.model, device)
    separator = OpenUnmixSeparator(args.separator, device=device)
    audio, lyrics = prepare_song(spec, separator, args.audio, args.lyrics, args, device)
    exp = explain(
        spec.explainer(), audio, lyrics, args.targets, n_samples=args.n_samples, modality=args.modality,
        num_features=args.num_features, generator=torch.Generator(device).manual_seed(args.seed),
        perturbations_per_eval=args.batch_size, show_progress=not args.quiet,
        song_info={"audio": str(args.audio), "lyrics": str(args.lyrics)},
    )
    print_top(exp, list(args.targets), spec.label_names)
    for path in write_outputs(exp, Path(args.out), Path(args.audio).stem, list(args.targets), spec.label_names):
        print(f"wrote {path}")
    return 0
