"""Global importance from aggregated local explanations (van der Linden et al. 2019).

Two steps, as torchmetrics splits a metric: :func:`global_importance_update` turns local
explanations (surrogate ``coef`` and the class each one counts for) into per-class sums
and counts, and :func:`global_importance` turns sums and counts into the three
importances. Sums of several updates add up, so the first step runs per batch, per
process or per training step and the second once at the end.

Shape glossary: R explanation rows (one explanation of one label), C classes, F
features, any leading dims ``...`` (for example one set of sums per process or per
training step).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_choice, check_int
from .evaluation import check_weights, feature_ranking

__all__ = [
    "COMPONENTS",
    "ImportanceSums",
    "Importance",
    "global_importance_update",
    "global_importance",
    "feature_entropy",
]

COMPONENTS = ("positive", "negative", "both")


class ImportanceSums(NamedTuple):
    """What :func:`global_importance_update` adds up.

    Attributes:
        weight_sums: ``(..., C, F)`` float64, per class the sum of ``|coef|`` of the kept
            entries.
        counts: ``(..., C, F)`` int64, per class how many rows kept each feature.
        support: ``(..., C)`` int64, per class how many rows counted for it (kept
            features or not): 0 means no explanation was of that class.
    """

    weight_sums: Tensor
    counts: Tensor
    support: Tensor


def _kept(coef: Tensor, components: str, top_k: int | None, order: Tensor | None) -> Tensor:
    """Bool ``(..., R, F)``: the sign filter, then the first ``top_k`` by |coef| (ties: ``order``)."""
    if components == "positive":
        keep = coef > 0
    elif components == "negative":
        keep = coef < 0
    else:
        keep = coef != 0
    F = coef.shape[-1]
    if top_k is None or top_k >= F:
        return keep
    # |coef| where kept, -1 elsewhere: a ranking puts every kept entry before every dropped
    # one, largest |coef| first; feature_ranking breaks ties by the lower index, so ranking
    # the columns in ``order`` breaks them by the position in ``order``.
    score = torch.where(keep, coef.abs(), torch.full_like(coef, -1.0))
    if order is None:
        top = feature_ranking(score)[..., :top_k]
    else:
        top = order.gather(-1, feature_ranking(score.gather(-1, order))[..., :top_k])
    return keep & torch.zeros_like(keep).scatter_(-1, top, True)


def global_importance_update(
    coef: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    components: str = "positive",
    top_k: int | None = None,
    order: Tensor | None = None,
    validate_args: bool = True,
) -> ImportanceSums:
    """Per-class sums of ``|coef|`` and counts from R local explanations.

    Row r is one explanation (its surrogate coefficients, 0 for features it did not
    select) that counts for class ``labels[r]`` (the class the model predicts for the
    song, as the MusicLIME notebook, or the explained label). Each row keeps

    1. the entries of the asked sign: ``components="positive"`` (``coef > 0``, the
       notebook), ``"negative"`` (``coef < 0``) or ``"both"`` (``coef != 0``);
    2. of those, the ``top_k`` largest ``|coef|`` (all with ``top_k=None``).

    **Ties** (equal ``|coef|`` competing for the last places of ``top_k``): the feature
    listed first wins, in the order ``order`` lists the features, by default the lower
    feature index. The MusicLIME notebook walks lime's ``local_exp`` (features sorted by
    ``|weight|`` descending with a stable sort, so tied features keep the order the
    feature selection listed them in) and keeps its first ``top_k`` entries of the asked
    sign; passing that order (as :class:`~torchlime.GlobalAggregator` does for an
    :class:`~torchlime.music.Explanation`) gives exactly the notebook's choice. For an
    explanation whose ``local_exp`` lists tied features by index (lime with
    ``feature_selection="none"``, every explanation read back from its JSON), the
    default order gives the same answer.

    Then ``weight_sums[c, j]`` is the sum of ``|coef[r, j]|`` over the rows r with
    ``labels[r] == c`` that keep j, ``counts[c, j]`` how many such rows there are and
    ``support[c]`` how many rows have ``labels[r] == c``. The sums of several calls add
    up; :func:`global_importance` turns them into importances.

    No host synchronisation unless ``validate_args`` looks at the values.

    Args:
        coef: ``(..., R, F)`` surrogate coefficients.
        labels: ``(..., R)`` integer class of each row, in ``[0, num_classes)``.
        num_classes: C.
        components: "positive", "negative" or "both".
        top_k: keep at most this many entries per row (after the sign filter); None
            keeps all.
        order: ``(..., R, F)`` int64, each row a permutation of the F feature indices: the
            order in which ties are broken (first listed wins). Default: index order.
        validate_args: check the values (finite ``coef``, ``labels`` in range, ``order``
            a permutation); one host sync. Shapes and options are always checked.

    Returns:
        :class:`ImportanceSums` ``(weight_sums, counts, support)``: ``(..., C, F)``
        float64, ``(..., C, F)`` int64 and ``(..., C)`` int64, on ``coef``'s device.

    Raises:
        TypeError: non-tensor inputs, non-integer ``labels`` or ``order``.
        ValueError: shapes that do not match, a bad option, and with ``validate_args``
            NaN or inf ``coef``, ``labels`` out of range, an ``order`` row that is not a
            permutation.

    Example:
        >>> import torch
        >>> coef = torch.tensor([[0.5, 0.5, 0.5, 0.1],    # three tied features, top_k=2:
        ...                      [0.0, -0.2, 0.4, 0.3]])  # the two listed first count
        >>> out = global_importance_update(coef, torch.tensor([0, 1]), 2, top_k=2)
        >>> out.counts
        tensor([[1, 1, 0, 0],
                [0, 0, 1, 1]])
        >>> out.weight_sums
        tensor([[0.5000, 0.5000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.4000, 0.3000]], dtype=torch.float64)
        >>> out.support
        tensor([1, 1])
        >>> # the same row with its features listed in another order (e.g. lime's local_exp)
        >>> global_importance_update(coef[:1], torch.tensor([0]), 2, top_k=2,
        ...                          order=torch.tensor([[2, 1, 0, 3]])).counts
        tensor([[0, 1, 1, 0],
                [0, 0, 0, 0]])
    """
    if not isinstance(coef, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"expected coef and labels to be tensors, got {type(coef).__name__} and {type(labels).__name__}"
        )
    num_classes = check_int(num_classes, "num_classes", 1)
    check_choice(components, "components", COMPONENTS)
    top_k = None if top_k is None else check_int(top_k, "top_k", 1)
    if coef.dim() < 2 or coef.is_complex():
        raise ValueError(f"expected real coef of shape (..., R, F), got {coef.dtype} of shape {tuple(coef.shape)}")
    if labels.shape != coef.shape[:-1]:
        raise ValueError(
            f"expected labels of shape {tuple(coef.shape[:-1])} (one per row of coef), got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"expected integer labels, got {labels.dtype}")
    if order is not None:
        if not isinstance(order, Tensor) or order.dtype != torch.int64:
            got = getattr(order, "dtype", type(order).__name__)
            raise TypeError(f"expected order to be an int64 tensor, got {got}")
        if order.shape != coef.shape:
            raise ValueError(f"expected order of the shape of coef {tuple(coef.shape)}, got {tuple(order.shape)}")
    C = num_classes
    if validate_args:
        if coef.shape[-1]:
            check_weights(coef, "coef")
        bad = (labels < 0) | (labels >= C)
        if bool(bad.any()):
            raise ValueError(f"expected labels in [0, {C}), got {labels[bad].unique().tolist()}")
        if order is not None and order.numel():
            arange = torch.arange(coef.shape[-1], device=order.device)
            if not bool((order.sort(-1).values == arange).all()):
                raise ValueError("expected each row of order to be a permutation of the feature indices 0..F-1")
    if order is not None:
        order = order.to(coef.device)
    keep = _kept(coef, components, top_k, order)
    # One-hot classes (R, C) as float64: a batched matmul sums rows per class exactly (counts
    # are integers far below 2**53) and, unlike one_hot or scatter, never syncs or races.
    onehot = (labels.to(coef.device).unsqueeze(-1) == torch.arange(C, device=coef.device)).to(torch.float64)
    kept = keep.to(torch.float64)
    onehot_t = onehot.transpose(-1, -2)
    weight_sums = onehot_t @ (coef.to(torch.float64).abs() * kept)
    counts = (onehot_t @ kept).round().to(torch.int64)
    support = onehot.sum(-2).round().to(torch.int64)
    return ImportanceSums(weight_sums, counts, support)


class Importance(NamedTuple):
    """The three global importances, each ``(..., C, F)``.

    Attributes:
        lime: ``sqrt(W)``, the LIME importance.
        average: ``W / N`` where ``N > 0``, else 0.
        homogeneity: ``(1 - (H - H_min) / (H_max - H_min)) * lime``; equal to ``lime``
            where ``H_max == H_min``.
    """

    lime: Tensor
    average: Tensor
    homogeneity: Tensor


def _check(weight_sums: Tensor, counts: Tensor) -> None:
    if not isinstance(weight_sums, Tensor) or not isinstance(counts, Tensor):
        raise TypeError(
            f"expected weight_sums and counts to be tensors, got {type(weight_sums).__name__} "
            f"and {type(counts).__name__}"
        )
    if weight_sums.dim() < 2:
        raise ValueError(f"expected weight_sums of shape (..., C, F), got shape {tuple(weight_sums.shape)}")
    if weight_sums.shape != counts.shape:
        raise ValueError(
            f"expected counts of the same shape as weight_sums {tuple(weight_sums.shape)}, "
            f"got {tuple(counts.shape)}"
        )


def feature_entropy(lime: Tensor) -> tuple[Tensor, Tensor]:
    """Entropy over classes of each feature's share of its LIME importance.

    ``p[c, j] = lime[c, j] / sum_c lime[c, j]``, ``H[j] = -sum_c p log2 p`` (``0 log 0 = 0``).

    Args:
        lime: ``(..., C, F)`` non-negative importances.

    Returns:
        ``H`` of shape ``(..., F)`` and the bool mask ``(..., F)`` of the features that
        occur (a positive total); ``H`` is 0 where a feature does not occur.
    """
    total = lime.sum(-2, keepdim=True)
    occurs = total > 0
    p = torch.where(occurs, lime / torch.where(occurs, total, torch.ones_like(total)), torch.zeros_like(lime))
    plogp = torch.where(p > 0, p * torch.log2(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    return -plogp.sum(-2), occurs.squeeze(-2)


def global_importance(weight_sums: Tensor, counts: Tensor) -> Importance:
    """LIME, average and homogeneity-weighted global importance.

    For every explained instance with class c and every feature j of its explanation,
    ``weight_sums[c, j]`` holds the sum of ``|w_j|`` and ``counts[c, j]`` how many
    explanations contained j. Then, as in the MusicLIME global-aggregation notebook:

    - ``lime = sqrt(W)``
    - ``average = W / N`` (0 where ``N == 0``)
    - ``p = lime / lime.sum(classes)``, ``H = -sum_c p log2 p``
    - ``homogeneity = (1 - (H - H_min) / (H_max - H_min)) * lime``, with ``H_min`` and
      ``H_max`` over the features that occur (positive total ``W``). Where
      ``H_max == H_min`` (the notebook divides by zero) ``homogeneity = lime``.
      Features that do not occur have all three importances 0.

    Computed in float64 and returned in the input's floating dtype (float32 for
    integer inputs).

    Args:
        weight_sums: ``(..., C, F)`` sums of absolute weights, non-negative.
        counts: ``(..., C, F)`` occurrence counts, non-negative.

    Returns:
        :class:`Importance` ``(lime, average, homogeneity)``, each ``(..., C, F)``.

    Raises:
        ValueError: shapes that differ or are not ``(..., C, F)``.

    Example:
        >>> import torch
        >>> W = torch.tensor([[4.0, 1.0], [0.0, 1.0]])
        >>> N = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
        >>> out = global_importance(W, N)
        >>> out.lime
        tensor([[2., 1.],
                [0., 1.]])
        >>> out.average
        tensor([[2., 1.],
                [0., 1.]])
        >>> out.homogeneity  # feature 0 is specific to class 0, feature 1 is shared
        tensor([[2., 0.],
                [0., 0.]])
    """
    _check(weight_sums, counts)
    dtype = weight_sums.dtype if weight_sums.dtype.is_floating_point else torch.float32
    W = weight_sums.double()
    N = counts.double()
    lime = W.sqrt()
    average = torch.where(N > 0, W / torch.where(N > 0, N, torch.ones_like(N)), torch.zeros_like(W))
    if W.shape[-1] == 0:  # no feature (an open space nothing was kept in): nothing to scale
        return Importance(lime.to(dtype), average.to(dtype), lime.to(dtype))
    H, occurs = feature_entropy(lime)
    inf = torch.full_like(H, float("inf"))
    h_min = torch.where(occurs, H, inf).amin(-1, keepdim=True)
    h_max = torch.where(occurs, H, -inf).amax(-1, keepdim=True)
    span = h_max - h_min
    flat = ~(span > 0)  # also True where no feature occurs (span = -inf - inf)
    scale = torch.where(flat, torch.ones_like(H), 1 - (H - h_min) / torch.where(flat, torch.ones_like(span), span))
    homogeneity = scale.unsqueeze(-2) * lime
    return Importance(lime.to(dtype), average.to(dtype), homogeneity.to(dtype))
