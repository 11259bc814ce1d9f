"""``torchlime explain-dataset`` and ``torchlime aggregate``: explanations of a whole dataset.

explain-dataset reads a CSV manifest (``audio``, ``lyrics``, optional ``id`` and ``label``;
relative paths are relative to the manifest's folder), writes one explanation JSON per song
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

__all__ = ["ManifestRow", "read_manifest", "song_seed", "cmd_explain_dataset", "cmd_aggregate", "add_parsers"]

GLOBAL_NAME = "global_importance"


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
    from .music import Explanation

    if not path.is_file():
        return None
    try:
        return Explanation.load_json(path)
    except (ValueError, OSError) as err:
        print(f"warning: {path} is not a readable explanation ({err}); explaining the song again", file=sys.stderr)
        return None


def cmd_explain_dataset(args: argparse.Namespace) -> int:
    from .cli import load_model_spec, prepare_song
    from .music import MusicLime, OpenUnmixSeparator

    rank, world, device = _init_distributed(args.device)
    try:
        rows = read_manifest(args.manifest)
        out = Path(args.out)
        spec = load_model_spec(args.model, device)
        names = spec.get("labels")
        label_names = dict(enumerate(names)) if names else None
        targets: Any = "all" if args.targets == ["all"] else [int(t) for t in args.targets]
        mine = rows[rank::world]
        if args.songs_per_batch is None:
            args.songs_per_batch = 4 if device.type == "cuda" else 1
        if args.songs_per_batch < 1:
            raise ValueError(f"expected --songs-per-batch >= 1, got {args.songs_per_batch}")
        explainer = MusicLime(spec["forward"], apply_softmax=spec.get("apply_softmax", False))
        separator = OpenUnmixSeparator(args.separator, device=device)
        aggregator: Any = None
        failures: list[str] = []
        done = explained = 0

        def aggregate(exps: list[Any]) -> None:
            nonlocal aggregator
            if aggregator is None:
                classes = int(exps[0].prediction.numel())
                aggregator = _make_aggregator(args, classes, names).to(device)
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
            exps = explainer.explain(
                [p[1] for p in pending], [p[2] for p in pending], targets=targets, n_samples=args.n_samples,
                modality=args.modality, num_features=args.num_features, generator=generators,
                batch_size=args.batch_size, songs_per_batch=args.songs_per_batch,
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
            aggregator = _make_aggregator(args, len(names) if names else _num_classes(spec, device), names).to(device)
        result = aggregator.compute()  # reduces over all processes
        failures = _gather_lists(failures, world)
        counts = _gather_lists([(explained, done)], world)
        if rank == 0:
            total_explained = sum(c[0] for c in counts)
            total_done = sum(c[1] for c in counts)
            print(f"{total_explained} songs explained, {total_done} already done (skipped), "
                  f"{len(failures)} failed, {world} process(es)")
            if total_explained + total_done:
                _write_global(result, out, args.top_k_report)
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


def _num_classes(spec: dict[str, Any], device: torch.device) -> int:
    """The model's number of classes without a song: a silent second and one empty line."""
    with torch.no_grad():
        tok = spec["tokenizer"]("", return_tensors="pt")
        audio = torch.zeros(1, int(spec.get("channels", 1)), int(spec["sample_rate"]), device=device)
        return int(spec["forward"](audio, tok["input_ids"].to(device), tok["attention_mask"].to(device)).shape[-1])


def song_seed(seed: int, song_id: str) -> int:
    """The mask seed of one song: a hash of ``--seed`` and its id (63 bits)."""
    digest = hashlib.sha256(f"{seed}:{song_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _song_info(row: ManifestRow) -> dict[str, Any]:
    info: dict[str, Any] = {"id": row.id, "audio": str(row.audio), "lyrics": str(row.lyrics)}
    if row.label is not None:
        info["label"] = row.label
    return info


def _make_aggregator(args: argparse.Namespace, classes: int, names: list[str] | None) -> Any:
    from .aggregation._aggregator import GlobalAggregator

    return GlobalAggregator(classes, label=args.label, components=args.components, top_k=args.top_k,
                            class_names=names if names and len(names) == classes else None)


def _write_global(result: Any, out: Path, k: int) -> None:
    path = result.save_json(out / f"{GLOBAL_NAME}.json")
    png = result.save_figure(out / f"{GLOBAL_NAME}.png", k=k)
    print(f"wrote {path}\nwrote {png}")
    for cname, top in result.ranking("homogeneity", k=k).items():
        shown = ", ".join(f"{name[:30]} {value:.3f}" for name, value in top) or "(no explanation)"
        print(f"  {cname}: {shown}")


# -- aggregate -------------------------------------------------------------------------------


def cmd_aggregate(args: argparse.Namespace) -> int:
    import json

    from .music import Explanation

    loaded: list[tuple[Path, Any]] = []  # (file, explanation)
    skipped = 0
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"expected explanation JSON files, got {str(path)!r}, which does not exist")
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"expected explanation JSON files, got invalid JSON in {str(path)!r}: {err}") from None
        if isinstance(data, dict) and str(data.get("format", "")).startswith("torchlime.GlobalImportance"):
            skipped += 1  # an earlier aggregate in the same folder
            continue
        try:
            loaded.append((path, Explanation.from_dict(data)))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    if not loaded:
        raise ValueError("expected at least one explanation JSON, got none")
    exps = [exp for _, exp in loaded]
    classes = args.num_classes or int(exps[0].prediction.numel())
    names = args.class_names
    if names is not None and len(names) != classes:
        raise ValueError(f"expected {classes} --class-names, got {len(names)}")
    if names is None:
        names = _label_names(exps, classes)
    aggregator = _make_aggregator(args, classes, names)
    for path, exp in loaded:
        try:
            aggregator.update(exp)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    result = aggregator.compute()
    out = Path(args.out)
    print(f"{len(exps)} explanations aggregated" + (f" ({skipped} aggregate file(s) skipped)" if skipped else ""))
    _write_global(result, out, args.top_k_report)
    return 0


def _label_names(exps: list[Any], classes: int) -> list[str] | None:
    """Class names from the saved ``prediction_label`` fields, where every class has one."""
    found: dict[int, str] = {}
    for exp in exps:
        found.update(exp.metadata.get("label_names", {}))
    return [found[c] for c in range(classes)] if len(found) == classes else None


# -- argparse --------------------------------------------------------------------------------


def _aggregation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", default="predicted", choices=["predicted", "explained"],
                   help="which class an explanation counts for (default: the predicted one, as MusicLIME)")
    p.add_argument("--components", default="positive", choices=["positive", "negative", "both"],
                   help="which weights count (default: positive, as MusicLIME)")
    p.add_argument("--top-k", type=int, default=None, help="only the top-k components of each explanation")
    p.add_argument("--top-k-report", type=int, default=10, help="features per class printed and plotted")


def add_parsers(sub: Any, common: Any) -> None:
    """Add ``explain-dataset`` and ``aggregate`` to the console script's subparsers."""
    from .cli import add_song_args

    ds = sub.add_parser("explain-dataset", help="explain every song of a CSV manifest, resumable; torchrun shards it")
    common(ds)
    ds.set_defaults(device=None)
    ds.add_argument("--manifest", required=True, help="CSV with columns audio, lyrics (optional id, label)")
    ds.add_argument("--model", required=True, help="module:factory (see torchlime explain)")
    add_song_args(ds)
    ds.add_argument("--modality", default="both", choices=["both", "audio", "lyrics"])
    ds.add_argument("--targets", nargs="+", default=["all"], help="class indices, or all (default)")
    ds.add_argument("--songs-per-batch", type=int, default=None,
                    help="songs whose perturbations share a forward call (same audio length); default 4 on "
                         "CUDA, 1 on CPU (measured: sharing helps a GPU, not a CPU)")
    _aggregation_args(ds)
    ds.set_defaults(func=cmd_explain_dataset)

    agg = sub.add_parser("aggregate", help="global importances from saved explanation JSON files")
    agg.add_argument("files", nargs="+", help="explanation JSON files (e.g. results/*.json)")
    agg.add_argument("--out", default=".", help="folder for global_importance.json and .png (default: .)")
    agg.add_argument("--num-classes", type=int, default=None, help="default: the length of the saved predictions")
    agg.add_argument("--class-names", nargs="+", default=None)
    _aggregation_args(agg)
    agg.set_defaults(func=cmd_aggregate)
