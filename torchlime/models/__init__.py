"""Interpretable (surrogate) models: Captum ``Model``s solved in torch."""

from ._linear import Lasso, LinearRegression, Ridge, TorchLinearModel

__all__ = ["Ridge", "Lasso", "LinearRegression", "TorchLinearModel"]
