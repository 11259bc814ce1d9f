"""The tensor math of a fixed-size explain step: the mask-space kernel.

Shape glossary: B instances, n perturbation samples, F interpretable features.

Shape-static (no branch on tensor values, no host sync), so it can run inside
``torch.compile(fullgraph=True)`` and CUDA graphs, and differentiable. Stem composition
lives in :mod:`torchlime.functional.segments`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kernels import cosine_distance, lime_kernel

__all__ = ["mask_kernel_weights"]


def mask_kernel_weights(masks: Tensor, kernel_width: float = 0.25) -> Tensor:
    """lime's kernel on the cosine distance between each mask and the all-ones mask.

    ``sqrt(exp(-d^2 / w^2))`` with ``d = 1 - cos(z, 1) = 1 - sqrt(k / F)`` for a mask with k
    of F features on (the all-zeros mask has d = 1). ``w = 0.25`` is the default of lime's
    image explainer, which weights its segment masks the same way.

    Args:
        masks: ``(..., n, F)``.
        kernel_width: w > 0.

    Returns:
        ``(..., n)`` weights in (0, 1], float (the masks' dtype, float32 for integer/bool masks).

    Example:
        >>> mask_kernel_weights(torch.tensor([[1., 1., 1., 1.], [1., 0., 0., 0.]]), 0.5)
        tensor([1.0000, 0.6065])
    """
    dtype = masks.dtype if masks.dtype.is_floating_point else torch.float32
    z = masks.to(dtype)
    distances = cosine_distance(z, torch.ones_like(z[..., :1, :]))
    return lime_kernel(distances, kernel_width)
