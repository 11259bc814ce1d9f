"""``GlobalAggregator``: global importance as a torchmetrics ``Metric``.

Shape glossary: B instances, K targets per instance, C classes, F features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._result import GlobalImportance

try:
    from torchmetrics import Metric
    from torchmetrics.utilities.distributed import gather_all_tensors
except ModuleNotFoundError as err:  # pragma: no cover - exercised only without the extra
    raise ModuleNotFoundError(
        "torchlime.GlobalAggregator needs torchmetrics: pip install 'torchlime[metrics]'"
    ) from err

__all__ = ["GlobalAggregator", "LABELS", "COMPONENTS", "FEATURE_TYPES"]

LABELS = ("predicted", "explained")
COMPONENTS = ("positive", "negative", "both")
FEATURE_TYPES = ("all", "audio", "lyrics")


def _natural_key(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _encode(names: Sequence[str]) -> Tensor:
    blob = b"".join(name.encode("utf-8") + b"\0" for name in names)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8)


def _decode(blob: Tensor) -> list[str]:
    data = bytes(blob.cpu().tolist())
    return [part.decode("utf-8") for part in data.split(b"\0")[:-1]]


class GlobalAggregator(Metric):
    """Aggregate local explanations into global importances per class.

    For every explanation with class c (its predicted class, or each explained label)
    and every feature j it keeps (its selected features, filtered by ``components`` and
    ``top_k``), ``|w_j|`` is added to ``W[c, j]`` and 1 to ``N[c, j]``; :meth:`compute`
    turns these into LIME, average and homogeneity-weighted importance
    (:func:`torchlime.functional.global_importance`). The sums are torchmetrics states, so
    under ``torch.distributed`` every process adds its own songs and ``compute()``
    reduces them (``sum``), and an aggregator can be a logged metric in a training loop.

    Two feature spaces:

    - fixed (``feature_names`` given, e.g. stems x segments): dense ``(C, F)`` states;
      an explanation over other features is an error;
    - open (``feature_names=None``, e.g. lyric lines or words, which differ per song):
      every update keeps its features' names (as UTF-8 bytes, so they cross process
      boundaries with the sums); ``compute()`` merges them by name, in natural sort order.
      A repeated lyric line is one feature per occurrence (``LyricsFactorization`` names
      the second ``"<line> (2)"``): first occurrences merge across songs, second
      occurrences with second occurrences, and so on.

    Args:
        num_classes: C.
        feature_names: the fixed feature space, or None for an open one.
        label: "predicted" (the class the model predicts for the unperturbed input, as
            the MusicLIME notebook; it must be among the explained labels) or
            "explained" (every explained label counts for its own class).
        components: which weights count: "positive" (the notebook), "negative", "both".
        top_k: keep only the ``top_k`` largest |weights| of each explanation (after the
            sign filter); None keeps all selected features.
        feature_types: "all", or only the "audio" or "lyrics" features of MusicLIME
            explanations.
        class_names: C names (default "0".."C-1").
        validate_args: check updates for NaN/inf weights and class indices out of range
            (one host sync per tensor update); turn off for a sync-free ``update``.
        **kwargs: passed to ``torchmetrics.Metric`` (``process_group``,
            ``sync_on_compute``, ...).

    Example:
        >>> import torch
        >>> from torchlime import GlobalAggregator
        >>> agg = GlobalAggregator(2, ["drums_T0", "bass_T0", "chorus"])
        >>> agg.update(weights=torch.tensor([[0.5, 0.0, 0.25], [0.125, 0.5, -0.25]]),
        ...            classes=torch.tensor([1, 0]))
        >>> result = agg.compute()
        >>> [(name, round(value, 6)) for name, value in result.top(1, k=2)]
        [('drums_T0', 0.707107), ('chorus', 0.5)]
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(
        self,
        num_classes: int,
        feature_names: Sequence[str] | None = None,
        *,
        label: str = "predicted",
        components: str = "positive",
        top_k: int | None = None,
        feature_types: str = "all",
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"expected num_classes >= 1, got {num_classes!r}")
        if label not in LABELS:
            raise ValueError(f"expected label in {list(LABELS)}, got {label!r}")
        if components not in COMPONENTS:
            raise ValueError(f"expected components in {list(COMPONENTS)}, got {components!r}")
        if feature_types not in FEATURE_TYPES:
            raise ValueError(f"expected feature_types in {list(FEATURE_TYPES)}, got {feature_types!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"expected top_k >= 1 or None, got {top_k!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"expected {num_classes} class names, got {len(class_names)}")
        if feature_names is not None:
            feature_names = [str(f) for f in feature_names]
            if not feature_names:
                raise ValueError("expected at least one feature name, got none")
            if len(set(feature_names)) != len(feature_names):
                dup = sorted({f for f in feature_names if feature_names.count(f) > 1})
                raise ValueError(f"expected unique feature names, got duplicates {dup[:10]}")
        self.num_classes = num_classes
        self.feature_names = feature_names
        self.label = label
        self.components = components
        self.top_k = top_k
        self.feature_types = feature_types
        self.class_names = [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(num_classes)]
        self.validate_args = validate_args
        if feature_names is not None:
            self._index = {f: j for j, f in enumerate(feature_names)}
            F = len(feature_names)
            self.add_state("weight_sums", torch.zeros(num_classes, F, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("counts", torch.zeros(num_classes, F, dtype=torch.int64), dist_reduce_fx="sum")
        else:
            # Open space: per update, its feature names and (F_u, C) sums, concatenated
            # over updates and processes; row r of the sums belongs to name r.
            self.add_state("names", [], dist_reduce_fx="cat")
            self.add_state("open_weight_sums", [], dist_reduce_fx="cat")
            self.add_state("open_counts", [], dist_reduce_fx="cat")

    @property
    def options(self) -> dict[str, Any]:
        """The aggregation settings, as stored with the result."""
        return {"label": self.label, "components": self.components, "top_k": self.top_k,
                "feature_types": self.feature_types}

    # -- update -------------------------------------------------------------------------

    def update(  # type: ignore[override]
        self,
        explanations: Any = None,
        *,
        weights: Tensor | None = None,
        classes: Tensor | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        """Add explanations: MusicLIME :class:`~torchlime.music.Explanation` objects, or tensors.

        Args:
            explanations: one :class:`~torchlime.music.Explanation` or an iterable of them.
            weights: ``(B, F)`` or ``(B, K, F)`` coefficients (0 for features not selected).
            classes: ``(B,)`` or ``(B, K)`` class index of each row of ``weights``.
            feature_names: F names of the columns of ``weights`` (open space only; a fixed
                space uses its own).

        Raises:
            ValueError: both or neither of explanations and weights, an explanation over
                another feature space (fixed space), NaN or inf weights, a class index out of
                range, a predicted class that was not explained (``label="predicted"``),
                shapes that do not match.
        """
        if (explanations is None) == (weights is None):
            raise ValueError("expected either explanations or weights= (with classes=), got "
                             + ("both" if weights is not None else "neither"))
        if weights is not None:
            self._update_tensors(weights, classes, feature_names)
        else:
            items = [explanations] if hasattr(explanations, "local_exp") else list(explanations)
            self._update_explanations(items)

    def _update_tensors(self, weights: Tensor, classes: Tensor | None, feature_names: Sequence[str] | None) -> None:
        if not isinstance(weights, Tensor) or weights.dim() not in (2, 3):
            raise ValueError(f"expected weights of shape (B, F) or (B, K, F), got {getattr(weights, 'shape', type(weights))}")
        if not isinstance(classes, Tensor) or tuple(classes.shape) != tuple(weights.shape[:-1]):
            raise ValueError(
                f"expected classes of shape {tuple(weights.shape[:-1])} (one per row of weights), got "
                f"{tuple(classes.shape) if isinstance(classes, Tensor) else type(classes).__name__}"
            )
        if classes.dtype.is_floating_point or classes.dtype == torch.bool:
            raise ValueError(f"expected integer class indices, got dtype {classes.dtype}")
        F = weights.shape[-1]
        if self.feature_names is not None:
            if feature_names is not None and list(feature_names) != self.feature_names:
                raise ValueError("expected feature_names equal to the aggregator's fixed feature space, got others")
            if F != len(self.feature_names):
                raise ValueError(f"expected weights with {len(self.feature_names)} features (the fixed space), got {F}")
        elif feature_names is None or len(feature_names) != F:
            raise ValueError(
                f"expected {F} feature_names for the columns of weights (open feature space), got "
                f"{'none' if feature_names is None else len(feature_names)}"
            )
        w = weights.detach().reshape(-1, F).to(torch.float64)
        c = classes.reshape(-1).to(w.device)
        if self.validate_args:
            if not bool(torch.isfinite(w).all()):
                raise ValueError("expected finite weights, got NaN or inf")
            if c.numel() and not bool(((c >= 0) & (c < self.num_classes)).all()):
                raise ValueError(f"expected class indices in [0, {self.num_classes}), got {c[(c < 0) | (c >= self.num_classes)].unique().tolist()}")
        keep = self._keep(w)
        onehot = torch.nn.functional.one_hot(c.clamp(0, self.num_classes - 1), self.num_classes).to(torch.float64)
        sums = (w.abs() * keep).T @ onehot  # (F, C)
        counts = (keep.to(torch.float64).T @ onehot).round().to(torch.int64)
        self._accumulate(sums, counts, feature_names if self.feature_names is None else None)

    def _keep(self, w: Tensor) -> Tensor:
        """Which entries of ``(R, F)`` weights count: the sign filter, then ``top_k`` by |w|."""
        if self.components == "positive":
            keep = w > 0
        elif self.components == "negative":
            keep = w < 0
        else:
            keep = w != 0
        if self.top_k is not None and self.top_k < w.shape[-1]:
            score = torch.where(keep, w.abs(), torch.full_like(w, -1.0))
            top = score.topk(self.top_k, dim=-1).indices
            keep = keep & torch.zeros_like(keep).scatter(-1, top, True)
        return keep

    def _update_explanations(self, items: Iterable[Any]) -> None:
        entries: dict[str, list[float]] = {}  # name -> per-class [sum..., count...]
        C = self.num_classes
        for exp in items:
            if not hasattr(exp, "local_exp"):
                raise ValueError(f"expected torchlime.music.Explanation objects, got {type(exp).__name__}")
            names = list(exp.feature_names)
            if self.feature_types != "all":
                allowed = {i for i, t in enumerate(exp.feature_types) if t == self.feature_types}
            else:
                allowed = set(range(len(names)))
            if self.feature_names is not None:
                space = [names[i] for i in sorted(allowed)]
                if space != self.feature_names:
                    unknown = [f for f in space if f not in self._index][:5]
                    raise ValueError(
                        f"expected explanations over the aggregator's fixed feature space "
                        f"({len(self.feature_names)} features), got one over {len(space)} features"
                        + (f" (e.g. {unknown})" if unknown else "")
                        + ": use one aggregator per feature space, feature_names=None for an open space, "
                        "or feature_types='audio'"
                    )
            for label, cls in self._labels_of(exp):
                pairs = [(i, w) for i, w in exp.local_exp[label] if i in allowed]
                for _, w in pairs:
                    if not math.isfinite(w):
                        raise ValueError(f"expected finite weights, got {w} in the explanation of label {label}")
                if self.components == "positive":
                    pairs = [(i, w) for i, w in pairs if w > 0]
                elif self.components == "negative":
                    pairs = [(i, w) for i, w in pairs if w < 0]
                else:
                    pairs = [(i, w) for i, w in pairs if w != 0]
                pairs.sort(key=lambda p: -abs(p[1]))
                if self.top_k is not None:
                    pairs = pairs[: self.top_k]
                for i, w in pairs:
                    row = entries.setdefault(names[i], [0.0] * (2 * C))
                    row[cls] += abs(w)
                    row[C + cls] += 1
        if not entries:
            return
        table = torch.tensor(list(entries.values()), dtype=torch.float64, device=self.device)
        self._accumulate(table[:, :C], table[:, C:].round().to(torch.int64), list(entries))

    def _labels_of(self, exp: Any) -> list[tuple[int, int]]:
        """(explained label, class it counts for) pairs of one explanation."""
        C = self.num_classes
        if self.label == "explained":
            pairs = [(int(label), int(label)) for label in exp.labels]
        else:
            predicted = int(torch.as_tensor(exp.prediction).argmax())
            if predicted not in exp.local_exp:
                raise ValueError(
                    f"expected the predicted class {predicted} among the explained labels {list(exp.labels)} "
                    f"(label='predicted'); explain it too, or use label='explained'"
                )
            pairs = [(predicted, predicted)]
        for _, cls in pairs:
            if not 0 <= cls < C:
                raise ValueError(f"expected class indices in [0, {C}), got {cls}")
        return pairs

    def _accumulate(self, sums: Tensor, counts: Tensor, names: Sequence[str] | None) -> None:
        """Add ``(F_u, C)`` sums and counts of features ``names`` (None: the fixed space, in order)."""
        if self.feature_names is not None:
            if names is None:
                self.weight_sums += sums.T.to(self.weight_sums.device)
                self.counts += counts.T.to(self.counts.device)
            else:
                index = torch.tensor([self._index[f] for f in names], device=self.weight_sums.device)
                self.weight_sums.index_add_(1, index, sums.T.to(self.weight_sums.device))
                self.counts.index_add_(1, index, counts.T.to(self.counts.device))
            return
        self.names.append(_encode([str(f) for f in names]).to(self.device))
        self.open_weight_sums.append(sums.to(self.device))
        self.open_counts.append(counts.to(self.device))

    def _sync_dist(self, dist_sync_fn: Any = gather_all_tensors, process_group: Any = None) -> None:
        # A process that saw nothing still takes part in the gather, with typed empty states
        # (torchmetrics would make them float32, which the gather cannot mix with uint8).
        if self.feature_names is None:
            C = self.num_classes
            if not self.names:
                self.names.append(torch.zeros(0, dtype=torch.uint8, device=self.device))
                self.open_weight_sums.append(torch.zeros(0, C, dtype=torch.float64, device=self.device))
                self.open_counts.append(torch.zeros(0, C, dtype=torch.int64, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    # -- compute ------------------------------------------------------------------------

    def compute(self) -> GlobalImportance:  # type: ignore[override]
        """The global importances of everything added so far (all processes)."""
        if self.feature_names is not None:
            return GlobalImportance.from_sums(self.weight_sums.clone(), self.counts.clone(), self.feature_names,
                                              self.class_names, self.options)
        C = self.num_classes
        cat = lambda s, shape, dtype: (torch.cat(s) if isinstance(s, list) and s else s if isinstance(s, Tensor)  # noqa: E731
                                       else torch.zeros(shape, dtype=dtype, device=self.device))
        blob = cat(self.names, (0,), torch.uint8)
        sums = cat(self.open_weight_sums, (0, C), torch.float64).reshape(-1, C)
        counts = cat(self.open_counts, (0, C), torch.int64).reshape(-1, C)
        names = _decode(blob)
        if len(names) != sums.shape[0]:  # pragma: no cover - a broken state, not user input
            raise RuntimeError(f"aggregator state out of step: {len(names)} names for {sums.shape[0]} rows")
        vocab = sorted(set(names), key=_natural_key)
        col = {f: j for j, f in enumerate(vocab)}
        index = torch.tensor([col[f] for f in names], dtype=torch.long, device=sums.device)
        W = torch.zeros(C, len(vocab), dtype=torch.float64, device=sums.device).index_add_(1, index, sums.T)
        N = torch.zeros(C, len(vocab), dtype=torch.int64, device=sums.device).index_add_(1, index, counts.T)
        return GlobalImportance.from_sums(W, N, vocab, self.class_names, self.options)
