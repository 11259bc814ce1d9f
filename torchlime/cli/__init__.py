"""The ``torchlime`` console script: ``demo``, ``explain``, ``explain-dataset``, ``aggregate``, ``evaluate``.

One module per subcommand, each with ``add_parser(subparsers)`` and ``run(args)``, over
:mod:`torchlime.cli._common` (the model spec, song loading, shared options, the one call of
``MusicLime.explain``). The CLI is the only layer that touches the terminal.
"""

from __future__ import annotations

import argparse
import sys

from . import aggregate, demo, evaluate, explain, explain_dataset
from ._common import ModelSpec, load_model_spec, prepare_song, read_audio

__all__ = ["main", "build_parser", "ModelSpec", "load_model_spec", "read_audio", "prepare_song"]

COMMANDS = (demo, explain, explain_dataset, aggregate, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="torchlime", description="Batched LIME explanations for music classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchlime`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, RuntimeError, ImportError) as err:  # ImportError: a missing or broken extra
        print(f"torchlime {args.command}: error: {err}", file=sys.stderr)
        return 2
