"""Explanations inside training loops: a sync-free, compilable, differentiable explain step,
explanation penalties, and a monitor of what the model relies on.

- :class:`ExplainStep`: LIME of a fixed size (masks, model inputs, forward, kernel,
  ridge fit) with no host sync; ``torch.compile(step, fullgraph=True)`` and CUDA graphs
  work; ``differentiable=True`` keeps gradients to the model's parameters.
- :func:`explanation_penalty`, :func:`lime_penalty`, :func:`stem_features`: penalise the
  LIME weight of features the model must not use ("right for the right reasons").
- :class:`ExplanationMonitor`: every k steps, explain a fixed probe set, aggregate
  (:class:`torchlime.GlobalAggregator`), report the top features per class and their drift.
- ``ExplanationMonitorCallback``: the monitor as a Lightning callback (``lightning`` extra;
  resolved on first access, so it is not in ``__all__``: a star import works without Lightning).
"""

from __future__ import annotations

from typing import Any

from ._loss import explanation_penalty, lime_penalty, stem_features
from ._monitor import ExplanationMonitor, MonitorReport
from ._step import ExplainStep, StemsTransform, check_differentiable

__all__ = [
    "ExplainStep",
    "StemsTransform",
    "check_differentiable",
    "explanation_penalty",
    "lime_penalty",
    "stem_features",
    "ExplanationMonitor",
    "MonitorReport",
]
# ExplanationMonitorCallback is public too, but left out of __all__: it resolves on first
# access and needs Lightning, and a star import must work without it.


def __getattr__(name: str) -> Any:
    if name == "ExplanationMonitorCallback":  # Lightning is an optional extra
        from ._lightning import ExplanationMonitorCallback

        return ExplanationMonitorCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
