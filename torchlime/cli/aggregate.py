"""``torchlime aggregate``: global importances from saved explanation JSON files.

Also the aggregation options and the global outputs that ``explain-dataset`` shares.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._atomic import atomic_write, is_temporary_file
from .._checks import check_int
from ._common import SETTING_DEFAULTS, add_command, settings_fingerprint, shorten, show_setting

__all__ = ["GLOBAL_NAME", "add_parser", "run", "add_aggregation_args", "make_aggregator", "write_global",
           "class_names", "common_settings"]

GLOBAL_NAME = "global_importance"


def add_aggregation_args(p: argparse.ArgumentParser) -> None:
    """The options of the global aggregation (explain-dataset and aggregate)."""
    p.add_argument("--label", default="predicted", choices=["predicted", "explained"],
                   help="which class an explanation counts for: the predicted one (as MusicLIME), or every "
                        "explained one")
    p.add_argument("--components", default="positive", choices=["positive", "negative", "both"],
                   help="which weights count (positive: as MusicLIME)")
    p.add_argument("--top-k", type=int, default=None,
                   help="only the top-k components of each explanation (default: every selected component)")
    p.add_argument("--top-k-report", type=int, default=10, help="features per class printed and plotted")


def make_aggregator(args: argparse.Namespace, classes: int, names: list[str] | tuple[str, ...] | None) -> Any:
    """The :class:`~torchlime.GlobalAggregator` the options ask for."""
    from ..aggregation import GlobalAggregator

    return GlobalAggregator(classes, label=args.label, components=args.components, top_k=args.top_k,
                            class_names=list(names) if names and len(names) == classes else None)


def write_global(result: Any, out: Path, k: int, settings: dict[str, Any] | None = None,
                 fingerprints: list[str] | None = None) -> None:
    """``<out>/global_importance.json`` and ``.png``, and the top features per class printed.

    The JSON also records the settings the explanations were made with (``settings``, or
    null where they were mixed or not recorded) and their ``settings_fingerprints``.
    """
    data = result.to_dict()
    if fingerprints is None:
        fingerprints = [settings_fingerprint(settings)] if settings is not None else []
    data["settings"] = settings
    data["settings_fingerprints"] = sorted(fingerprints)
    path = atomic_write(out / f"{GLOBAL_NAME}.json", lambda f: json.dump(data, f, indent=2))
    png = result.save_figure(out / f"{GLOBAL_NAME}.png", k=k)
    print(f"wrote {path}\nwrote {png}")
    for cname, top in result.ranking("homogeneity", k=k).items():
        shown = ", ".join(f"{shorten(name, 30)} {value:.3g}" for name, value in top) or "(no explanation)"
        print(f"  {cname}: {shown}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "aggregate", "global importances from saved explanation JSON files",
                    "Aggregate saved explanations (from explain or explain-dataset) into global importances per "
                    "class (LIME, average and homogeneity-weighted, van der Linden et al. 2019): "
                    "<out>/global_importance.json and .png. Lyric units are merged by name across songs; a "
                    "repeated line's later occurrences are features of their own (\"line (2)\", ...).")
    p.add_argument("files", nargs="+", metavar="FILE|DIR",
                   help="explanation JSON files (e.g. results/*.json), or folders: their *.json files")
    p.add_argument("--out", default=".", help="folder for global_importance.json and .png")
    p.add_argument("--num-classes", type=int, default=None,
                   help="number of classes (default: the length of the saved predictions)")
    p.add_argument("--class-names", nargs="+", default=None,
                   help="names of the classes without a saved name; a name that disagrees with a saved one is "
                        "refused (default: the names saved in the explanations, else 0, 1, ...)")
    p.add_argument("--mixed-settings", action="store_true",
                   help="aggregate explanations made with different settings (model, segments, --n-samples, "
                        "--seed, --target, ...; those recorded by explain-dataset); without it they are refused")
    add_aggregation_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..music import Explanation

    if args.top_k is not None:
        check_int(args.top_k, "--top-k", 1)
    check_int(args.top_k_report, "--top-k-report", 1)
    loaded: list[tuple[Path, Any]] = []  # (file, explanation)
    skipped = 0
    for path in _files(args.files):
        data = _read_json(path)
        if isinstance(data, dict) and str(data.get("format", "")).startswith("torchlime.GlobalImportance"):
            skipped += 1  # an earlier aggregate in the same folder
            continue
        try:
            loaded.append((path, Explanation.from_dict(data)))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    if not loaded:
        raise ValueError("expected at least one explanation JSON, got none")
    settings = common_settings(loaded, args.mixed_settings)
    classes = int(args.num_classes or loaded[0][1].prediction.numel())
    names = class_names(loaded, classes, args.class_names)
    aggregator = make_aggregator(args, classes, names)
    for path, exp in loaded:
        try:
            aggregator.update(exp)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    result = aggregator.compute()
    print(f"{len(loaded)} explanations aggregated" + (f" ({skipped} aggregate file(s) skipped)" if skipped else ""))
    write_global(result, Path(args.out), args.top_k_report, *settings)
    return 0


def _files(given: list[str]) -> list[Path]:
    """The files to aggregate: those given, and the ``*.json`` files of the folders given
    (in name order, without hidden files such as a write in progress).

    Raises:
        ValueError: a path that does not exist, a folder without JSON files.
    """
    files = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.is_file() and not p.name.startswith("."))
            if not found:
                raise ValueError(f"expected explanation JSON files, got the folder {str(path)!r}, which holds no "
                                 f"*.json file")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"expected explanation JSON files (or folders of them), got {str(path)!r}, which does not "
                             f"exist")
    return files


def _read_json(path: Path) -> Any:
    """The JSON in ``path``.

    Raises:
        ValueError: not UTF-8 text (a PNG, say) or not JSON, naming the file.
    """
    if is_temporary_file(path):
        raise ValueError(f"expected explanation JSON files, got {str(path)!r}, a temporary file of a write that was "
                         f"interrupted")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as err:
        raise ValueError(f"expected explanation JSON files, got {str(path)!r}, which is not UTF-8 text (byte "
                         f"{err.object[err.start:err.start + 1]!r} at {err.start}: is it a JSON file?)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"expected explanation JSON files, got invalid JSON in {str(path)!r}: {err}") from None


def common_settings(loaded: list[tuple[Path, Any]], mixed: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """The settings the explanations record (``song_info.settings``, written by
    explain-dataset), and their distinct fingerprints.

    Returns:
        ``(settings, fingerprints)``: the one set of settings, or None when they differ
        (with ``mixed``) or none is recorded.

    Raises:
        ValueError: two explanations made with different settings, without ``mixed``.
    """
    first: tuple[Path, dict[str, Any]] | None = None
    fingerprints = set()
    differ = False
    for path, exp in loaded:
        settings = (exp.metadata.get("song_info") or {}).get("settings")
        if not isinstance(settings, dict):
            continue
        settings = {**SETTING_DEFAULTS, **settings}  # a sampler not recorded was iid
        fingerprints.add(settings_fingerprint(settings))
        if first is None:
            first = (path, settings)
            continue
        # None: not applicable (a song given as stem files has no separator)
        changes = [f"{key} ({show_setting(first[1].get(key))} vs {show_setting(settings.get(key))})"
                   for key in dict.fromkeys([*first[1], *settings])
                   if None not in (first[1].get(key), settings.get(key)) and first[1].get(key) != settings.get(key)]
        if changes and not mixed:
            raise ValueError(f"expected explanations made with one set of settings, got {first[0]} and {path}, "
                             f"which differ in {', '.join(changes)}; pass --mixed-settings to aggregate them anyway")
        differ = differ or bool(changes)
    if first is None:
        return None, []
    return (None if differ else first[1]), sorted(fingerprints)


def class_names(loaded: list[tuple[Path, Any]], classes: int, given: list[str] | None) -> list[str] | None:
    """The class names: those saved in the explanations, ``given`` (``--class-names``) for the rest.

    A saved name is a ``prediction_label`` other than the class index itself (what
    explanations without class names save).

    Raises:
        ValueError: ``given`` of the wrong length or disagreeing with a saved name, or two
            files saving different names for one class.
    """
    saved: dict[int, tuple[str, Path]] = {}
    for path, exp in loaded:
        for label, name in exp.metadata.get("label_names", {}).items():
            if name == str(label):
                continue
            if label in saved and saved[label][0] != name:
                raise ValueError(f"expected one name per class in the explanations, got {saved[label][0]!r} in "
                                 f"{saved[label][1]} and {name!r} in {path} for class {label}")
            saved[label] = (name, path)
    if given is not None:
        if len(given) != classes:
            raise ValueError(f"expected {classes} --class-names, got {len(given)}")
        for label, (name, path) in sorted(saved.items()):
            if label < classes and given[label] != name:
                raise ValueError(f"expected --class-names to agree with the names saved in the explanations, got "
                                 f"{given[label]!r} for class {label}, which {path} names {name!r} (drop "
                                 f"--class-names to use the saved names)")
        filled = [f"{c}: {given[c]}" for c in range(classes) if c not in saved]
        if filled and saved:
            print(f"--class-names name the classes without a saved name ({', '.join(filled)})")
        return list(given)
    if not saved:
        return None
    return [saved[c][0] if c in saved else str(c) for c in range(classes)]
