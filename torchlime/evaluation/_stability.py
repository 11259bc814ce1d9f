"""Stability across seeds: Spearman rank correlation and top-k Jaccard over R reruns.

Shape glossary: R reruns, P = R (R - 1) / 2 pairs of reruns, K targets, F features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..functional.evaluation import check_weights, spearman, topk_jaccard

__all__ = ["Stability", "stability", "stability_from_weights"]


class Stability(NamedTuple):
    """How much an explanation changes between reruns with different seeds.

    Shapes are for weights ``(R, K, F)``; any ``(R, ..., F)`` gives ``(P, ...)`` and ``(...)``.

    Attributes:
        spearman: ``(P, K)`` Spearman rank correlation of the weights of each pair of runs
            (NaN where a run's weights are constant: no ranking to compare).
        jaccard: ``(P, K)`` Jaccard index of the top-k feature sets of each pair.
        mean_spearman: ``(K,)`` mean over the pairs.
        mean_jaccard: ``(K,)`` mean over the pairs.
        pairs: ``(P, 2)`` int64, the runs (indices into ``seeds``) of each pair, i < j.
        weights: ``(R, K, F)`` the weights of every run.
        seeds: the R seeds, or None when the weights were given directly.
        k: the top-k set size of ``jaccard``.
    """

    spearman: Tensor
    jaccard: Tensor
    mean_spearman: Tensor
    mean_jaccard: Tensor
    pairs: Tensor
    weights: Tensor
    seeds: list[int] | None
    k: int


def stability_from_weights(weights: Tensor, k: int = 5, *, absolute: bool = False) -> Stability:
    """Pairwise Spearman correlation and top-k Jaccard of R reruns' weights.

    Every pair of runs ``i < j`` is compared in one batched call; the top k follow the
    weight ranking of :func:`torchlime.functional.feature_ranking` (highest weight first,
    ties by the lower index; ``absolute=True``: by ``|weight|``).

    Args:
        weights: ``(R, ..., F)`` with R >= 2, e.g. ``(R, K, F)``.
        k: top-k set size for the Jaccard index (1 <= k <= F).
        absolute: rank by ``|weight|`` for the Jaccard index (Spearman always correlates
            the signed weights).

    Returns:
        :class:`Stability` with ``seeds=None``.

    Raises:
        ValueError: NaN/inf weights, fewer than 2 runs, F < 2, k outside 1..F.

    Example:
        >>> w = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.6, 0.0], [0.1, 0.5, 0.9]])
        >>> stability_from_weights(w, k=1).spearman
        tensor([ 1., -1., -1.])
    """
    check_weights(weights)
    if weights.dim() < 2 or weights.shape[0] < 2:
        raise ValueError(
            f"expected weights of shape (R, ..., F) from at least 2 runs (R >= 2), got shape {tuple(weights.shape)}"
        )
    R = weights.shape[0]
    pairs = torch.triu_indices(R, R, 1, device=weights.device).T  # (P, 2)
    a, b = weights[pairs[:, 0]], weights[pairs[:, 1]]
    rho = spearman(a, b)
    jac = topk_jaccard(a, b, k, absolute=absolute)
    return Stability(rho, jac, rho.mean(0), jac.mean(0), pairs, weights, None, int(k))


def _weights_of(result: Any) -> Tensor:
    for attr in ("weights", "coef"):  # an Explanation, a SurrogateFit
        if not isinstance(result, Tensor) and isinstance(getattr(result, attr, None), Tensor):
            return getattr(result, attr)
    if isinstance(result, Tensor):
        return result
    raise TypeError(
        f"expected explain to return weights (a tensor (..., F), an Explanation or a SurrogateFit), "
        f"got {type(result).__name__}"
    )


def _check_seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        values = list(range(int(seeds)))
    else:
        values = list(seeds)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in values):
            raise ValueError(f"expected integer seeds, got {values!r}")
        values = [int(s) for s in values]
        if len(set(values)) != len(values):
            raise ValueError(f"expected distinct seeds, got {values}")
    if len(values) < 2:
        raise ValueError(f"expected at least 2 seeds (R >= 2 reruns to compare), got {len(values)}")
    return values


def stability(
    explain: Callable[[torch.Generator], Any],
    seeds: int | Sequence[int] = 5,
    *,
    k: int = 5,
    absolute: bool = False,
    device: torch.device | str = "cpu",
) -> Stability:
    """Rerun an explanation with R seeds and compare every pair of runs.

    Run r calls ``explain(torch.Generator(device).manual_seed(seeds[r]))``; the results
    are stacked to ``(R, ..., F)`` and compared with :func:`stability_from_weights`. A
    deterministic explainer (one whose result does not depend on the generator) scores
    exactly 1.0 on both measures.

    Args:
        explain: takes a ``torch.Generator`` and returns weights ``(..., F)`` (or
            ``(K, F)``), an :class:`~torchlime.music.Explanation` (its ``weights``) or a
            :class:`~torchlime.functional.SurrogateFit` (its ``coef``).
        seeds: R distinct seeds, or an int R for seeds 0..R-1 (R >= 2).
        k: top-k set size for the Jaccard index.
        absolute: rank by ``|weight|`` for the Jaccard index.
        device: where the generators live (the device ``explain`` draws on).

    Returns:
        :class:`Stability` with ``seeds`` set.

    Raises:
        ValueError: fewer than 2 or repeated seeds, runs whose weights differ in shape or
            hold NaN/inf (the seed is named), k outside 1..F.
        TypeError: ``explain`` returned something without weights.

    Example:
        >>> from torchlime import Lime
        >>> from torchlime.models import LinearRegression
        >>> w_true = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
        >>> lime = Lime(lambda x: x @ w_true.T, interpretable_model=LinearRegression())
        >>> x = torch.ones(1, 4)
        >>> run = lambda g: lime.attribute(x, target=0, n_samples=50, generator=g)[0]
        >>> stability(run, seeds=3, k=2).mean_spearman
        tensor(1.)
    """
    values = _check_seeds(seeds)
    runs = []
    for seed in values:
        generator = torch.Generator(device).manual_seed(seed)
        w = _weights_of(explain(generator))
        if runs and w.shape != runs[0].shape:
            raise ValueError(
                f"expected every run to return weights of shape {tuple(runs[0].shape)} (as seed {values[0]}), "
                f"got shape {tuple(w.shape)} for seed {seed}"
            )
        try:
            check_weights(w)
        except ValueError as err:
            raise ValueError(f"run with seed {seed}: {err}") from err
        runs.append(w)
    device_ = runs[0].device
    result = stability_from_weights(torch.stack([w.to(device_) for w in runs]), k, absolute=absolute)
    return result._replace(seeds=values)
