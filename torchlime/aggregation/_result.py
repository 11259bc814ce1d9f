"""``GlobalImportance``: the computed global importances with their feature and class names."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._atomic import atomic_write
from .._checks import check_int
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
        support: ``(C,)`` how many explanations counted for each class (kept features
            or not), or None where unknown (a file written before it was recorded).

    Example:
        >>> import torch
        >>> from torchlime import GlobalImportance
        >>> W = torch.tensor([[4.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # sums of |coef| per class
        >>> N = torch.tensor([[2, 1, 0], [0, 1, 0]])               # how many explanations
        >>> result = GlobalImportance.from_sums(W, N, ["vocals_T0", "la la", "drums_T1"],
        ...                                     ["rock", "pop"], support=torch.tensor([2, 1]))
        >>> result.top("rock", k=2)
        [('vocals_T0', 2.0), ('la la', 1.0)]
        >>> result.top("pop", kind="homogeneity")  # "la la" is shared: no specific feature
        []
        >>> fig, ax = result.plot("rock")  # a matplotlib Figure, for a notebook
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['la la', 'vocals_T0']
    """

    lime: Tensor
    average: Tensor
    homogeneity: Tensor
    weight_sums: Tensor
    counts: Tensor
    feature_names: list[str]
    class_names: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    support: Tensor | None = None

    @classmethod
    def from_sums(cls, weight_sums: Tensor, counts: Tensor, feature_names: list[str],
                  class_names: list[str], options: dict[str, Any] | None = None,
                  support: Tensor | None = None) -> GlobalImportance:
        """Compute the three importances from ``(C, F)`` sums and counts (and ``(C,)`` support)."""
        out = global_importance(weight_sums, counts)
        C, F = out.lime.shape[-2:]
        if len(feature_names) != F or len(class_names) != C:
            raise ValueError(f"expected {C} class names and {F} feature names for sums of shape {(C, F)}, "
                             f"got {len(class_names)} and {len(feature_names)}")
        if support is not None and tuple(support.shape) != (C,):
            raise ValueError(f"expected support of shape ({C},), got {tuple(support.shape)}")
        return cls(out.lime, out.average, out.homogeneity, weight_sums, counts,
                   list(feature_names), list(class_names), dict(options or {}), support)

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
        check_int(k, "k", 1)
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

        support = {} if self.support is None else {
            "support": dict(zip(self.class_names, self.support.detach().cpu().tolist()))
        }
        return {
            "format": "torchlime.GlobalImportance/1",
            "class_names": self.class_names,
            "feature_names": self.feature_names,
            "options": self.options,
            **support,
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

        support = data.get("support")
        if support is not None:
            support = torch.tensor([int(support.get(cname, 0)) for cname in classes], dtype=torch.int64)
        return cls.from_sums(dense(data["weight_sums"]), dense(data["counts"]), features, classes,
                             data.get("options"), support)

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> GlobalImportance:
        """Read a file written by :meth:`save_json`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    # -- figures -------------------------------------------------------------------------

    def _panel(self, ax: Any, c: int, kind: str, k: int, wrap: int) -> None:
        """Draw the top ``k`` features of class ``c`` on ``ax``; a note where there are none."""
        top = self.top(c, k, kind)[::-1]  # barh draws bottom-up: the largest on top
        empty = int(self.support[c]) == 0 if self.support is not None else not bool((self.counts[c] > 0).any())
        title = f"{self.class_names[c]}: {kind}"
        if self.support is not None:
            n = int(self.support[c])
            title += f" ({n} song{'s' if n != 1 else ''})"
        ax.set_title(title, fontsize=9)
        if not top:
            note = "no songs" if empty else "no features kept\n(" + ", ".join(
                f"{key}={value}" for key, value in self.options.items() if key in ("components", "top_k")
            ) + ")"
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            return
        labels = [_wrapped(name, wrap) for name, _ in top]
        # Each bar gets as much height as its label has lines, so wrapped labels never overlap.
        heights = [label.count("\n") + 1 for label in labels]
        centres = [sum(heights[:i]) + h / 2 for i, h in enumerate(heights)]
        ax.barh(centres, [v for _, v in top], height=0.8, color="tab:red")
        ax.set_yticks(centres, labels, fontsize=7)
        ax.set_ylim(0, sum(heights))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(f"{kind} importance", fontsize=7)

    def _lines(self, c: int, kind: str, k: int, wrap: int) -> int:
        """How many text lines the labels of one panel take (at least 3, room for a note)."""
        return max(3, sum(_wrapped(name, wrap).count("\n") + 1 for name, _ in self.top(c, k, kind)))

    def plot(self, cls: int | str = 0, kind: str = "lime", k: int = 10, ax: Any = None,
             wrap: int = 40) -> tuple[Any, Any]:
        """Bar chart of the top ``k`` features of one class, for a notebook or your own figure.

        Draws on ``ax`` (a matplotlib ``Axes``) or, without one, on a new
        ``matplotlib.figure.Figure``; it never touches pyplot's state or the backend. A
        Jupyter notebook shows the returned figure when it is a cell's value.

        Args:
            cls: class index or name.
            kind: "lime", "average" or "homogeneity".
            k: how many features.
            ax: where to draw; None makes a figure.
            wrap: feature names longer than this many characters are wrapped, not cut.

        Returns:
            ``(figure, axes)``.
        """
        c = self._class_index(cls)
        self.get(kind)
        check_int(k, "k", 1)
        check_int(wrap, "wrap", 1)
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(6, 0.15 * self._lines(c, kind, k, wrap) + 1.0), layout="constrained")
            ax = fig.add_subplot()
        self._panel(ax, c, kind, k, wrap)
        return ax.figure, ax

    def plot_grid(self, k: int = 10, kinds: tuple[str, ...] = KINDS, wrap: int = 40) -> tuple[Any, Any]:
        """The top ``k`` features of every class (rows) for each importance (columns).

        A class no explanation counted for says "no songs" in its panels. Drawn on a new
        ``matplotlib.figure.Figure`` (no pyplot state).

        Args:
            k: features per panel.
            kinds: the importances, one column each.
            wrap: feature names longer than this many characters are wrapped, not cut.

        Returns:
            ``(figure, axes)``, axes a ``(C, len(kinds))`` array.
        """
        from matplotlib.figure import Figure

        for kind in kinds:
            self.get(kind)
        check_int(k, "k", 1)
        check_int(wrap, "wrap", 1)
        if not kinds:
            raise ValueError("expected at least one kind, got none")
        C = len(self.class_names)
        lines = [max(self._lines(c, kind, k, wrap) for kind in kinds) for c in range(C)]
        fig = Figure(figsize=(4.5 * len(kinds), 0.15 * sum(lines) + 0.9 * C), layout="constrained")
        axes = fig.subplots(C, len(kinds), squeeze=False,
                            gridspec_kw={"height_ratios": [n + 6 for n in lines]})  # + title and axis
        for c in range(C):
            for col, kind in enumerate(kinds):
                self._panel(axes[c][col], c, kind, k, wrap)
        return fig, axes

    def save_figure(self, path: str | os.PathLike, k: int = 10, kinds: tuple[str, ...] = KINDS,
                    wrap: int = 40) -> Path:
        """A PNG of :meth:`plot_grid`, written atomically (no pyplot, no backend switch)."""
        fig, _ = self.plot_grid(k, kinds, wrap)
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"), mode=None)


def _wrapped(name: str, width: int) -> str:
    """A feature name on lines of at most ``width`` characters (whole, not cut; words kept)."""
    text = " ".join(name.split()) or repr(name)  # newlines or tabs inside a lyric line read as spaces
    # Other control characters (a NUL in a lyric line) draw as nothing: show them escaped.
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text
