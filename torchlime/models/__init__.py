"""Interpretable (surrogate) models: Captum ``Model``s solved in torch."""

from ._linear import Lasso, LimeSurrogate, LinearRegression, Ridge, TorchLinearModel

__all__ = ["Ridge", "Lasso", "LinearRegression", "LimeSurrogate", "TorchLinearModel"]
