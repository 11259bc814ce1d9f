"""``torchlime explain-dataset``: explanations of every song of a CSV manifest.

It reads a CSV manifest (``lyrics`` and ``audio`` or ``stems``, optional ``id`` and
``label``; relative paths are relative to the manifest's folder), writes one explanation
JSON per song atomically (``<out>/<id>.json``), skips songs whose JSON is already there (so
a rerun after a crash redoes no finished song), and ends with the global importances of
all songs (``<out>/global_importance.json`` and ``.png``). Under ``torchrun`` (or with
``--nproc-per-node``) every process takes the songs ``rank::world_size`` on its own device
and the aggregate is reduced with torchmetrics' sync over ``torch.distributed``.

A resumed run only keeps explanations made with its own settings
(:func:`~torchlime.cli._common.explanation_settings`: the model, the features, the
surrogate, its samples (how many or the automatic budget, and the sampler), the seed and
the targets; not the device or how forward calls are batched), which each song's JSON
records with their fingerprint: a folder holding songs made with other settings is
refused, naming the settings and the file, unless ``--overwrite`` asks to explain those
songs again. A song written before the sampler was recorded counts as drawn iid (it was).
A song that fails (a NaN from the model, a file that cannot be read) is listed at the end
(exit status 1) and the others go on; a group of ``--songs-per-batch`` songs that fails is
explained again song by song, so only the failing song fails. A file that cannot be
written (a read-only folder, a full disk) stops the run with one line; the explanations
already written stay, and a rerun resumes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._atomic import remove_stale_temporary_files
from .._checks import check_int
from ._common import (
    MODALITIES,
    SongFiles,
    add_command,
    add_run_args,
    add_song_args,
    add_target_args,
    check_run_args,
    check_writable,
    describe_samples,
    explain,
    explanation_settings,
    load_model_spec,
    make_separator,
    parse_targets,
    prepare_songs,
    sampling_options,
    settings_differences,
    settings_fingerprint,
    song_options,
    target_spec,
)
from .aggregate import GLOBAL_NAME, add_aggregation_args, make_aggregator, write_global

__all__ = ["ManifestRow", "read_manifest", "song_seed", "add_parser", "run"]


@dataclass
class ManifestRow:
    """One song of a manifest: where its files are, its id and (optional) true label."""

    id: str
    audio: Path | None
    lyrics: Path
    label: str | None
    line: int  # line number in the manifest, for messages
    stems: Path | None = None

    @property
    def song(self) -> SongFiles:
        return SongFiles(lyrics=self.lyrics, audio=self.audio, stems=self.stems)


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a CSV manifest: columns ``lyrics`` and ``audio`` (or ``stems``, a folder of stem
    files), optional ``id`` (default: the audio file's name without extension) and ``label``.

    The file is read as UTF-8; a leading byte-order mark (what spreadsheet programs write
    for "CSV UTF-8") is dropped.

    Raises:
        ValueError: a missing file, missing columns, empty rows, duplicate ids, not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected a manifest CSV file, got {str(path)!r}, which does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fieldnames = list(reader.fieldnames or [])
            table = list(reader)
    except UnicodeDecodeError as err:
        raise ValueError(f"expected UTF-8 text in the manifest {str(path)!r}, got {err.reason} at byte {err.start}; "
                         f"save it as UTF-8 (CSV UTF-8)") from None
    columns = [c.strip() for c in fieldnames if c is not None]
    if "lyrics" not in columns or not ({"audio", "stems"} & set(columns)):
        raise ValueError(f"expected manifest columns audio (or stems), lyrics (optional id, label), got {columns}")
    rows = []
    for line, raw in enumerate(table, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not (row.get("audio") or row.get("stems")) or not row.get("lyrics"):
            raise ValueError(f"{path}:{line}: expected an audio (or stems) and a lyrics path, got {row}")
        audio = path.parent / row["audio"] if row.get("audio") else None
        stems = path.parent / row["stems"] if row.get("stems") else None
        song_id = row.get("id") or Path(row.get("audio") or row["stems"].rstrip("/")).stem
        if "/" in song_id or song_id in ("", ".", "..") or song_id.startswith(".") or song_id == GLOBAL_NAME:
            raise ValueError(f"{path}:{line}: expected an id usable as a file name, got {song_id!r}")
        rows.append(ManifestRow(song_id, audio, path.parent / row["lyrics"], row.get("label") or None, line, stems))
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
    p = add_command(sub, "explain-dataset", "explain every song of a CSV manifest, resumable; torchrun shards it",
                    "Explain every song of a CSV manifest (columns audio or stems, lyrics, optional id and label): "
                    "<out>/<id>.json per song, written atomically; a rerun skips the songs already there and refuses "
                    "those made with other settings (see --overwrite); a failing song is listed at the end (exit "
                    "1); ends with <out>/global_importance.json and .png. Run it under torchrun, or with --nproc-per-node, to "
                    "shard the songs over processes and GPUs.")
    p.add_argument("--manifest", required=True, metavar="CSV", help="CSV with columns audio (or stems), lyrics, optional id, label")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY", help="the model (see torchlime explain --help)")
    add_song_args(p, stems=False)
    p.add_argument("--modality", default="both", choices=MODALITIES, help="what is perturbed")
    add_target_args(p)
    p.add_argument("--songs-per-batch", type=int, default=None, metavar="M",
                   help="songs whose perturbations share a forward call (same audio length and classes) (default: "
                        "4 on CUDA, 1 on CPU; measured: sharing helps a GPU, not a CPU)")
    p.add_argument("--overwrite", action="store_true",
                   help="explain again, and replace, the songs whose JSON in --out was made with other settings "
                        "(model, separator, segments, unit, residual, modality, --n-samples, --sampler, --tol, "
                        "--max-samples, --num-features, --seed, --target); without it such a folder is refused")
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="start this many worker processes here (one per GPU), as torchrun --standalone does, but "
                        "with one-line messages and exit 1 when songs failed (default: this process only, or "
                        "what torchrun set up)")
    add_aggregation_args(p)
    add_run_args(p, device_help="this process's GPU under torchrun, else cuda when available, else cpu")
    p.set_defaults(run=run)


# -- distributed ---------------------------------------------------------------------------


def _init_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (if any); this process's rank, world, device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg:
        try:
            device = torch.device(device_arg)
        except (RuntimeError, TypeError):
            raise ValueError(f"expected --device as a torch device such as cpu or cuda, got {device_arg!r}") from None
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


def _launch(argv: list[str], nproc: int) -> int:
    """Run this command in ``nproc`` local worker processes (torchrun --standalone's environment).

    Returns the exit status: 0, 1 (songs failed), 2 (an error, printed by the worker), 130
    (interrupted); a worker killed by a signal stops the others.
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
           "LOCAL_WORLD_SIZE": str(nproc)}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # the workers import this very torchlime, wherever the current folder is
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    procs = [subprocess.Popen([sys.executable, "-m", "torchlime.cli", *argv],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0, 1) for p in procs):  # an error or a crash: nobody waits for it
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.1)
    except KeyboardInterrupt:  # the workers got the same SIGINT: let them stop, then make sure
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    codes = [p.wait() for p in procs]
    killed = [f"worker {r} (signal {-c})" for r, c in enumerate(codes) if c < 0]
    if killed and not any(c > 1 for c in codes):
        print(f"torchlime explain-dataset: error: {', '.join(killed)} stopped", file=sys.stderr)
    for code in (130, 2):
        if code in codes:
            return code
    return 1 if any(codes) else 0


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
    if args.nproc_per_node is not None and "RANK" not in os.environ:
        check_int(args.nproc_per_node, "--nproc-per-node", 1)
        if args.nproc_per_node > 1:
            return _launch(args.argv, args.nproc_per_node)
    rank, world, device = _init_distributed(args.device)
    try:
        return _run(args, rank, world, device)
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> int:
    started = time.time()
    check_run_args(args)
    asked = parse_targets(args.target)
    if args.songs_per_batch is None:
        args.songs_per_batch = 4 if device.type == "cuda" else 1
    check_int(args.songs_per_batch, "--songs-per-batch", 1)
    rows = read_manifest(args.manifest)
    options = song_options(args)
    out = Path(args.out)
    mine = rows[rank::world]
    settings = explanation_settings(args, options)
    fingerprint = settings_fingerprint(settings)
    check_writable(out)  # every process: they all stop, none waits for the others
    if rank == 0:
        for folder in (out, options.cache_dir):
            removed = remove_stale_temporary_files(folder, started) if folder is not None else []
            if removed:
                print(f"removed {len(removed)} temporary file(s) an interrupted run left in {folder}")

    # Up front: what is done already (with these settings), what cannot be read, what is left.
    failures: list[tuple[int, str]] = []  # (manifest line, what went wrong)
    previous: dict[str, Any] = {}
    todo: list[ManifestRow] = []
    other: list[tuple[str, list[str]]] = []  # (file, differing settings) of songs made otherwise
    missing: list[tuple[ManifestRow, ValueError]] = []  # reported after the settings are checked
    for row in mine:
        path = out / f"{row.id}.json"
        exp = _load_done(path)
        if exp is not None:
            recorded = (exp.metadata.get("song_info") or {}).get("settings")
            # a song given as stem files was not separated: the separator is not its setting
            differ = settings_differences(recorded, settings, ignore=("separator",) if row.stems is not None else ())
            if not differ:
                previous[row.id] = exp
                continue
            other.append((str(path), differ))
        try:
            row.song.check()
        except ValueError as err:
            missing.append((row, err))
            continue
        todo.append(row)
    other = _gather_lists(other, world)
    if other and not args.overwrite:
        if rank:  # every process stops; rank 0 says why
            return 2
        path, differ = other[0]
        more = f" (and {len(other) - 1} more song(s))" if len(other) > 1 else ""
        raise ValueError(f"expected --out {str(out)!r} to hold explanations made with this run's settings, got "
                         f"{path}{more} made with {', '.join(differ)}; pass --overwrite to explain those songs "
                         f"again with these settings, or another --out")
    for row, err in missing:
        _fail(failures, row, err)
    counts = _gather_lists([(len(previous), len(failures), len(todo))], world)
    if rank == 0:
        done, failed, left = (sum(c[i] for c in counts) for i in range(3))
        again = f" ({len(other)} made with other settings, explained again: --overwrite)" if other else ""
        print(f"{len(rows)} songs in {args.manifest}: {done} already explained in {out} (skipped), "
              f"{failed} with missing files (failed), {left} to explain{again}"
              + (f", {world} processes" if world > 1 else ""))

    spec = load_model_spec(args.model, device)
    names = spec.labels
    label_names = spec.label_names
    separator = (make_separator(options, device, args.quiet)
                 if any(row.stems is None for row in todo) else None)
    explainer = spec.explainer()
    aggregator: Any = None
    explained = 0

    def aggregate(exps: list[Any]) -> None:
        nonlocal aggregator
        if aggregator is None:
            classes = int(exps[0].prediction.numel())
            aggregator = make_aggregator(args, classes, names).to(device)
        aggregator.update(exps)

    if previous:
        aggregate(list(previous.values()))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"rank {rank}" if world > 1 else "songs", position=rank,
               disable=args.quiet, leave=True)
    # Songs explained together need not share a predicted class: MusicLime resolves each
    # song's own from its unperturbed sample.
    target = target_spec(asked)
    pending: list[tuple[ManifestRow, Any, Any]] = []

    def explain_group(group: list[tuple[ManifestRow, Any, Any]]) -> list[Any]:
        # One generator per song, seeded from --seed and the song's id: a song's masks do
        # not depend on the batch, the process or the run it lands in.
        generators = [torch.Generator(device).manual_seed(song_seed(args.seed, row.id)) for row, _, _ in group]
        return explain(
            explainer, [g[1] for g in group], [g[2] for g in group], target,
            modality=args.modality, num_features=args.num_features, generator=generators,
            perturbations_per_eval=args.perturbations_per_eval, songs_per_batch=args.songs_per_batch,
            song_info=[_song_info(row, options, args.model, settings, fingerprint) for row, _, _ in group],
            memory_budget=args.memory_budget, **sampling_options(args),
        )

    def flush() -> None:
        nonlocal explained
        group = pending[:]
        pending.clear()
        if not group:
            return
        try:
            exps = explain_group(group)
        except Exception as err:  # noqa: BLE001 - a song's failure (NaN from the model, ...) is reported
            if len(group) == 1:
                _fail(failures, group[0][0], err)
                bar.update(1)
                return
            # which song? each alone: only the failing one fails, the others are explained
            if not args.quiet:
                bar.write(f"a group of {len(group)} songs failed ({_reason(err)}); explaining them one by one")
            kept, exps = [], []
            for item in group:
                try:
                    exps += explain_group([item])
                    kept.append(item)
                except Exception as one:  # noqa: BLE001 - as above
                    _fail(failures, item[0], one)
                    bar.update(1)
            group = kept
        for (row, _, _), exp in zip(group, exps):
            exp.save_json(out / f"{row.id}.json", num_features=args.num_features, label_names=label_names)
            explained += 1
            if not args.quiet:
                bar.write(f"explained {row.id} ({describe_samples(exp)})")
            bar.update(1)
        if exps:
            aggregate(exps)

    try:
        # Songs are read and separated a group at a time: songs of one length share the
        # separator's batched call (most of a song's time on a GPU), then their forward calls.
        for start in range(0, len(todo), args.songs_per_batch):
            rows = todo[start : start + args.songs_per_batch]
            for row, prepared in zip(rows, prepare_songs(spec, separator, [r.song for r in rows], options, device)):
                if isinstance(prepared, Exception):  # an unreadable file or a song that cannot be separated
                    _fail(failures, row, prepared)
                    bar.update(1)
                    continue
                pending.append((row, *prepared))
            flush()
    except OSError as err:
        raise _kept(err, out, explained + len(previous)) from err
    finally:
        bar.close()

    if aggregator is None:  # this process had nothing to aggregate: empty, typed states
        aggregator = make_aggregator(args, len(names) if names else spec.num_classes(device), names).to(device)
    with warnings.catch_warnings():  # torchmetrics' "compute before update": empty states are meant here
        warnings.filterwarnings("ignore", message=r".*compute.* was called before the ``update``")
        result = aggregator.compute()  # reduces over all processes
    failures = _gather_lists(failures, world)
    counts = _gather_lists([(explained, len(previous))], world)
    if rank == 0:
        total_explained = sum(c[0] for c in counts)
        total_done = sum(c[1] for c in counts)
        print(f"{total_explained} songs explained, {total_done} already done (skipped), "
              f"{len(failures)} failed, {world} process(es)")
        if total_explained + total_done:
            try:
                write_global(result, out, args.top_k_report, settings=settings)
            except OSError as err:
                raise _kept(err, out, total_explained + total_done) from err
        if failures:
            print(f"{len(failures)} song(s) failed:", file=sys.stderr)
            for _, failure in sorted(failures):  # in manifest order, whichever process had them
                print(f"  {failure}", file=sys.stderr)
    if world > 1:
        # Wait until rank 0 has written the aggregate and listed the failures; only rank 0
        # reports them (under plain torchrun, its exit status 1 makes torchrun print its own
        # ChildFailedError report; --nproc-per-node does not).
        torch.distributed.barrier()
        return 1 if failures and rank == 0 else 0
    return 1 if failures else 0


def _kept(err: OSError, out: Path, kept: int) -> OSError:
    """``err`` with what is kept and how to go on, for a run stopped by a file it could not write."""
    from ._common import describe_os_error

    return OSError(err.errno, f"{describe_os_error(err)}; the {kept} explanation(s) in {out} are kept: make room "
                              f"or fix the folder's permissions and rerun the same command to resume")


def _reason(err: BaseException) -> str:
    """An exception in one line: its message, or its type and first line where the type says more."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, ValueError) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _fail(failures: list[tuple[int, str]], row: ManifestRow, err: BaseException) -> None:
    from tqdm.auto import tqdm

    failures.append((row.line, f"{row.id} (manifest line {row.line}): {_reason(err)}"))
    # through tqdm: a progress bar is cleared first and drawn again below the line
    tqdm.write(f"error: song {row.id} (manifest line {row.line}): {_reason(err)}; going on", file=sys.stderr)


def _song_info(row: ManifestRow, options: Any, model: str, settings: dict[str, Any], fingerprint: str
               ) -> dict[str, Any]:
    info: dict[str, Any] = {"id": row.id, **row.song.info(options, model)}
    if row.label is not None:
        info["label"] = row.label
    info["settings"] = settings
    info["settings_fingerprint"] = fingerprint
    return info
