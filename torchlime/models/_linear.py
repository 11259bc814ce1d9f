"""Captum ``Model``s whose fits run in torch on the data's device."""

from __future__ import annotations

import time
from typing import Any

import torch
from .._captum import CaptumModel as Model
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..functional import surrogate as S

__all__ = ["Ridge", "Lasso", "LinearRegression", "LimeSurrogate", "TorchLinearModel", "check_differentiable", "fit_model"]

# Why a model outside torchlime cannot give coefficients that carry gradients.
_FOREIGN_REASONS = {
    "SkLearnLasso": "it fits in scikit-learn, outside autograd",
    "SkLearnRidge": "it fits in scikit-learn, outside autograd",
    "SkLearnLinearRegression": "it fits in scikit-learn, outside autograd",
    "SkLearnLinearModel": "it fits in scikit-learn, outside autograd",
}


class TorchLinearModel(Model):
    """Base of torchlime's interpretable models (Captum's ``Model`` interface).

    ``fit(DataLoader)`` and ``representation()`` behave as Captum's linear models do
    (so stock ``captum.attr.Lime`` can use them); :meth:`fit_tensors` is the batched
    path the torchlime engine calls with masks ``(B, n, F)``, outputs ``(B, n, K)``
    and weights ``(B, n)``.
    """

    #: whether :meth:`fit_tensors` can keep the autograd graph (``differentiable=True``)
    supports_differentiable = True
    #: why not, where ``supports_differentiable`` is False (named in the error)
    not_differentiable_reason = ""
    #: whether :meth:`fit_tensors` can run with no host synchronisation (``sync_free=True``)
    supports_sync_free = True

    def __init__(self) -> None:
        self._coef: Tensor | None = None
        self._intercept: Tensor | None = None
        self.last_fit: S.SurrogateFit | None = None

    def _fit(
        self, X: Tensor, y: Tensor, w: Tensor | None, differentiable: bool, sync_free: bool, checked: bool
    ) -> S.SurrogateFit:
        raise NotImplementedError

    def fit_tensors(
        self,
        X: Tensor,
        y: Tensor,
        sample_weight: Tensor | None = None,
        differentiable: bool = False,
        *,
        sync_free: bool = False,
        active: Tensor | None = None,
        checked: bool = False,
    ) -> S.SurrogateFit:
        """Fit every instance and target at once.

        Args:
            X: ``(..., n, F)`` interpretable samples.
            y: ``(..., n, K)`` or ``(..., n)`` model outputs.
            sample_weight: ``(..., n)`` kernel weights.
            differentiable: keep the autograd graph from ``y`` to the coefficients.
            sync_free: solve without any host synchronisation (for training loops,
                ``torch.compile`` and CUDA graphs).
            active: ``(..., F)`` bool, the features each instance has (instances with fewer
                features padded to F); the others get coefficient 0 and are never selected.
            checked: ``X``, ``y`` and ``sample_weight`` were checked already (the engine's
                ``validate``): the solve skips its own input check and host sync (see
                :func:`torchlime.functional.ridge`).

        Returns:
            :class:`torchlime.functional.SurrogateFit`.

        Raises:
            ValueError: ``differentiable`` or ``sync_free`` asked of a model that cannot
                provide it (naming the reason).
        """
        if differentiable:
            check_differentiable(self)
        if sync_free and not self.supports_sync_free:
            raise ValueError(
                f"sync_free=True needs an interpretable model that solves without host synchronisation "
                f"(torchlime.models.Ridge, LinearRegression or Lasso), got {type(self).__name__}"
            )
        if active is not None:
            # An inactive feature is held constant: centred away, it gets coefficient 0.
            X = torch.where(active.unsqueeze(-2).to(torch.bool), X, torch.ones_like(X))
        fit = self._fit_active(X, y, sample_weight, differentiable, sync_free, active, checked)
        self.last_fit = fit
        self._coef = fit.coef
        self._intercept = fit.intercept
        return fit

    def _fit_active(self, X, y, w, differentiable, sync_free, active, checked) -> S.SurrogateFit:
        return self._fit(X, y, w, differentiable, sync_free, checked)

    #: the ridge penalty of the final solve (what the standard errors' bread adds to X^T W X)
    _stderr_alpha = 0.0

    def _estimated(self, fit: S.SurrogateFit) -> Tensor | None:
        """``(..., K, F)`` bool, the features the fit estimated (None: all of them)."""
        return None

    def stderr(
        self, X: Tensor, y: Tensor, sample_weight: Tensor | None, fit: S.SurrogateFit, *, cluster: Tensor | None = None,
        active: Tensor | None = None,
    ) -> Tensor:
        """Standard errors of ``fit``'s coefficients over redraws of the masks.

        The sandwich estimate of :func:`torchlime.functional.uncertainty.sandwich_stderr`
        for this model's final solve: ridge with its alpha, least squares, a lasso on its
        support, lime's ridge on the selected features (conditional on the selection: the
        selection's own variability is not counted). Features the fit did not estimate get 0.

        Args:
            X: ``(..., n, F)``.
            y: ``(..., n, K)`` or ``(..., n)``.
            sample_weight: ``(..., n)`` or None.
            fit: what :meth:`fit_tensors` returned for these data.
            cluster: ``(n,)`` the independent draw of each row (see the sampler's ``clusters``).
            active: ``(..., F)`` bool, the features each instance has.

        Returns:
            Standard errors of the shape of ``fit.coef``.
        """
        from ..functional.uncertainty import sandwich_stderr

        single = fit.coef.dim() == y.dim() - 1 and y.dim() == X.dim() - 1
        y3 = y.unsqueeze(-1) if y.dim() == X.dim() - 1 else y
        coef = fit.coef.unsqueeze(-2) if single else fit.coef
        intercept = fit.intercept.unsqueeze(-1) if single else fit.intercept
        w = sample_weight if sample_weight is not None else torch.ones(X.shape[:-1], device=X.device)
        estimated = self._estimated(fit._replace(coef=coef))
        if active is not None:
            act = active.to(torch.bool).unsqueeze(-2).expand_as(coef)
            estimated = act if estimated is None else estimated & act
        se = sandwich_stderr(X, y3, w, coef, intercept, alpha=float(self._stderr_alpha),
                             fit_intercept=bool(getattr(self, "fit_intercept", True)), active=estimated, cluster=cluster)
        return se.squeeze(-2) if single else se

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

    @property
    def _stderr_alpha(self) -> float:
        return self.alpha

    def _fit(self, X, y, w, differentiable, sync_free, checked):
        if self.alpha == 0:  # the minimum-norm least squares: the linear regression's solve
            return S.linear_regression(X, y, w, fit_intercept=self.fit_intercept, sync_free=sync_free, checked=checked)
        return S.ridge(X, y, w, alpha=self.alpha, fit_intercept=self.fit_intercept, sync_free=sync_free,
                       checked=checked)


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

    def _fit(self, X, y, w, differentiable, sync_free, checked):
        return S.linear_regression(
            X, y, w, fit_intercept=self.fit_intercept, warn_singular=not (differentiable or sync_free),
            sync_free=sync_free, checked=checked,
        )


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
    not_differentiable_reason = (
        "its coefficients come from an iterative soft-thresholding solve whose active set is a discrete choice"
    )

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

    def _estimated(self, fit):
        return fit.coef != 0  # the support; the lasso's KKT system there is least squares

    def _fit(self, X, y, w, differentiable, sync_free, checked):
        return S.lasso(
            X, y, w, alpha=self.alpha, fit_intercept=self.fit_intercept, max_iter=self.max_iter, tol=self.tol,
            sync_free=sync_free, checked=checked,
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
    not_differentiable_reason = (
        "its feature selection (lime's forward selection, highest weights or lasso path) is a discrete "
        "choice made on the host"
    )
    supports_sync_free = False

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

    @property
    def _stderr_alpha(self) -> float:
        return self.alpha

    def _estimated(self, fit):
        return None if fit.selection is None else fit.selection.selected.reshape(fit.coef.shape).to(torch.bool)

    def _fit_active(self, X, y, w, differentiable, sync_free, active, checked):  # lime_fit checks nothing
        from ..functional.selection import lime_fit

        if w is None:
            w = torch.ones(X.shape[:-1], device=X.device)
        fit, self.last_selection = lime_fit(X, y, w, self.num_features, self.feature_selection, self.alpha)
        return fit._replace(selection=self.last_selection)


def check_differentiable(model: Any) -> None:
    """Raise unless ``model`` can give coefficients that carry gradients (Ridge, LinearRegression).

    The weighted ridge (and least-squares) solution is linear in the model's outputs, so
    autograd goes through it; a lasso or lime's feature selection picks features by a
    discrete, data-dependent choice, and a scikit-learn model fits outside autograd.

    Args:
        model: an interpretable model.

    Raises:
        ValueError: naming the model and why it cannot.

    Example:
        >>> check_differentiable(Ridge(alpha=1.0))
        >>> check_differentiable(Lasso())
        Traceback (most recent call last):
        ...
        ValueError: differentiable=True needs an interpretable model whose solution is differentiable (torchlime.models.Ridge or LinearRegression), got Lasso: its coefficients come from an iterative soft-thresholding solve whose active set is a discrete choice
    """
    if getattr(model, "supports_differentiable", False) and hasattr(model, "fit_tensors"):
        return
    name = type(model).__name__
    reason = getattr(model, "not_differentiable_reason", "") or _FOREIGN_REASONS.get(
        name, "it is not one of torchlime's closed-form models"
    )
    raise ValueError(
        f"differentiable=True needs an interpretable model whose solution is differentiable "
        f"(torchlime.models.Ridge or LinearRegression), got {name}: {reason}"
    )


def fit_model(
    model: Any,
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    *,
    differentiable: bool = False,
    sync_free: bool = False,
    active: Tensor | None = None,
    stderr: bool = False,
    cluster: Tensor | None = None,
    checked: bool = False,
) -> S.SurrogateFit:
    """Fit any interpretable model on ``(B, n, F)`` masks: the one dispatch of every explainer.

    torchlime's models solve every instance and target in one batched call
    (:meth:`TorchLinearModel.fit_tensors`); any other Captum ``Model`` (``SkLearnLasso``,
    say) is fitted once per instance and target through a ``DataLoader``, as Captum does.

    Args:
        model: a :class:`TorchLinearModel` or a Captum ``Model`` with ``fit``/``representation``.
        X: ``(B, n, F)``.
        y: ``(B, n, K)``.
        sample_weight: ``(B, n)``.
        differentiable: keep the autograd graph from ``y`` to the coefficients.
        sync_free: no host synchronisation (torchlime's models only).
        active: ``(B, F)`` bool, the features each instance has (torchlime's models only).
        stderr: also compute the coefficients' standard errors (``fit.stderr``; torchlime's
            models only, None for others).
        cluster: ``(n,)`` the independent draw of each row, for the standard errors.
        checked: ``X``, ``y`` and ``sample_weight`` passed
            :func:`torchlime.functional.engine.check_explained` (the engine's ``validate``):
            torchlime's models skip their own check of them and its host sync; other models
            check nothing anyway.

    Returns:
        :class:`torchlime.functional.SurrogateFit` with coefficients ``(B, K, F)``.

    Raises:
        ValueError: differentiable, sync-free or active-feature fitting asked of a model
            that cannot do it.

    Example:
        >>> X = torch.tensor([[[0., 1.], [1., 0.], [1., 1.], [0., 0.]]])
        >>> fit_model(Ridge(alpha=0.0), X, (X @ torch.tensor([2., -1.])).unsqueeze(-1), torch.ones(1, 4)).coef
        tensor([[[ 2., -1.]]])
    """
    if hasattr(model, "fit_tensors"):
        fit = model.fit_tensors(X, y, sample_weight, differentiable, sync_free=sync_free, active=active,
                                checked=checked)
        if stderr and hasattr(model, "stderr"):
            fit = fit._replace(stderr=model.stderr(X, y, sample_weight, fit, cluster=cluster, active=active).detach())
        return fit
    if differentiable:
        check_differentiable(model)
    if sync_free or active is not None:
        what = "sync_free=True" if sync_free else "songs with different feature counts in one batch"
        raise ValueError(f"{what} needs one of torchlime's models (Ridge, LinearRegression, Lasso), got {type(model).__name__}")
    B, n, K = y.shape
    coefs, intercepts = [], []
    for b in range(B):
        for k in range(K):
            data = TensorDataset(X[b].float(), y[b, :, k].float(), sample_weight[b].float())
            model.fit(DataLoader(data, batch_size=n))
            coefs.append(model.representation().reshape(-1).to(X.device, torch.float32))
            bias = model.bias() if callable(getattr(model, "bias", None)) else None
            intercepts.append(
                bias.reshape(-1)[0].to(X.device, torch.float32) if bias is not None else X.new_zeros(()).float()
            )
    coef = torch.stack(coefs).reshape(B, K, -1)
    intercept = torch.stack(intercepts).reshape(B, K)
    pred = X.float() @ coef.transpose(-1, -2) + intercept.unsqueeze(-2)
    score = S.weighted_r2(y.float(), pred, sample_weight.float())
    return S.SurrogateFit(coef, intercept, score, pred[:, 0])
