"""Distances between perturbations and the original, and the kernels that weight them.

Shape glossary: n perturbation samples, D values per sample (mask entries or input values).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._linalg import row_block

__all__ = [
    "cosine_distance",
    "euclidean_distance",
    "hamming_distance",
    "pairwise_distance",
    "lime_kernel",
    "mask_kernel_weights",
    "exp_kernel",
    "shapley_kernel",
    "kernel_shap_weights",
    "group_statistics",
    "masked_input_distance",
]


def cosine_distance(x: Tensor, reference: Tensor) -> Tensor:
    """``1 - cos(x, reference)`` along the last dim (a zero vector has distance 1).

    Args:
        x: ``(..., n, D)``.
        reference: ``(..., D)`` or anything that broadcasts to ``x``.

    Returns:
        ``(..., n)`` distances, in the dtype of ``x`` (float32 for integer input).
    """
    x, reference = _float(x, reference)
    dot = (x * reference).sum(-1)
    norms = torch.linalg.vector_norm(x, dim=-1) * torch.linalg.vector_norm(reference, dim=-1)
    eps = torch.finfo(x.dtype).tiny
    return 1 - dot / norms.clamp_min(eps)


def euclidean_distance(x: Tensor, reference: Tensor) -> Tensor:
    """L2 distance along the last dim. Shapes as :func:`cosine_distance`."""
    x, reference = _float(x, reference)
    return torch.linalg.vector_norm(x - reference, dim=-1)


def hamming_distance(x: Tensor, reference: Tensor) -> Tensor:
    """Fraction of differing entries along the last dim (scipy's ``hamming``).

    Shapes as :func:`cosine_distance`.
    """
    x, reference = _float(x, reference)
    return (x != reference).to(x.dtype).mean(-1)


_DISTANCES = {"cosine": cosine_distance, "euclidean": euclidean_distance, "hamming": hamming_distance}


def pairwise_distance(x: Tensor, reference: Tensor, metric: str = "cosine") -> Tensor:
    """Distance of every row of ``x`` to ``reference`` by name.

    Args:
        x: ``(..., n, D)``.
        reference: ``(..., D)``.
        metric: "cosine", "euclidean" or "hamming".

    Returns:
        ``(..., n)``.

    Raises:
        ValueError: unknown metric.
    """
    if metric not in _DISTANCES:
        raise ValueError(f"expected metric in {sorted(_DISTANCES)}, got {metric!r}")
    if reference.dim() == x.dim() - 1:
        reference = reference.unsqueeze(-2)
    return _DISTANCES[metric](x, reference)


def lime_kernel(distances: Tensor, kernel_width: float) -> Tensor:
    """The ``lime`` package's kernel ``sqrt(exp(-d^2 / w^2))``.

    Args:
        distances: ``(..., n)``.
        kernel_width: w > 0.

    Returns:
        ``(..., n)`` weights in (0, 1].
    """
    _check_width(kernel_width)
    return torch.sqrt(torch.exp(-(distances**2) / kernel_width**2))


def mask_kernel_weights(
    masks: Tensor,
    kernel_width: float = 0.25,
    *,
    reference: str = "ones",
    distance_scale: float = 1.0,
    active: Tensor | None = None,
) -> Tensor:
    """lime's kernel on the cosine distance between each mask and a reference mask.

    ``sqrt(exp(-(s d)^2 / w^2))`` with ``d = 1 - cos(z, r)`` and scale ``s``: the weights of
    lime's text and image explainers and of MusicLIME. With the all-ones reference a mask
    with k of F features on has ``d = 1 - sqrt(k / F)`` (the all-zeros mask has d = 1).

    - ``reference="ones"``: the unperturbed instance (torchlime's ``ExplainStep``; lime's
      image explainer, width 0.25);
    - ``reference="first"``: row 0 of each instance's masks, as lime measures distances
      to the first row of its data (MusicLIME: width 25, scale 1; lime's text
      explainer: scale 100).

    Args:
        masks: ``(..., n, F)``.
        kernel_width: w > 0.
        reference: "ones" or "first".
        distance_scale: s > 0, the factor on the distance.
        active: ``(..., F)`` bool, the features each instance has (instances padded to F
            features); the others are left out of the distance.

    Returns:
        ``(..., n)`` weights in (0, 1], float (the masks' dtype, float32 for integer/bool masks).

    Raises:
        ValueError: a width or scale that is not positive, an unknown reference.

    Example:
        >>> mask_kernel_weights(torch.tensor([[1., 1., 1., 1.], [1., 0., 0., 0.]]), 0.5)
        tensor([1.0000, 0.6065])
    """
    if reference not in ("ones", "first"):
        raise ValueError(f"expected reference 'ones' or 'first', got {reference!r}")
    if not distance_scale > 0:
        raise ValueError(f"expected distance_scale > 0, got {distance_scale}")
    dtype = masks.dtype if masks.dtype.is_floating_point else torch.float32
    z = masks.to(dtype)
    ref = torch.ones_like(z[..., :1, :]) if reference == "ones" else z[..., :1, :]
    if active is not None:
        keep = active.to(dtype).unsqueeze(-2)
        z, ref = z * keep, ref * keep
    distances = cosine_distance(z, ref)
    if distance_scale != 1.0:
        distances = distances * distance_scale
    return lime_kernel(distances, kernel_width)


def exp_kernel(distances: Tensor, kernel_width: float = 1.0) -> Tensor:
    """Captum's kernel ``exp(-d^2 / (2 w^2))``.

    Args:
        distances: ``(..., n)``.
        kernel_width: w > 0.

    Returns:
        ``(..., n)`` weights in (0, 1].
    """
    _check_width(kernel_width)
    return torch.exp(-(distances**2) / (2 * kernel_width**2))


def shapley_kernel(masks: Tensor, inf_weight: float = 1e6) -> Tensor:
    """The Shapley kernel ``(F - 1) / (C(F, k) k (F - k))`` of each mask with k ones.

    The empty and the full coalition have infinite weight in theory; they get
    ``inf_weight`` here, as in Captum's ``KernelShap``.

    Args:
        masks: ``(..., n, F)`` binary.
        inf_weight: weight of the rows with k == 0 or k == F.

    Returns:
        ``(..., n)`` weights (float64 when masks are float64, else float32).
    """
    num_features = masks.shape[-1]
    dtype = masks.dtype if masks.dtype.is_floating_point else torch.float32
    k = masks.sum(-1, dtype=torch.float64)
    log_binom = (
        math.lgamma(num_features + 1) - torch.lgamma(k + 1) - torch.lgamma(num_features - k + 1)
    )
    inner = (k > 0) & (k < num_features)
    safe_k = torch.where(inner, k, torch.ones_like(k))
    weight = (num_features - 1) / (torch.exp(log_binom) * safe_k * (num_features - safe_k))
    return torch.where(inner, weight, torch.full_like(weight, inf_weight)).to(dtype)


def kernel_shap_weights(masks: Tensor, inf_weight: float = 1e6) -> Tensor:
    """Captum ``KernelShap``'s sample weights: 1, or ``inf_weight`` for empty/full rows.

    Use with :func:`torchlime.functional.kernel_shap_masks`, whose size distribution
    already carries the Shapley kernel.

    Args:
        masks: ``(..., n, F)`` binary.
        inf_weight: weight of the rows with no or all features.

    Returns:
        ``(..., n)`` float32 weights.
    """
    k = masks.sum(-1)
    edge = (k == 0) | (k == masks.shape[-1])
    one = torch.ones(k.shape, device=masks.device, dtype=torch.float32)
    return torch.where(edge, one * inf_weight, one)


def _float(x: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    dtype = torch.promote_types(x.dtype, reference.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    return x.to(dtype), reference.to(dtype)


def _check_width(kernel_width: float) -> None:
    if not kernel_width > 0:
        raise ValueError(f"expected kernel_width > 0, got {kernel_width}")


def group_statistics(x: Tensor, baseline: Tensor, feature_ids: Tensor, num_features: int) -> Tensor:
    """Per-feature sums that give input-space distances straight from masks.

    For inputs whose perturbation keeps ``x`` where a feature is on and puts
    ``baseline`` where it is off (Captum's ``Lime`` transform), the cosine and
    euclidean distances between ``x`` and each perturbed input depend on the mask only
    through these sums, so :func:`masked_input_distance` costs ``O(n F)`` instead of
    ``O(n D)``.

    Args:
        x: ``(B, D)`` flattened original inputs.
        baseline: ``(B, D)`` flattened baselines.
        feature_ids: ``(B, D)`` int64 feature of every value.
        num_features: F.

    Returns:
        ``(B, 3, F)`` float64: sums of ``x*x``, ``x*b`` and ``b*b`` per feature.
    """
    x = x.to(torch.float64)
    b = baseline.to(torch.float64)
    terms = torch.stack([x * x, x * b, b * b], dim=1)  # (B, 3, D)
    out = torch.zeros(x.shape[0], 3, num_features, device=x.device, dtype=torch.float64)
    return out.scatter_add_(2, feature_ids.unsqueeze(1).expand_as(terms), terms)


def masked_input_distance(masks: Tensor, stats: Tensor, metric: str = "cosine") -> Tensor:
    """Distance between each perturbed input and the original, from group statistics.

    Args:
        masks: ``(B, n, F)`` binary.
        stats: ``(B, 3, F)`` from :func:`group_statistics`.
        metric: "cosine" or "euclidean".

    Returns:
        ``(B, n)`` float64 distances.

    Raises:
        ValueError: unknown metric.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"expected metric in ['cosine', 'euclidean'], got {metric!r}")
    # A block of rows at a time (float64 masks and temporaries of the block's size only).
    V = stats.transpose(1, 2)  # (B, F, 3): sum_f z_f v_f for v = xx, xb, bb in one product
    xx, xb, bb = stats.unbind(1)
    n = masks.shape[-2]
    chunk = row_block(masks)
    out = torch.empty(masks.shape[:-1], dtype=torch.float64, device=masks.device)
    if metric == "cosine":
        xb_all, bb_all = xb.sum(-1, keepdim=True), bb.sum(-1, keepdim=True)
        norm_x = xx.sum(-1, keepdim=True).sqrt()
        eps = torch.finfo(torch.float64).tiny
    else:
        diff = xx - 2 * xb + bb
        diff_all = diff.sum(-1, keepdim=True)
    for i in range(0, n, chunk):
        on_xx, on_xb, on_bb = (masks[:, i : i + chunk].to(torch.float64) @ V).unbind(-1)
        if metric == "cosine":
            dot = on_xx + (xb_all - on_xb)
            pp = on_xx + (bb_all - on_bb)
            out[:, i : i + chunk] = 1 - dot / (norm_x * pp.clamp_min(0).sqrt()).clamp_min(eps)
        else:
            out[:, i : i + chunk] = (diff_all - (on_xx - 2 * on_xb + on_bb)).clamp_min(0).sqrt()
    return out
