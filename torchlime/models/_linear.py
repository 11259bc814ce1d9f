"""Captum ``Model``s whose fits run in torch on the data's device."""

from __future__ import annotations

import time
from typing import Any

import torch
from .._captum import CaptumModel as Model
from torch import Tensor
from torch.utils.data import DataLoader

from ..functional import surrogate as S

__all__ = ["Ridge", "Lasso", "LinearRegression", "LimeSurrogate", "TorchLinearModel"]


class TorchLinearModel(Model):
    """Base of torchlime's interpretable models (Captum's ``Model`` interface).

    ``fit(DataLoader)`` and ``representation()`` behave as Captum's linear models do
    (so stock ``captum.attr.Lime`` can use them); :meth:`fit_tensors` is the batched
    path the torchlime engine calls with masks ``(B, n, F)``, outputs ``(B, n, K)``
    and weights ``(B, n)``.
    """

    #: whether :meth:`fit_tensors` can keep the autograd graph (``differentiable=True``)
    supports_differentiable = True

    def __init__(self) -> None:
        self._coef: Tensor | None = None
        self._intercept: Tensor | None = None
        self.last_fit: S.SurrogateFit | None = None

    def _fit(self, X: Tensor, y: Tensor, w: Tensor | None, differentiable: bool) -> S.SurrogateFit:
        raise NotImplementedError

    def fit_tensors(
        self, X: Tensor, y: Tensor, sample_weight: Tensor | None = None, differentiable: bool = False
    ) -> S.SurrogateFit:
        """Fit every instance and target at once.

        Args:
            X: ``(..., n, F)`` interpretable samples.
            y: ``(..., n, K)`` or ``(..., n)`` model outputs.
            sample_weight: ``(..., n)`` kernel weights.
            differentiable: keep the autograd graph from ``y`` to the coefficients.

        Returns:
            :class:`torchlime.functional.SurrogateFit`.

        Raises:
            ValueError: ``differentiable`` asked of a model that cannot provide it.
        """
        if differentiable and not self.supports_differentiable:
            raise ValueError(
                f"differentiable=True needs an interpretable model whose solution is "
                f"differentiable (torchlime.models.Ridge or LinearRegression), got "
                f"{type(self).__name__}"
            )
        fit = self._fit(X, y, sample_weight, differentiable)
        self.last_fit = fit
        self._coef = fit.coef
        self._intercept = fit.intercept
        return fit

    def fit(self, train_data: DataLoader, **kwargs: Any) -> dict[str, float]:
        """Fit on all batches of a DataLoader of ``(x, y)`` or ``(x, y, w)``, as Captum does.

        Args:
            train_data: yields ``x (n, F)``, ``y (n,)`` or ``(n, K)`` and optional ``w (n,)``.

        Returns:
            ``{"train_time": seconds}`` as Captum's models return.
        """
        xs, ys, ws = [], [], []
        for batch in train_data:
            if len(batch) not in (2, 3):
                raise ValueError(
                    f"expected batches of (inputs, outputs) or (inputs, outputs, weights), "
                    f"got {len(batch)} tensors"
                )
            xs.append(batch[0])
            ys.append(batch[1])
            if len(batch) == 3:
                ws.append(batch[2])
        X = torch.cat(xs)
        y = torch.cat(ys).reshape(X.shape[0], -1)
        w = torch.cat(ws).reshape(-1) if ws else None
        start = time.perf_counter()
        fit = self.fit_tensors(X, y.squeeze(-1) if y.shape[-1] == 1 else y, w)
        self._coef = fit.coef.detach().reshape(-1, X.shape[-1])
        self._intercept = fit.intercept.detach().reshape(-1)
        return {"train_time": time.perf_counter() - start}

    def representation(self) -> Tensor:
        """The coefficients, ``(1, F)`` after a single-target ``fit`` (Captum's layout)."""
        if self._coef is None:
            raise RuntimeError(f"{type(self).__name__} has not been fitted yet")
        return self._coef

    def bias(self) -> Tensor | None:
        """The intercept(s), or None before fitting."""
        return self._intercept

    def __call__(self, x: Tensor) -> Tensor:
        """Predict ``(n, K)`` for ``x (n, F)`` with the last fit of :meth:`fit`."""
        coef = self.representation()
        return x.to(coef.dtype) @ coef.transpose(-1, -2) + self._intercept


class Ridge(TorchLinearModel):
    """Weighted ridge, scikit-learn ``Ridge`` semantics (unpenalised intercept).

    Args:
        alpha: L2 penalty.
        fit_intercept: fit an intercept.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> X = torch.tensor([[0., 1.], [1., 0.], [1., 1.], [0., 0.]])
        >>> model = Ridge(alpha=0.0)
        >>> _ = model.fit(DataLoader(TensorDataset(X, X @ torch.tensor([2., -1.])), batch_size=4))
        >>> model.representation()
        tensor([[ 2., -1.]])
    """

    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"expected alpha >= 0, got {alpha}")
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _fit(self, X, y, w, differentiable):
        return S.ridge(X, y, w, alpha=self.alpha, fit_intercept=self.fit_intercept)


class LinearRegression(TorchLinearModel):
    """Weighted least squares, scikit-learn ``LinearRegression`` semantics (minimum norm).

    Args:
        fit_intercept: fit an intercept.

    Example:
        >>> X = torch.tensor([[0., 1.], [1., 0.], [1., 1.], [0., 0.]])
        >>> fit = LinearRegression().fit_tensors(X, X @ torch.tensor([2., -1.]) + 1)
        >>> fit.coef, fit.intercept
        (tensor([ 2., -1.]), tensor(1.))
    """

    def __init__(self, fit_intercept: bool = True) -> None:
        super().__init__()
        self.fit_intercept = fit_intercept

    def _fit(self, X, y, w, differentiable):
        return S.linear_regression(X, y, w, fit_intercept=self.fit_intercept, warn_singular=not differentiable)


class Lasso(TorchLinearModel):
    """Weighted lasso, scikit-learn ``Lasso`` objective (Captum's ``SkLearnLasso``).

    ``1 / (2 sum w) * sum w_i (y_i - b - x_i . beta)^2 + alpha ||beta||_1``, solved in
    torch for all instances and targets at once.

    Args:
        alpha: L1 penalty.
        fit_intercept: fit an intercept.
        max_iter: proximal-gradient iterations.
        tol: early-stop tolerance on the coefficients.

    Example:
        >>> X = torch.tensor([[0., 1.], [1., 0.], [1., 1.], [0., 0.]])
        >>> Lasso(alpha=0.01).fit_tensors(X, X @ torch.tensor([2., 0.])).coef
        tensor([1.9600, 0.0000])
    """

    supports_differentiable = False

    def __init__(
        self, alpha: float = 1.0, fit_intercept: bool = True, max_iter: int = 1000, tol: float = 1e-12
    ) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"expected alpha >= 0, got {alpha}")
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.sync_free = False

    def _fit(self, X, y, w, differentiable):
        return S.lasso(
            X,
            y,
            w,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            sync_free=self.sync_free,
        )


class LimeSurrogate(TorchLinearModel):
    """lime's explanation model: feature selection, then Ridge(alpha) on the selected features.

    The surrogate of ``lime.lime_base.LimeBase.explain_instance_with_data`` with
    ``model_regressor=None`` (MusicLIME's), batched over instances and targets. The
    selection of the last fit is kept in :attr:`last_selection`.

    Args:
        num_features: at most this many features per explanation.
        feature_selection: "none", "highest_weights", "forward_selection", "lasso_path", "auto".
        alpha: the Ridge penalty (lime: 1).

    Example:
        >>> X = torch.bernoulli(torch.full((200, 6), 0.5), generator=torch.Generator().manual_seed(0))
        >>> fit = LimeSurrogate(num_features=2).fit_tensors(X, 3 * X[:, 1] - X[:, 4])
        >>> (fit.coef != 0).nonzero().flatten().tolist()
        [1, 4]
    """

    supports_differentiable = False

    def __init__(self, num_features: int = 10, feature_selection: str = "auto", alpha: float = 1.0) -> None:
        from ..functional.selection import check_selection

        super().__init__()
        check_selection(num_features, feature_selection)
        if alpha < 0:
            raise ValueError(f"expected alpha >= 0, got {alpha}")
        self.num_features = num_features
        self.feature_selection = feature_selection
        self.alpha = alpha
        self.last_selection = None

    def _fit(self, X, y, w, differentiable):
        from ..functional.selection import lime_fit

        if w is None:
            w = torch.ones(X.shape[:-1], device=X.device)
        fit, self.last_selection = lime_fit(X, y, w, self.num_features, self.feature_selection, self.alpha)
        return fit
