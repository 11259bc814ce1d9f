"""``torchlime explain-dataset``: explanations of every song of a CSV manifest.

It reads a CSV manifest (``audio``, ``lyrics``, optional ``id`` and ``label``; relative
paths are relative to the manifest's folder), writes one explanation JSON per song
atomically (``<out>/<id>.json``), skips songs whose JSON is already there (so a rerun after
a crash redoes no finished song), and ends with the global importances of all songs
(``<out>/global_importance.json`` and ``.png``). Under ``torchrun`` every process takes the
songs ``rank::world_size`` on its own device and the aggregate is reduced with
torchmetrics' sync over ``torch.distributed``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._common import add_run_args, add_song_args, explain, load_model_spec, prepare_song
from .aggregate import GLOBAL_NAME, add_aggregation_args, make_aggregator, write_global

__all__ = ["ManifestRow", "read_manifest", "song_seed", "add_parser", "run"]


@dataclass
class ManifestRow:
    """One song of a manifest: where its files are, its id and (optional) true label."""

    id: str
    audio: Path
    lyrics: Path
    label: str | None
    line: int  # line number in the manifest, for messages


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a CSV manifest with columns ``audio``, ``lyrics`` and optional ``id``, ``label``.

    Raises:
        ValueError: a missing file, missing columns, empty rows, duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected a manifest CSV file, got {str(path)!r}, which does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "audio" not in columns or "lyrics" not in columns:
            raise ValueError(f"expected manifest columns audio, lyrics (optional id, label), got {columns}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not row.get("audio") or not row.get("lyrics"):
                raise ValueError(f"{path}:{line}: expected an audio and a lyrics path, got {row}")
            audio = path.parent / row["audio"]
            song_id = row.get("id") or Path(row["audio"]).stem
            if "/" in song_id or song_id in ("", ".", "..") or song_id.startswith(".") or song_id == GLOBAL_NAME:
                raise ValueError(f"{path}:{line}: expected an id usable as a file name, got {song_id!r}")
            rows.append(ManifestRow(song_id, audio, path.parent / row["lyrics"], row.get("label") or None, line))
    ids = [r.id for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"expected unique song ids in the manifest, got duplicates {dup[:10]} (add an id column)")
    if not rows:
        raise ValueError(f"expected at least one song in the manifest {str(path)!r}, got none")
    return rows


def song_seed(seed: int, song_id: str) -> int:
    """The mask seed of one song: a hash of ``--seed`` and its id (63 bits)."""
    digest = hashlib.sha256(f"{seed}:{song_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain-dataset", help="explain every song of a CSV manifest, resumable; torchrun shards it")
    add_run_args(p)
    p.set_defaults(device=None)
    p.add_argument("--manifest", required=True, help="CSV with columns audio, lyrics (optional id, label)")
    p.add_argument("--model", required=True, help="module:factory (see torchlime explain)")
    add_song_args(p)
    p.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    p.add_argument("--targets", nargs="+", default=["all"], help="class indices, or all (default)")
    p.add_argument("--songs-per-batch", type=int, default=None,
                   help="songs whose perturbations share a forward call (same audio length); default 4 on "
                        "CUDA, 1 on CPU (measured: sharing helps a GPU, not a CPU)")
    add_aggregation_args(p)
    p.set_defaults(run=run)


# -- distributed ---------------------------------------------------------------------------


def _init_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (if any); this process's rank, world, device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg:
        device = torch.device(device_arg)
    else:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world, device


def _gather_lists(items: list[Any], world: int) -> list[Any]:
    if world == 1:
        return items
    out: list[list[Any]] = [[] for _ in range(world)]
    torch.distributed.all_gather_object(out, items)
    return [x for part in out for x in part]


# -- explain-dataset -------------------------------------------------------------------------


def _load_done(path: Path) -> Any:
    """The saved explanation at ``path``, or None if it is missing or unreadable."""
    from ..music import Explanation

    if not path.is_file():
        return None
    try:
        return Explanation.load_json(path)
    except (ValueError, OSError) as err:
        print(f"warning: {path} is not a readable explanation ({err}); explaining the song again", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from ..music import OpenUnmixSeparator

    rank, world, device = _init_distributed(args.device)
    try:
        rows = read_manifest(args.manifest)
        out = Path(args.out)
        spec = load_model_spec(args.model, device)
        names = spec.labels
        label_names = spec.label_names
        targets: Any = "all" if args.targets == ["all"] else [int(t) for t in args.targets]
        mine = rows[rank::world]
        if args.songs_per_batch is None:
            args.songs_per_batch = 4 if device.type == "cuda" else 1
        if args.songs_per_batch < 1:
            raise ValueError(f"expected --songs-per-batch >= 1, got {args.songs_per_batch}")
        explainer = spec.explainer()
        separator = OpenUnmixSeparator(args.separator, device=device)
        aggregator: Any = None
        failures: list[str] = []
        done = explained = 0

        def aggregate(exps: list[Any]) -> None:
            nonlocal aggregator
            if aggregator is None:
                classes = int(exps[0].prediction.numel())
                aggregator = make_aggregator(args, classes, names).to(device)
            aggregator.update(exps)

        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), desc=f"rank {rank}" if world > 1 else "songs", position=rank,
                   disable=args.quiet, leave=True)
        pending: list[tuple[ManifestRow, Any, Any]] = []

        def flush() -> None:
            nonlocal explained
            if not pending:
                return
            # One generator per song, seeded from --seed and the song's id: a song's masks do
            # not depend on the batch, the process or the run it lands in.
            generators = [torch.Generator(device).manual_seed(song_seed(args.seed, p[0].id)) for p in pending]
            exps = explain(
                explainer, [p[1] for p in pending], [p[2] for p in pending], targets, n_samples=args.n_samples,
                modality=args.modality, num_features=args.num_features, generator=generators,
                perturbations_per_eval=args.batch_size, songs_per_batch=args.songs_per_batch,
                song_info=[_song_info(p[0]) for p in pending],
            )
            for (row, _, _), exp in zip(pending, exps):
                exp.save_json(out / f"{row.id}.json", num_features=args.num_features, label_names=label_names)
                if not args.quiet:
                    bar.write(f"explained {row.id}")
            aggregate(exps)
            explained += len(pending)
            bar.update(len(pending))
            pending.clear()

        for row in mine:
            previous = _load_done(out / f"{row.id}.json")
            if previous is not None:
                aggregate([previous])
                done += 1
                bar.update(1)
                continue
            try:
                audio, lyrics = prepare_song(spec, separator, row.audio, row.lyrics, args, device)
            except ValueError as err:
                failures.append(f"{row.id} (manifest line {row.line}): {err}")
                print(f"error: song {row.id} (manifest line {row.line}): {err}; going on", file=sys.stderr)
                bar.update(1)
                continue
            pending.append((row, audio, lyrics))
            if len(pending) == args.songs_per_batch:
                flush()
        flush()
        bar.close()

        if aggregator is None:  # this process had nothing to aggregate: empty, typed states
            aggregator = make_aggregator(args, len(names) if names else spec.num_classes(device), names).to(device)
        result = aggregator.compute()  # reduces over all processes
        failures = _gather_lists(failures, world)
        counts = _gather_lists([(explained, done)], world)
        if rank == 0:
            total_explained = sum(c[0] for c in counts)
            total_done = sum(c[1] for c in counts)
            print(f"{total_explained} songs explained, {total_done} already done (skipped), "
                  f"{len(failures)} failed, {world} process(es)")
            if total_explained + total_done:
                write_global(result, out, args.top_k_report)
            if failures:
                print(f"{len(failures)} song(s) failed:", file=sys.stderr)
                for failure in failures:
                    print(f"  {failure}", file=sys.stderr)
        if world > 1:
            # torchrun stops every process once one exits with an error: wait until rank 0
            # has written the aggregate and listed the failures; only rank 0 reports them.
            torch.distributed.barrier()
            return 1 if failures and rank == 0 else 0
        return 1 if failures else 0
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _song_info(row: ManifestRow) -> dict[str, Any]:
    info: dict[str, Any] = {"id": row.id, "audio": str(row.audio), "lyrics": str(row.lyrics)}
    if row.label is not None:
        info["label"] = row.label
    return info
