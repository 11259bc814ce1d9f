"""Explanation penalties: "right for the right reasons" training on LIME coefficients.

Shape glossary: B instances, K targets, F interpretable features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..functional.segments import feature_stem_segment, segment_layout
from ._step import ExplainStep

__all__ = ["explanation_penalty", "lime_penalty", "stem_features"]

_REDUCTIONS = ("mean", "sum", "none")


def _feature_weights(features: Any, num_features: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(F,)`` 0/1 weights of the penalised features, in ``dtype`` on ``device``."""
    if isinstance(features, Tensor):
        if features.dtype == torch.bool:
            if features.shape != (num_features,):
                raise ValueError(
                    f"expected a feature mask of shape ({num_features},), got shape {tuple(features.shape)}"
                )
            return features.to(device=device, dtype=dtype)
        if features.dtype in (torch.int64, torch.int32) and features.dim() == 1:
            index = features.to(device=device, dtype=torch.long)
            return torch.zeros(num_features, device=device, dtype=dtype).index_fill(0, index, 1.0)
        raise ValueError(
            f"expected features as a bool mask ({num_features},) or a 1-D integer index tensor, got "
            f"dtype {features.dtype} and shape {tuple(features.shape)}"
        )
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise TypeError(f"expected features as a tensor or a sequence of ints or bools, got {type(features).__name__}")
    values = list(features)
    if values and all(isinstance(v, bool) for v in values):
        return _feature_weights(torch.tensor(values, dtype=torch.bool), num_features, device, dtype)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not -num_features <= v < num_features]
    if bad:
        raise ValueError(f"expected feature indices in [{-num_features}, {num_features}), got {bad[:5]}")
    index = torch.tensor([v % num_features for v in values], dtype=torch.long)
    return _feature_weights(index, num_features, device, dtype)


def explanation_penalty(
    coef: Tensor,
    features: Tensor | Sequence[int] | Sequence[bool],
    *,
    p: int = 1,
    reduction: str = "mean",
) -> Tensor:
    """How much explanations rely on features they must not: ``sum_{f in features} |coef_f|^p``.

    The "right for the right reasons" penalty (Ross et al. 2017) on LIME coefficients:
    with coefficients from :class:`ExplainStep` with ``differentiable=True``, its gradient
    pushes the model's parameters away from using the given features.

    Args:
        coef: ``(B, F)`` or ``(B, K, F)`` (any leading dims) coefficients.
        features: the penalised features: a bool mask ``(F,)``, an integer index tensor, or
            a list of indices or bools. Pass a tensor on ``coef``'s device to keep the step
            free of host-device copies.
        p: 1 (sum of absolute values) or 2 (sum of squares).
        reduction: "mean" or "sum" over the leading dims, or "none" (one value per explanation).

    Returns:
        A scalar, or the leading dims of ``coef`` with ``reduction="none"``.

    Raises:
        ValueError: unknown ``p`` or ``reduction``, a mask of the wrong length, indices out of range.

    Example:
        >>> coef = torch.tensor([[0.5, -2.0, 1.0], [0.0, 1.0, -1.0]])
        >>> explanation_penalty(coef, [1, 2])
        tensor(2.5000)
    """
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"expected p in (1, 2), got {p!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"expected reduction in {list(_REDUCTIONS)}, got {reduction!r}")
    if not isinstance(coef, Tensor) or coef.dim() < 1:
        raise ValueError(f"expected coef of shape (..., F), got {getattr(coef, 'shape', type(coef).__name__)}")
    w = _feature_weights(features, coef.shape[-1], coef.device, coef.dtype)
    size = coef.abs() if p == 1 else coef.square()
    per = size @ w
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


def lime_penalty(
    step: ExplainStep,
    original: Any,
    features: Tensor | Sequence[int] | Sequence[bool],
    *,
    target: int | Tensor | None = None,
    masks: Tensor | None = None,
    generator: torch.Generator | None = None,
    p: int = 1,
    reduction: str = "mean",
) -> Tensor:
    """Differentiable LIME coefficients for a batch, and their :func:`explanation_penalty`.

    Args:
        step: an :class:`ExplainStep` built with ``differentiable=True``.
        original: the batch, as ``step`` takes it.
        features: the penalised features (see :func:`explanation_penalty`).
        target: which output to explain per instance (typically its label, a ``(B,)`` long
            tensor); see :meth:`ExplainStep.fit`.
        masks: ``(B, n, F)`` masks (required under ``torch.compile``), else drawn with
            ``generator``.
        generator: a ``torch.Generator`` on the batch's device.
        p: 1 or 2.
        reduction: "mean", "sum" or "none".

    Returns:
        The penalty, with gradients to the model's parameters.

    Raises:
        ValueError: a step built without ``differentiable=True``.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> step = ExplainStep(net, lambda z, x: (z * x.unsqueeze(1)).flatten(0, 1),
        ...                    num_features=4, n_samples=32, differentiable=True)
        >>> x = torch.randn(8, 4)
        >>> loss = lime_penalty(step, x, [0], target=1, generator=torch.Generator().manual_seed(0))
        >>> loss.backward()  # gradients reach net.weight
    """
    if not isinstance(step, ExplainStep):
        raise TypeError(f"expected step to be an ExplainStep, got {type(step).__name__}")
    if not step.differentiable:
        raise ValueError(
            "expected an ExplainStep built with differentiable=True (its coefficients carry "
            "gradients), got one with differentiable=False"
        )
    fit = step(original, masks, target=target, generator=generator)
    return explanation_penalty(fit.coef, features, p=p, reduction=reduction)


def stem_features(
    feature_names: Sequence[str] | Any, stems: str | Sequence[str], *, device: torch.device | str | None = None
) -> Tensor:
    """Bool mask ``(F,)`` of the features of the given stems (every ``<stem>_T<g>`` column).

    Args:
        feature_names: the feature space: a :class:`StemsTransform` or
            :class:`torchlime.music.StemFactorization` (anything with ``stem_names`` and
            ``num_segments``), or F feature names that start with the stems x segments
            names those give (``vocals_T3``, see
            :func:`torchlime.functional.segments.segment_layout`); names after them (lyric
            lines, say) never match.
        stems: one stem name or several.
        device: where the mask lives (put it on the model's device once, outside the loop).

    Returns:
        ``(F,)`` bool.

    Raises:
        ValueError: a stem that no feature belongs to.

    Example:
        >>> stem_features(["vocals_T0", "other_T0", "vocals_T1", "other_T1"], "other")
        tensor([False,  True, False,  True])
    """
    wanted = [stems] if isinstance(stems, str) else list(stems)
    if hasattr(feature_names, "stem_names") and hasattr(feature_names, "num_segments"):
        stem_names, G = [str(s) for s in feature_names.stem_names], int(feature_names.num_segments)
        F = len(stem_names) * G
    else:
        names = [str(f) for f in feature_names]
        (stem_names, G), F = segment_layout(names), len(names)
    S = len(stem_names)
    present = sorted(set(stem_names))
    missing = [s for s in wanted if s not in present]
    if missing:
        raise ValueError(f"expected stems among those of the feature names {present}, got {missing}")
    owner = [stem_names[feature_stem_segment(j, S)[0]] if j < S * G else None for j in range(F)]
    return torch.tensor([o in wanted for o in owner], dtype=torch.bool, device=device)
