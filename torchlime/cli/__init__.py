"""The ``torchlime`` console script: ``demo``, ``explain``, ``explain-dataset``, ``aggregate``,
``evaluate`` and ``separator``.

One module per subcommand, each with ``add_parser(subparsers)`` and ``run(args)``, over
:mod:`torchlime.cli._common` (the model spec, song loading, shared options, the one call of
``MusicLime.explain``) and :mod:`torchlime.cli._separation` (separator, stems cache, stem
files). The CLI is the only layer that touches the terminal.
"""

from __future__ import annotations

import argparse
import sys

from . import aggregate, demo, evaluate, explain, explain_dataset, separator
from ._common import ModelSpec, describe_os_error, load_model_spec, prepare_song, read_audio

__all__ = ["main", "build_parser", "ModelSpec", "load_model_spec", "read_audio", "prepare_song"]

COMMANDS = (demo, explain, explain_dataset, aggregate, evaluate, separator)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="torchlime", description="Batched LIME explanations for music classifiers (audio stems x segments + "
                                      "lyrics). `torchlime COMMAND --help` lists a command's options and defaults.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchlime`` console script.

    Returns the exit status: 0, 1 (explain-dataset: some songs failed), 2 (an error, printed
    as one line: a bad option or input file, a file that cannot be read or written, such as
    a read-only folder or a full disk), 130 (interrupted with Ctrl-C).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"\ntorchlime {args.command}: interrupted", file=sys.stderr)
        return 130
    # OSError: a file that cannot be read or written (a read-only folder, a full disk), named
    except OSError as err:
        print(f"torchlime {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    # ImportError: a missing or broken extra
    except (ValueError, RuntimeError, ImportError) as err:
        print(f"torchlime {args.command}: error: {err}", file=sys.stderr)
        return 2
