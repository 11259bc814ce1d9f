"""``torchlime explain``: explain one song file with your model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from .._atomic import remove_stale_temporary_files

from ._common import (
    DEMO_FACTORY,
    MODALITIES,
    SongFiles,
    add_command,
    add_run_args,
    add_song_args,
    add_target_args,
    check_outputs,
    check_run_args,
    check_writable,
    describe_samples,
    device_of,
    explain,
    explanation_settings,
    load_model_spec,
    make_separator,
    parse_targets,
    target_spec,
    prepare_song,
    print_top,
    sampling_options,
    settings_fingerprint,
    song_options,
    write_outputs,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "explain", "explain one song with your model",
                    "Explain one song: separate it (or read its stems), cut the stems into segments and the lyrics "
                    "into lines or words, explain the model's prediction and write <out>/<song>.json, "
                    "<song>_label<k>.png and <song>_label<k>_top_audio.wav (<song>: the audio file's name without "
                    "extension).")
    p.add_argument("--audio", default=None, metavar="FILE",
                   help="the song's audio file (anything soundfile reads) (default: none, which needs --stems; with "
                        "--stems it is the mixture)")
    p.add_argument("--lyrics", required=True, metavar="FILE", help="lyrics text file (UTF-8)")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help=f"a factory returning forward, sample_rate, tokenizer (the shipped demo model: {DEMO_FACTORY})")
    add_song_args(p)
    p.add_argument("--modality", default="both", choices=MODALITIES,
                   help="what is perturbed: both, audio only (lyrics kept) or lyrics only (audio kept)")
    add_target_args(p)
    add_run_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.time()
    check_run_args(args)
    asked = parse_targets(args.target)
    song = SongFiles(lyrics=Path(args.lyrics), audio=Path(args.audio) if args.audio else None,
                     stems=Path(args.stems) if args.stems else None)
    song.check()
    if song.stems is not None and args.separator is not None:
        raise ValueError(f"expected --stems or --separator, got both (--separator {args.separator})")
    options = song_options(args)
    out = Path(args.out)
    check_outputs(out / f"{song.name}.json", song.source, "metadata", "song_info")
    check_writable(out)
    removed = remove_stale_temporary_files(out, started)
    if removed:
        print(f"removed {len(removed)} temporary file(s) an interrupted run left in {out}")
    device = device_of(args)
    separator = make_separator(options, device, args.quiet) if song.stems is None else None
    spec = load_model_spec(args.model, device)
    audio, lyrics = prepare_song(spec, separator, song, options, device)
    start = time.perf_counter()
    exp = explain(
        spec.explainer(), audio, lyrics, target_spec(asked), modality=args.modality,
        num_features=args.num_features, generator=torch.Generator(device).manual_seed(args.seed),
        perturbations_per_eval=args.perturbations_per_eval, show_progress=not args.quiet,
        song_info=_song_info(args, song, options), memory_budget=args.memory_budget, **sampling_options(args),
    )
    elapsed = time.perf_counter() - start
    types = exp.feature_types
    print(f"Explained {song.name} in {elapsed:.2f} s ({describe_samples(exp)}, {types.count('audio')} audio + "
          f"{types.count('lyrics')} lyric features)")
    targets = list(exp.labels)
    print_top(exp, targets, spec.label_names)
    for path in write_outputs(exp, out, song.name, targets, spec.label_names):
        print(f"wrote {path}")
    return 0


def _song_info(args: argparse.Namespace, song: SongFiles, options: Any) -> dict[str, Any]:
    """What the JSON records of the song and the settings it was explained with."""
    settings = explanation_settings(args, options, stems=song.stems is not None)
    return {**song.info(options, args.model), "settings": settings,
            "settings_fingerprint": settings_fingerprint(settings)}
