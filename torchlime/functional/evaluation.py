"""Evaluation metrics of explanations as pure tensor math: faithfulness curves and ranks.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets, L the number of deletion/insertion steps (L <= F).

Which features are "top": features are ranked by their weight for the explained target,
highest first (positive evidence first, then features with weight 0, then negative
evidence), ties broken by the lower feature index; ``absolute=True`` ranks by ``|weight|``
instead (same tie rule). Masks follow the interpretable space's convention: 1 keeps a
feature (switched on), 0 removes it (switched off).

Nothing here synchronises with the host except :func:`check_weights`, which exists to be
called once on user input.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_weights",
    "feature_ranking",
    "deletion_masks",
    "insertion_masks",
    "aopc",
    "area_under_curve",
    "rankdata",
    "spearman",
    "topk_jaccard",
]


def check_weights(weights: Tensor, name: str = "weights") -> Tensor:
    """Raise unless ``weights`` is a real tensor ``(..., F)`` with F >= 1 and no NaN or inf.

    This looks at the values, so it synchronises with the host once; call it on user
    input, not inside a loop.

    Args:
        weights: ``(..., F)`` explanation weights.
        name: how the argument is called in error messages.

    Returns:
        ``weights`` unchanged.

    Raises:
        TypeError: not a tensor, or a complex one.
        ValueError: no feature dim, F == 0, or a NaN or inf value (its index is given).

    Example:
        >>> check_weights(torch.tensor([0.5, -1.0])).shape
        torch.Size([2])
    """
    if not isinstance(weights, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(weights).__name__}")
    if weights.is_complex():
        raise TypeError(f"expected real {name}, got dtype {weights.dtype}")
    if weights.dim() < 1 or weights.shape[-1] < 1:
        raise ValueError(f"expected {name} of shape (..., F) with F >= 1, got shape {tuple(weights.shape)}")
    if weights.dtype.is_floating_point:
        bad = ~torch.isfinite(weights)
        if bool(bad.any()):
            where = tuple(bad.nonzero()[0].tolist())
            value = weights[where].item()
            raise ValueError(f"expected finite {name}, got {value} at index {where}")
    return weights


def _check_features(weights: Tensor, name: str = "weights") -> int:
    if not isinstance(weights, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() < 1 or weights.shape[-1] < 1:
        raise ValueError(f"expected {name} of shape (..., F) with F >= 1, got shape {tuple(weights.shape)}")
    return weights.shape[-1]


def _check_k(k: int, num_features: int, name: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_features:
        raise ValueError(f"expected 1 <= {name} <= F = {num_features}, got {k!r}")


def feature_ranking(weights: Tensor, absolute: bool = False) -> Tensor:
    """Feature indices from the top feature down.

    Args:
        weights: ``(..., F)``.
        absolute: rank by ``|weight|`` instead of the signed weight.

    Returns:
        ``(..., F)`` int64: entry r is the feature at rank r (0 is the top); highest
        weight first, ties by the lower feature index.

    Example:
        >>> feature_ranking(torch.tensor([0.1, 0.7, -0.9, 0.7]))
        tensor([1, 3, 0, 2])
    """
    _check_features(weights)
    key = weights.abs() if absolute else weights
    return torch.sort(key, dim=-1, descending=True, stable=True).indices


def _positions(weights: Tensor, absolute: bool) -> Tensor:
    """``(..., F)`` rank of each feature (0 for the top one)."""
    order = feature_ranking(weights, absolute)
    ar = torch.arange(weights.shape[-1], device=weights.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)


def _step_masks(weights: Tensor, max_k: int | None, absolute: bool, dtype: torch.dtype | None, keep_top: bool) -> Tensor:
    F = _check_features(weights)
    L = F if max_k is None else max_k
    _check_k(L, F, "max_k")
    pos = _positions(weights, absolute)  # (..., F)
    k = torch.arange(L + 1, device=weights.device).unsqueeze(-1)  # (L+1, 1)
    removed = pos.unsqueeze(-2) < k  # (..., L+1, F): feature among the top k
    on = removed if keep_top else ~removed
    if dtype is None:
        dtype = weights.dtype if weights.dtype.is_floating_point else torch.float32
    return on.to(dtype)


def deletion_masks(
    weights: Tensor, max_k: int | None = None, *, absolute: bool = False, dtype: torch.dtype | None = None
) -> Tensor:
    """Masks that switch off the top-k features, k = 0..L (MoRF order, Samek et al. 2017).

    Args:
        weights: ``(..., F)`` explanation weights.
        max_k: L, the last step (1 <= L <= F; default F).
        absolute: rank by ``|weight|``.
        dtype: dtype of the masks (default: the weights' floating dtype, else float32).

    Returns:
        ``(..., L+1, F)``: row k is 0 on the top-k features and 1 elsewhere (row 0 all
        ones, row F all zeros).

    Raises:
        ValueError: weights without a feature dim, or ``max_k`` outside 1..F.

    Example:
        >>> deletion_masks(torch.tensor([0.2, 0.9, -0.5]))
        tensor([[1., 1., 1.],
                [1., 0., 1.],
                [0., 0., 1.],
                [0., 0., 0.]])
    """
    return _step_masks(weights, max_k, absolute, dtype, keep_top=False)


def insertion_masks(
    weights: Tensor, max_k: int | None = None, *, absolute: bool = False, dtype: torch.dtype | None = None
) -> Tensor:
    """Masks that switch on only the top-k features, k = 0..L (the complement of deletion).

    Args:
        weights: ``(..., F)`` explanation weights.
        max_k: L, the last step (1 <= L <= F; default F).
        absolute: rank by ``|weight|``.
        dtype: dtype of the masks (default: the weights' floating dtype, else float32).

    Returns:
        ``(..., L+1, F)``: row k is 1 on the top-k features and 0 elsewhere (row 0 all
        zeros, row F all ones).

    Raises:
        ValueError: weights without a feature dim, or ``max_k`` outside 1..F.

    Example:
        >>> insertion_masks(torch.tensor([0.2, 0.9, -0.5]), max_k=2)
        tensor([[0., 0., 0.],
                [0., 1., 0.],
                [1., 1., 0.]])
    """
    return _step_masks(weights, max_k, absolute, dtype, keep_top=True)


def _check_curve(curve: Tensor) -> None:
    if not isinstance(curve, Tensor):
        raise TypeError(f"expected curve to be a torch.Tensor, got {type(curve).__name__}")
    if curve.dim() < 1 or curve.shape[-1] < 2:
        raise ValueError(f"expected a curve of shape (..., L+1) with L >= 1, got shape {tuple(curve.shape)}")


def aopc(curve: Tensor) -> Tensor:
    """Area over the perturbation curve (Samek et al. 2017), for one deletion curve.

    ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x with the top-k features removed))``
    where ``curve[..., 0] = f(x)``. Higher means the explanation's top features matter
    more to the model (a faithful explanation).

    Args:
        curve: ``(..., L+1)`` model outputs along a deletion curve (step 0 first).

    Returns:
        ``(...)``.

    Raises:
        ValueError: a curve with fewer than 2 steps.

    Example:
        >>> aopc(torch.tensor([1.0, 0.4, 0.1, 0.1]))
        tensor(0.6000)
    """
    _check_curve(curve)
    return (curve[..., :1] - curve).mean(-1)


def area_under_curve(curve: Tensor) -> Tensor:
    """Trapezoidal area under a deletion or insertion curve on the unit interval.

    Step k sits at ``x = k / L``, so the area is in the units of the model output and a
    flat curve at value c has area c (with ``L = F`` the x axis is the fraction of features
    removed or inserted). Deletion: lower is more faithful; insertion: higher is.

    Args:
        curve: ``(..., L+1)``.

    Returns:
        ``(...)``.

    Raises:
        ValueError: a curve with fewer than 2 steps.

    Example:
        >>> area_under_curve(torch.tensor([0.0, 1.0, 1.0]))
        tensor(0.7500)
    """
    _check_curve(curve)
    L = curve.shape[-1] - 1
    return (curve.sum(-1) - (curve[..., 0] + curve[..., -1]) / 2) / L


def rankdata(x: Tensor) -> Tensor:
    """Ranks 1..F along the last dim, ties given their average rank (scipy's ``rankdata``).

    Sort-based, O(F log F), no host synchronisation. NaN sorts last (each NaN its own rank).

    Args:
        x: ``(..., F)`` real values.

    Returns:
        ``(..., F)`` float64 ranks.

    Example:
        >>> rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0]))
        tensor([3.5000, 1.0000, 3.5000, 2.0000], dtype=torch.float64)
    """
    F = _check_features(x, "x")
    shape = x.shape
    flat = x.reshape(-1, F)
    values, order = torch.sort(flat, dim=-1, stable=True)
    pos = torch.arange(F, device=x.device).expand_as(order)
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(-1).values
    last = torch.where(ends, pos, torch.full_like(pos, F)).flip(-1).cummin(-1).values.flip(-1)
    sorted_ranks = (first + last).to(torch.float64) / 2 + 1
    ranks = torch.empty_like(sorted_ranks).scatter_(-1, order, sorted_ranks)
    return ranks.reshape(shape)


def _out_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.promote_types(tensors[0].dtype, tensors[-1].dtype)
    return dtype if dtype.is_floating_point else torch.float32


def _check_pair(a: Tensor, b: Tensor) -> int:
    F = _check_features(a, "a")
    _check_features(b, "b")
    if b.shape[-1] != F:
        raise ValueError(
            f"expected a and b with the same number of features (last dim), got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError as err:
        raise ValueError(
            f"expected a and b of broadcastable shapes (..., F), got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        ) from err
    return F


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation along the last dim (scipy's ``spearmanr`` per row).

    The Pearson correlation of the average ranks (:func:`rankdata`), in float64. As
    scipy: NaN where either row is constant (the correlation is undefined) or holds a NaN.

    Args:
        a: ``(..., F)`` with F >= 2.
        b: ``(..., F)``, broadcastable to ``a``.

    Returns:
        ``(...)`` in [-1, 1], in the inputs' floating dtype (float32 for integers).

    Raises:
        ValueError: different F, shapes that do not broadcast, or F < 2.

    Example:
        >>> spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 30.0, 20.0, 40.0]))
        tensor(0.8000)
    """
    F = _check_pair(a, b)
    if F < 2:
        raise ValueError(f"expected at least 2 features to correlate, got F = {F}")
    ra = rankdata(a)
    rb = rankdata(b)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    # dot / sqrt(ss_a * ss_b): equal rankings give exactly 1.0.
    rho = (ra * rb).sum(-1) / torch.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    rho = rho.clamp(-1.0, 1.0)
    nan = torch.isnan(a).any(-1) | torch.isnan(b).any(-1) if a.dtype.is_floating_point or b.dtype.is_floating_point else None
    if nan is not None:
        rho = torch.where(nan, torch.full_like(rho, float("nan")), rho)
    return rho.to(_out_dtype(a, b))


def topk_jaccard(a: Tensor, b: Tensor, k: int, *, absolute: bool = False) -> Tensor:
    """Jaccard index ``|A & B| / |A | B|`` of the top-k feature sets of two weight vectors.

    The top k follow :func:`feature_ranking` (highest weight first, ties by the lower
    index), so each set has exactly k features.

    Args:
        a: ``(..., F)``.
        b: ``(..., F)``, broadcastable to ``a``.
        k: set size, 1 <= k <= F.
        absolute: rank by ``|weight|``.

    Returns:
        ``(...)`` in [0, 1], in the inputs' floating dtype (float32 for integers).

    Raises:
        ValueError: different F, shapes that do not broadcast, or k outside 1..F.

    Example:
        >>> topk_jaccard(torch.tensor([0.9, 0.8, 0.1, 0.0]), torch.tensor([0.9, 0.0, 0.8, 0.1]), k=2)
        tensor(0.3333)
    """
    F = _check_pair(a, b)
    _check_k(k, F, "k")
    in_a = _positions(a, absolute) < k
    in_b = _positions(b, absolute) < k
    inter = (in_a & in_b).sum(-1)
    return (inter.to(torch.float64) / (2 * k - inter)).to(_out_dtype(a, b))
