"""``torchlime separator save NAME DIR``: keep an Open-Unmix model as a local checkpoint folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import HelpFormatter, add_command, device_of

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "separator", "keep an Open-Unmix model as a local checkpoint folder (for offline use)",
                    "Separator models. `torchlime separator save umxl ./umxl` downloads the published umxl weights "
                    "(once, where the machine is online) and writes them as a checkpoint folder in openunmix's own "
                    "format; copy it to an offline machine and pass --separator ./umxl.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    save = actions.add_parser("save", help="write a separator as a checkpoint folder", formatter_class=HelpFormatter,
                              description="Write an Open-Unmix model as a checkpoint folder (separator.json, "
                                          "<target>.json, <target>.pth) that --separator DIR loads with no network.")
    save.add_argument("name", help="a published Open-Unmix model (umxl, umxhq, umx, umxse) or a checkpoint folder")
    save.add_argument("folder", help="the folder to write (created; it must not hold a checkpoint already)")
    save.add_argument("--random-weights", action="store_true",
                      help="the model's architecture with random weights, no download (for timing and tests: it "
                           "separates nothing meaningful)")
    save.add_argument("--device", default="cpu", help="where the model is loaded")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..music import OpenUnmixSeparator

    folder = Path(args.folder)
    if (folder / "separator.json").exists():
        raise ValueError(f"expected a folder without a checkpoint to write into, got {str(folder)!r}, which already "
                         f"holds separator.json; remove it or pick another folder")
    separator = OpenUnmixSeparator(args.name, pretrained=not args.random_weights, device=device_of(args))
    written = separator.save(folder)
    weights = "random weights" if args.random_weights else "weights"
    print(f"wrote {len(written)} files ({weights} of {args.name}: {', '.join(separator.targets)}) to {folder}")
    print(f"use it with --separator {folder}")
    return 0
