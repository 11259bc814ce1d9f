"""Marking callables as batched (DESIGN.md, "The batched contract")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__torchlime_batched__"


def batched(fn: F) -> F:
    """Mark ``fn`` as batched: the engine then calls it once for many samples.

    - a batched ``perturb_func(original, *, n_samples, generator, **kwargs)`` returns
      masks ``(n, F)`` (one instance) or ``(B, n, F)`` (B instances);
    - a batched ``from_interp_rep_transform(masks, original, **kwargs)`` gets masks
      ``(c, F)`` or ``(B, c, F)`` and returns the model inputs of all of them, rows
      ordered instance-major (row ``b * c + s``);
    - a batched ``similarity_func(original, perturbed, masks, **kwargs)`` returns one
      weight per row: ``(c,)`` or ``(B * c,)`` (or ``(B, c)``).

    Example:
        >>> @batched
        ... def weights(original, perturbed, masks, **kwargs):
        ...     return masks.sum(-1).reshape(-1)
    """
    setattr(fn, _ATTR, fn)
    return fn


def batched_impl(fn: Any) -> Callable[..., Any] | None:
    """The batched implementation of ``fn``, or None for a per-sample callable."""
    return getattr(fn, _ATTR, None)
