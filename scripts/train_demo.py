"""Train the demo classifier and write its weights, config and tokenizer.

By default the files go into the package (``torchlime/music/demo/``), replacing the
shipped ones, each written atomically (temporary file + ``os.replace``).

Run: python scripts/train_demo.py [--out DIR] [--songs 800] [--epochs 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib

import torch

from torchlime.music.demo import train

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1] / "torchlime" / "music" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=PACKAGE_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--songs", type=int, default=800, help="training songs (default: %(default)s)")
    parser.add_argument("--held-out", type=int, default=200, help="held-out songs (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = train(args.out, n_songs=args.songs, epochs=args.epochs, seed=args.seed, n_held_out=args.held_out)
    print(f"train accuracy {result['train_accuracy']:.3f}, held-out accuracy {result['held_out_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
