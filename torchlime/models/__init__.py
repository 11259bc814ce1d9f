"""Interpretable (surrogate) models: Captum ``Model``s solved in torch."""

from ._linear import Lasso, LimeSurrogate, LinearRegression, Ridge, TorchLinearModel, check_differentiable, fit_model

__all__ = ["Ridge", "Lasso", "LinearRegression", "LimeSurrogate", "TorchLinearModel", "check_differentiable", "fit_model"]
