"""Global importance from aggregated local explanations (van der Linden et al. 2019).

Shape glossary: C classes, F features, any leading dims ``...`` (for example one set of
sums per process or per training step).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Importance", "global_importance", "feature_entropy"]


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
    H, occurs = feature_entropy(lime)
    inf = torch.full_like(H, float("inf"))
    h_min = torch.where(occurs, H, inf).amin(-1, keepdim=True)
    h_max = torch.where(occurs, H, -inf).amax(-1, keepdim=True)
    span = h_max - h_min
    flat = ~(span > 0)  # also True where no feature occurs (span = -inf - inf)
    scale = torch.where(flat, torch.ones_like(H), 1 - (H - h_min) / torch.where(flat, torch.ones_like(span), span))
    homogeneity = scale.unsqueeze(-2) * lime
    return Importance(lime.to(dtype), average.to(dtype), homogeneity.to(dtype))
