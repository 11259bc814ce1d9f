"""Global aggregation of local explanations (van der Linden et al. 2019, arXiv 1907.03039).

``GlobalAggregator`` (a ``torchmetrics.Metric``, the ``metrics`` extra) collects
explanations; its ``compute()`` returns a :class:`GlobalImportance` (LIME, average and
homogeneity-weighted importance per class, with names, rankings, JSON and a figure).
"""

from ._result import KINDS, GlobalImportance

__all__ = ["GlobalAggregator", "GlobalImportance", "KINDS"]


def __getattr__(name: str):
    if name == "GlobalAggregator":  # torchmetrics is an optional extra: import on first use
        from ._aggregator import GlobalAggregator

        return GlobalAggregator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
