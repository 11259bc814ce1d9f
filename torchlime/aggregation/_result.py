"""``GlobalImportance``: the computed global importances with their feature and class names."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._atomic import atomic_write
from ..functional.aggregation import global_importance

__all__ = ["GlobalImportance", "KINDS"]

KINDS = ("lime", "average", "homogeneity")


@dataclass
class GlobalImportance:
    """Global importances of F features for C classes.

    Attributes:
        lime, average, homogeneity: ``(C, F)`` importances (see
            :func:`torchlime.functional.global_importance`).
        weight_sums: ``(C, F)`` sums of |weight| they were computed from.
        counts: ``(C, F)`` how many explanations contained each feature, per class.
        feature_names: F names.
        class_names: C names.
        options: how the explanations were aggregated (label, components, top_k).
    """

    lime: Tensor
    average: Tensor
    homogeneity: Tensor
    weight_sums: Tensor
    counts: Tensor
    feature_names: list[str]
    class_names: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sums(cls, weight_sums: Tensor, counts: Tensor, feature_names: list[str],
                  class_names: list[str], options: dict[str, Any] | None = None) -> GlobalImportance:
        """Compute the three importances from ``(C, F)`` sums and counts."""
        out = global_importance(weight_sums, counts)
        return cls(out.lime, out.average, out.homogeneity, weight_sums, counts,
                   list(feature_names), list(class_names), dict(options or {}))

    def get(self, kind: str) -> Tensor:
        """The ``(C, F)`` importance named ``kind`` ("lime", "average" or "homogeneity")."""
        if kind not in KINDS:
            raise ValueError(f"expected kind in {list(KINDS)}, got {kind!r}")
        return getattr(self, kind)

    def _class_index(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.class_names:
                raise ValueError(f"expected a class name in {self.class_names}, got {cls!r}")
            return self.class_names.index(cls)
        C = len(self.class_names)
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < C:
            raise ValueError(f"expected a class index in [0, {C}), got {cls!r}")
        return cls

    def top(self, cls: int | str, k: int = 10, kind: str = "lime") -> list[tuple[str, float]]:
        """The ``k`` most important features of class ``cls`` as ``[(name, value)]``.

        Features with importance 0 (never seen for the class) are left out; ties keep
        the feature order.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"expected k >= 1, got {k!r}")
        row = self.get(kind)[self._class_index(cls)].detach().cpu()
        order = sorted(range(row.numel()), key=lambda j: -float(row[j]))
        return [(self.feature_names[j], float(row[j])) for j in order[:k] if float(row[j]) > 0]

    def ranking(self, kind: str = "lime", k: int = 10) -> dict[str, list[tuple[str, float]]]:
        """:meth:`top` for every class, keyed by class name."""
        return {name: self.top(c, k, kind) for c, name in enumerate(self.class_names)}

    # -- files ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types (per class: feature -> value, non-zero entries)."""
        def table(t: Tensor) -> dict[str, dict[str, float]]:
            t = t.detach().cpu().double()
            return {
                cname: {f: float(v) for f, v in zip(self.feature_names, t[c].tolist()) if v != 0}
                for c, cname in enumerate(self.class_names)
            }

        return {
            "format": "torchlime.GlobalImportance/1",
            "class_names": self.class_names,
            "feature_names": self.feature_names,
            "options": self.options,
            "weight_sums": table(self.weight_sums),
            "counts": table(self.counts),
            **{kind: table(self.get(kind)) for kind in KINDS},
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` atomically."""
        data = self.to_dict()
        return atomic_write(path, lambda f: json.dump(data, f, indent=2))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlobalImportance:
        """Rebuild from :meth:`to_dict` (the importances are recomputed from the sums)."""
        if data.get("format") != "torchlime.GlobalImportance/1":
            raise ValueError(
                f"expected a torchlime.GlobalImportance/1 JSON, got format {data.get('format')!r}"
            )
        classes, features = list(data["class_names"]), list(data["feature_names"])
        index = {f: j for j, f in enumerate(features)}

        def dense(table: dict[str, dict[str, float]]) -> Tensor:
            out = torch.zeros(len(classes), len(features), dtype=torch.float64)
            for c, cname in enumerate(classes):
                for f, v in table.get(cname, {}).items():
                    out[c, index[f]] = v
            return out

        return cls.from_sums(dense(data["weight_sums"]), dense(data["counts"]), features, classes,
                             data.get("options"))

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> GlobalImportance:
        """Read a file written by :meth:`save_json`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def save_figure(self, path: str | os.PathLike, k: int = 10, kinds: tuple[str, ...] = KINDS) -> Path:
        """A PNG: the top ``k`` features per class (rows) for each importance (columns)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for kind in kinds:
            self.get(kind)
        C = len(self.class_names)
        fig, axes = plt.subplots(C, len(kinds), figsize=(4.5 * len(kinds), 0.3 * k * C + 1.0), squeeze=False)
        for c, cname in enumerate(self.class_names):
            for col, kind in enumerate(kinds):
                ax = axes[c][col]
                top = self.top(c, k, kind)[::-1]
                ax.barh(range(len(top)), [v for _, v in top], color="tab:red")
                ax.set_yticks(range(len(top)), [name[:30] for name, _ in top], fontsize=7)
                ax.set_title(f"{cname}: {kind}", fontsize=9)
                ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"), mode=None)
        finally:
            plt.close(fig)
