"""Surrogate fidelity: how well the linear surrogate reproduces the model (weighted R^2).

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional.surrogate import weighted_r2

__all__ = ["fidelity"]


def fidelity(
    outputs: Tensor, masks: Tensor, coef: Tensor, intercept: Tensor, sample_weight: Tensor | None = None
) -> Tensor:
    """Weighted R^2 of the surrogate ``masks @ coef^T + intercept`` against the model's outputs.

    On the masks the surrogate was fitted on this is the explanation's own score; on fresh
    masks (drawn as the explainer draws them, weighted by its kernel) it is the held-out
    fidelity. scikit-learn's ``r2_score`` semantics (see
    :func:`torchlime.functional.weighted_r2`): 1 is a perfect fit, and it can go below 0.

    Args:
        outputs: ``(..., n, K)`` model outputs for the explained targets, or ``(..., n)``
            (one target; then with as many dims as ``masks`` less one). Leading dims
            broadcast.
        masks: ``(..., n, F)``.
        coef: ``(..., K, F)``, or ``(..., F)`` with ``(..., n)`` outputs.
        intercept: ``(..., K)``, or ``(...)`` with ``(..., n)`` outputs.
        sample_weight: ``(..., n)`` kernel weights, or None for ones.

    Returns:
        ``(..., K)``, or ``(...)`` for ``(..., n)`` outputs.

    Raises:
        ValueError: shapes that do not fit together.

    Example:
        >>> masks = torch.tensor([[1., 1.], [1., 0.], [0., 1.], [0., 0.]])
        >>> fidelity(masks @ torch.tensor([2., -1.]) + 0.5, masks, torch.tensor([2., -1.]), torch.tensor(0.5))
        tensor(1.)
    """
    for name, t in (("outputs", outputs), ("masks", masks), ("coef", coef), ("intercept", intercept)):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected {name} to be a torch.Tensor, got {type(t).__name__}")
    if masks.dim() < 2:
        raise ValueError(f"expected masks of shape (..., n, F), got shape {tuple(masks.shape)}")
    single = outputs.dim() == masks.dim() - 1
    y = outputs.unsqueeze(-1) if single else outputs
    c = coef.unsqueeze(-2) if single else coef
    b = intercept.unsqueeze(-1) if single else intercept
    n, F = masks.shape[-2:]
    if y.dim() < 2 or y.shape[-2] != n:
        raise ValueError(
            f"expected outputs of shape (..., {n}, K) or (..., {n}) to match masks of shape {tuple(masks.shape)}, "
            f"got shape {tuple(outputs.shape)}"
        )
    K = y.shape[-1]
    if c.dim() < 2 or c.shape[-2:] != (K, F):
        raise ValueError(f"expected coef of shape (..., {K}, {F}) (K targets, F features), got shape {tuple(coef.shape)}")
    if b.dim() < 1 or b.shape[-1] != K:
        raise ValueError(f"expected intercept of shape (..., {K}), got shape {tuple(intercept.shape)}")
    if sample_weight is not None and sample_weight.shape[-1:] != (n,):
        raise ValueError(f"expected sample_weight of shape (..., {n}), got shape {tuple(sample_weight.shape)}")
    dtype = torch.promote_types(y.dtype, c.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32
    pred = masks.to(dtype) @ c.to(dtype).transpose(-1, -2) + b.to(dtype).unsqueeze(-2)
    y, pred = torch.broadcast_tensors(y.to(dtype), pred)
    if sample_weight is not None:
        sample_weight = sample_weight.to(dtype).expand(y.shape[:-1])
    score = weighted_r2(y, pred, sample_weight)
    return score.squeeze(-1) if single else score
