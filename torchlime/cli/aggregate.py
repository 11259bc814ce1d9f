"""``torchlime aggregate``: global importances from saved explanation JSON files.

Also the aggregation options and the global outputs that ``explain-dataset`` shares.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["GLOBAL_NAME", "add_parser", "run", "add_aggregation_args", "make_aggregator", "write_global"]

GLOBAL_NAME = "global_importance"


def add_aggregation_args(p: argparse.ArgumentParser) -> None:
    """The options of the global aggregation (explain-dataset and aggregate)."""
    p.add_argument("--label", default="predicted", choices=["predicted", "explained"],
                   help="which class an explanation counts for (default: the predicted one, as MusicLIME)")
    p.add_argument("--components", default="positive", choices=["positive", "negative", "both"],
                   help="which weights count (default: positive, as MusicLIME)")
    p.add_argument("--top-k", type=int, default=None, help="only the top-k components of each explanation")
    p.add_argument("--top-k-report", type=int, default=10, help="features per class printed and plotted")


def make_aggregator(args: argparse.Namespace, classes: int, names: list[str] | tuple[str, ...] | None) -> Any:
    """The :class:`~torchlime.GlobalAggregator` the options ask for."""
    from ..aggregation import GlobalAggregator

    return GlobalAggregator(classes, label=args.label, components=args.components, top_k=args.top_k,
                            class_names=list(names) if names and len(names) == classes else None)


def write_global(result: Any, out: Path, k: int) -> None:
    """``<out>/global_importance.json`` and ``.png``, and the top features per class printed."""
    path = result.save_json(out / f"{GLOBAL_NAME}.json")
    png = result.save_figure(out / f"{GLOBAL_NAME}.png", k=k)
    print(f"wrote {path}\nwrote {png}")
    for cname, top in result.ranking("homogeneity", k=k).items():
        shown = ", ".join(f"{name[:30]} {value:.3f}" for name, value in top) or "(no explanation)"
        print(f"  {cname}: {shown}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="global importances from saved explanation JSON files")
    p.add_argument("files", nargs="+", help="explanation JSON files (e.g. results/*.json)")
    p.add_argument("--out", default=".", help="folder for global_importance.json and .png (default: .)")
    p.add_argument("--num-classes", type=int, default=None, help="default: the length of the saved predictions")
    p.add_argument("--class-names", nargs="+", default=None)
    add_aggregation_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..music import Explanation

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
    aggregator = make_aggregator(args, classes, names)
    for path, exp in loaded:
        try:
            aggregator.update(exp)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    result = aggregator.compute()
    print(f"{len(exps)} explanations aggregated" + (f" ({skipped} aggregate file(s) skipped)" if skipped else ""))
    write_global(result, Path(args.out), args.top_k_report)
    return 0


def _label_names(exps: list[Any], classes: int) -> list[str] | None:
    """Class names from the saved ``prediction_label`` fields, where every class has one."""
    found: dict[int, str] = {}
    for exp in exps:
        found.update(exp.metadata.get("label_names", {}))
    return [found[c] for c in range(classes)] if len(found) == classes else None
