"""Weighted linear surrogate fits, batched over instances and targets.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.

Every fit takes ``X (..., n, F)``, ``y (..., n, K)`` (or ``(..., n)`` for one target) and
sample weights ``w (..., n)``, solves in float64 and returns a :class:`SurrogateFit`
in the dtype of ``y``. Nothing here synchronises with the host unless asked to
(``lasso(..., sync_free=False)`` stops early once converged).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "SurrogateFit",
    "Moments",
    "weighted_moments",
    "ridge",
    "linear_regression",
    "lasso",
    "weighted_r2",
    "finish_fit",
]


class SurrogateFit(NamedTuple):
    """A fitted linear surrogate.

    Attributes:
        coef: ``(..., K, F)`` coefficients (``(..., F)`` for a single target).
        intercept: ``(..., K)`` (``(...)`` for a single target).
        score: weighted R^2 on the samples, ``(..., K)``.
        local_pred: the surrogate's prediction at row 0, ``(..., K)``.
        stderr: standard errors of ``coef`` (same shape), or None where the fit gives none.
        selection: the :class:`~torchlime.functional.FeatureSelection` a feature selection
            made (lime's modes: which features were kept, in lime's order), or None when
            every feature was fitted.
        n_samples: ``(...)`` the samples each instance used (an automatic budget stops
            instances at different counts), or None.
    """

    coef: Tensor
    intercept: Tensor
    score: Tensor
    local_pred: Tensor
    stderr: Tensor | None = None
    selection: Any = None
    n_samples: Tensor | None = None


class Moments(NamedTuple):
    """Weighted, centred second moments of a regression problem (all float64).

    Attributes:
        gram: ``(..., F, F)`` = Xc^T W Xc.
        cross: ``(..., K, F)`` = (W yc)^T Xc.
        yy: ``(..., K)`` = sum w yc^2.
        x_mean: ``(..., F)`` weighted mean of X (zeros without intercept).
        y_mean: ``(..., K)`` weighted mean of y (zeros without intercept).
        weight_sum: ``(...)``.
    """

    gram: Tensor
    cross: Tensor
    yy: Tensor
    x_mean: Tensor
    y_mean: Tensor
    weight_sum: Tensor


def _prepare(X: Tensor, y: Tensor, sample_weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
    if X.dim() < 2:
        raise ValueError(f"expected X of shape (..., n, F), got shape {tuple(X.shape)}")
    single = y.dim() == X.dim() - 1
    if single:
        y = y.unsqueeze(-1)
    if y.dim() != X.dim() or y.shape[-2] != X.shape[-2]:
        raise ValueError(
            f"expected y of shape (..., {X.shape[-2]}, K) or (..., {X.shape[-2]}) to match X of "
            f"shape {tuple(X.shape)}, got shape {tuple(y.shape if not single else y.shape[:-1])}"
        )
    if sample_weight is None:
        sample_weight = torch.ones(X.shape[:-1], device=X.device, dtype=torch.float64)
    if sample_weight.shape[-1:] != X.shape[-2:-1]:
        raise ValueError(
            f"expected sample_weight of shape (..., {X.shape[-2]}), got shape "
            f"{tuple(sample_weight.shape)}"
        )
    lead = torch.broadcast_shapes(X.shape[:-2], y.shape[:-2], sample_weight.shape[:-1])
    X = X.to(torch.float64).expand(*lead, *X.shape[-2:])
    y = y.to(torch.float64).expand(*lead, *y.shape[-2:])
    w = sample_weight.to(torch.float64).expand(*lead, sample_weight.shape[-1])
    return X, y, w, single


def weighted_moments(
    X: Tensor, y: Tensor, sample_weight: Tensor | None = None, fit_intercept: bool = True
) -> Moments:
    """Centre X and y by their weighted means and form the normal-equation terms.

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)``.
        sample_weight: ``(..., n)`` non-negative, or None for ones.
        fit_intercept: centre (True) or not (False).

    Returns:
        :class:`Moments`, float64.
    """
    X, y, w, _ = _prepare(X, y, sample_weight)
    return _moments(X, y, w, fit_intercept)


def _moments(X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool) -> Moments:
    weight_sum = w.sum(-1)
    if fit_intercept:
        denom = weight_sum.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(-1)
        x_mean = (w.unsqueeze(-2) @ X).squeeze(-2) / denom
        y_mean = (w.unsqueeze(-2) @ y).squeeze(-2) / denom
        Xc = X - x_mean.unsqueeze(-2)
        yc = y - y_mean.unsqueeze(-2)
    else:
        x_mean = X.new_zeros(X.shape[:-2] + X.shape[-1:])
        y_mean = y.new_zeros(y.shape[:-2] + y.shape[-1:])
        Xc, yc = X, y
    wX = Xc * w.unsqueeze(-1)
    gram = Xc.transpose(-1, -2) @ wX
    cross = yc.transpose(-1, -2) @ wX
    yy = (w.unsqueeze(-1) * yc * yc).sum(-2)
    return Moments(gram, cross, yy, x_mean, y_mean, weight_sum)


def weighted_r2(y: Tensor, pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """scikit-learn's ``r2_score(y, pred, sample_weight=w)`` per column.

    A constant target scores 1.0 when predicted exactly and 0.0 otherwise, as
    scikit-learn does.

    Args:
        y: ``(..., n, K)``.
        pred: ``(..., n, K)``.
        sample_weight: ``(..., n)`` or None.

    Returns:
        ``(..., K)``.
    """
    if sample_weight is None:
        sample_weight = torch.ones(y.shape[:-1], device=y.device, dtype=y.dtype)
    w = sample_weight.unsqueeze(-1).to(y.dtype)
    mean = (w * y).sum(-2, keepdim=True) / w.sum(-2, keepdim=True)
    num = (w * (y - pred) ** 2).sum(-2)
    den = (w * (y - mean) ** 2).sum(-2)
    # A constant column has den == 0 exactly (summation order could leave ~1e-32).
    den = torch.where((y == y[..., :1, :]).all(-2), torch.zeros_like(den), den)
    score = 1 - num / torch.where(den == 0, torch.ones_like(den), den)
    constant = torch.where(num == 0, torch.ones_like(num), torch.zeros_like(num))
    return torch.where(den == 0, constant, score)


def _masked_system(gram: Tensor, active: Tensor | None, fill: float) -> Tensor:
    """``gram`` restricted to ``active`` features per target: ``(..., K, F, F)``.

    Rows and columns of inactive features are zeroed and their diagonal set to ``fill``
    (1 keeps a Cholesky factorisation valid; 0 suits a pseudo-inverse).
    """
    if active is None:
        return gram.unsqueeze(-3)
    a = active.to(gram.dtype)
    outer = a.unsqueeze(-1) * a.unsqueeze(-2)
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return gram.unsqueeze(-3) * outer + eye * (1 - a).unsqueeze(-1) * fill


def _cholesky_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``L L^T x = rhs`` for ``rhs (..., F)`` by two triangular solves.

    Not ``torch.cholesky_solve``: its batched CUDA path (MAGMA's ``dpotrs_batched``)
    allocates device memory itself, which a CUDA graph capture forbids.
    """
    half = torch.linalg.solve_triangular(chol, rhs.unsqueeze(-1), upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True).squeeze(-1)


def _min_norm_sync_free(system: Tensor, rhs: Tensor, iterations: int = 6) -> Tensor:
    """Minimum-norm solution of a PSD ``system beta = rhs`` by iterated Tikhonov, sync-free.

    ``beta_{k+1} = beta_k + (A + lam I)^-1 (rhs - A beta_k)`` from ``beta_0 = 0`` stays in the
    range of A and converges to ``pinv(A) rhs`` (error factor ``lam / (sigma + lam)`` per
    step for each eigenvalue sigma); ``lam`` is 1e-7 of the mean diagonal. Cholesky with
    ``cholesky_ex`` never asks the host for an error code, unlike ``pinv``/``eigh``.
    """
    F = system.shape[-1]
    eye = torch.eye(F, device=system.device, dtype=system.dtype)
    scale = system.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(system.dtype).tiny)
    lam = (1e-7 * scale)[..., None, None]
    chol, _ = torch.linalg.cholesky_ex(system + lam * eye)
    beta = torch.zeros_like(rhs)
    for _ in range(iterations):
        residual = rhs - (system @ beta.unsqueeze(-1)).squeeze(-1)
        beta = beta + _cholesky_solve(chol, residual)
    return beta


def _solve(gram: Tensor, cross: Tensor, alpha: float, active: Tensor | None, sync_free: bool = False) -> Tensor:
    """Solve ``(G + alpha I) beta = c`` for each target (restricted to ``active``)."""
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    if alpha > 0:
        system = _masked_system(gram + alpha * eye, active, fill=1.0)
        rhs = cross if active is None else cross * active.to(cross.dtype)
        chol, _ = torch.linalg.cholesky_ex(system)
        return _cholesky_solve(chol, rhs)
    # alpha == 0: the minimum-norm least-squares solution (scikit-learn's lstsq fallback).
    system = _masked_system(gram, active, fill=0.0)
    rhs = cross if active is None else cross * active.to(cross.dtype)
    if sync_free:
        return _min_norm_sync_free(system, rhs)
    return (torch.linalg.pinv(system, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1)


def finish_fit(
    X: Tensor, y: Tensor, w: Tensor, moments: Moments, coef: Tensor, single: bool, dtype: torch.dtype
) -> SurrogateFit:
    """Intercept, weighted R^2 and local prediction for solved coefficients.

    Args:
        X: ``(..., n, F)`` float64.
        y: ``(..., n, K)`` float64.
        w: ``(..., n)`` float64.
        moments: the problem's :class:`Moments`.
        coef: ``(..., K, F)`` float64.
        single: drop the K dim from the outputs.
        dtype: dtype of the outputs.

    Returns:
        :class:`SurrogateFit`.
    """
    intercept = moments.y_mean - (coef * moments.x_mean.unsqueeze(-2)).sum(-1)
    pred = X @ coef.transpose(-1, -2) + intercept.unsqueeze(-2)
    score = weighted_r2(y, pred, w)
    local_pred = pred[..., 0, :]
    parts = (coef, intercept, score, local_pred)
    if single:
        parts = tuple(t.squeeze(-2) if t is coef else t.squeeze(-1) for t in parts)
    return SurrogateFit(*(t.to(dtype) for t in parts))


def _out_dtype(y: Tensor) -> torch.dtype:
    return y.dtype if y.dtype.is_floating_point else torch.float32


def ridge(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    alpha: float = 1.0,
    fit_intercept: bool = True,
    active: Tensor | None = None,
) -> SurrogateFit:
    """Weighted ridge regression with scikit-learn ``Ridge`` semantics.

    Minimises ``sum_i w_i (y_i - b - x_i . beta)^2 + alpha ||beta||^2`` with an
    unpenalised intercept b, by Cholesky on the float64 normal equations; ``alpha == 0``
    gives the minimum-norm least-squares solution (as scikit-learn's fallback).

    Args:
        X: ``(..., n, F)`` design (masks).
        y: ``(..., n, K)`` targets or ``(..., n)``.
        sample_weight: ``(..., n)`` or None.
        alpha: L2 penalty (>= 0).
        fit_intercept: fit an intercept.
        active: ``(..., K, F)`` bool, fit only these features (others get 0).

    Returns:
        :class:`SurrogateFit`.

    Example:
        >>> X = torch.tensor([[0., 1.], [1., 0.], [1., 1.], [0., 0.]])
        >>> ridge(X, X @ torch.tensor([2., -1.]) + 3, alpha=0.0).coef
        tensor([ 2., -1.])
    """
    if alpha < 0:
        raise ValueError(f"expected alpha >= 0, got {alpha}")
    dtype = _out_dtype(y)
    X, y, w, single = _prepare(X, y, sample_weight)
    m = _moments(X, y, w, fit_intercept)
    coef = _solve(m.gram, m.cross, float(alpha), active)
    return finish_fit(X, y, w, m, coef, single, dtype)


def linear_regression(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    fit_intercept: bool = True,
    warn_singular: bool = False,
    sync_free: bool = False,
) -> SurrogateFit:
    """Weighted least squares (scikit-learn ``LinearRegression``): minimum-norm solution.

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)`` or ``(..., n)``.
        sample_weight: ``(..., n)`` or None.
        fit_intercept: fit an intercept.
        warn_singular: warn when the weighted design is rank-deficient (synchronises
            with the host to look).
        sync_free: solve without any host synchronisation (iterated Tikhonov with
            Cholesky; equal to the default pseudo-inverse to about 1e-9 relative on
            well-posed problems). The default, ``torch.linalg.pinv``, asks the host for
            its error code on CUDA.

    Returns:
        :class:`SurrogateFit`.
    """
    dtype = _out_dtype(y)
    X, y, w, single = _prepare(X, y, sample_weight)
    m = _moments(X, y, w, fit_intercept)
    if warn_singular:
        rank = torch.linalg.matrix_rank(m.gram, hermitian=True)
        if bool((rank < m.gram.shape[-1]).any()):
            warnings.warn(
                f"the weighted design is rank-deficient (rank {rank.min().item()} < "
                f"{m.gram.shape[-1]} features); using the minimum-norm least-squares solution",
                RuntimeWarning,
                stacklevel=2,
            )
    coef = _solve(m.gram, m.cross, 0.0, None, sync_free=sync_free)
    return finish_fit(X, y, w, m, coef, single, dtype)


def _soft(x: Tensor, t: Tensor | float) -> Tensor:
    return torch.sign(x) * torch.clamp(x.abs() - t, min=0)


def _lasso_objective(gram: Tensor, cross: Tensor, beta: Tensor, alpha: float) -> Tensor:
    quad = 0.5 * (beta.unsqueeze(-2) @ gram.unsqueeze(-3) @ beta.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    return quad - (cross * beta).sum(-1) + alpha * beta.abs().sum(-1)


def lasso(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    alpha: float = 1.0,
    fit_intercept: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-12,
    sync_free: bool = False,
) -> SurrogateFit:
    """Weighted lasso with scikit-learn ``Lasso`` semantics.

    Minimises ``1 / (2 sum_i w_i) * sum_i w_i (y_i - b - x_i . beta)^2 + alpha ||beta||_1``
    (scikit-learn rescales ``sample_weight`` to sum to n, which is the same objective).
    Solved for all instances and targets at once on the float64 normal equations, first by
    a primal active-set method: from the least-squares signs, the KKT system on the support
    is solved exactly, flipped features are dropped and violating ones added, until the
    KKT conditions certify the solution (a few batched solves, usually 2 or 3, whatever
    the number of iterations an iterative method would need; a bounded number of kernel
    launches on an accelerator). Problems it does not certify within 8 rounds go to
    accelerated proximal gradient (FISTA with restarts), polished the same way and checked
    for the same certificate. ``sync_free=True`` runs FISTA alone (the active set's
    certificate reads values on the host).

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)`` or ``(..., n)``.
        sample_weight: ``(..., n)`` or None.
        alpha: L1 penalty (>= 0).
        fit_intercept: fit an unpenalised intercept.
        max_iter: iterations of the proximal gradient method.
        tol: stop early once no coefficient moved more than this in an iteration
            (checked every 5 iterations on a CPU, every 50 on an accelerator, where a
            check is a host sync; ignored when ``sync_free``).
        sync_free: never synchronise with the host: always runs ``max_iter``, with the
            step from Gershgorin's bound on the largest eigenvalue (``eigvalsh`` syncs on
            CUDA for its error code), so it may need more iterations.

    Returns:
        :class:`SurrogateFit`.
    """
    if alpha < 0:
        raise ValueError(f"expected alpha >= 0, got {alpha}")
    if max_iter < 1:
        raise ValueError(f"expected max_iter >= 1, got {max_iter}")
    dtype = _out_dtype(y)
    X, y, w, single = _prepare(X, y, sample_weight)
    m = _moments(X, y, w, fit_intercept)
    scale = m.weight_sum.clamp_min(torch.finfo(torch.float64).tiny)
    gram = m.gram / scale[..., None, None]
    cross = m.cross / scale[..., None, None]
    coef = _lasso_solve(gram, cross, float(alpha), max_iter, tol, sync_free)
    return finish_fit(X, y, w, m, coef, single, dtype)


def _lasso_solve(
    gram: Tensor, cross: Tensor, alpha: float, max_iter: int, tol: float, sync_free: bool
) -> Tensor:
    """FISTA + exact polish for ``min 1/2 b'Gb - c'b + alpha |b|_1``: G ``(..., F, F)``, c ``(..., K, F)``."""
    # Checks read a value on the host: free on a CPU, a sync on an accelerator. A check
    # polishes the iterate (the exact KKT solve on its support and signs) and stops as soon
    # as that is certified optimal for every problem (KKT conditions hold, so it is THE
    # lasso solution): the support is found long before the iterates converge, so this
    # takes a fraction of the iterations (and kernel launches) of waiting for convergence.
    check_every = 5 if gram.device.type == "cpu" else 25
    beta = torch.zeros_like(cross)
    certified = None
    if not sync_free:
        exact, certified = _lasso_active_set(gram, cross, alpha)
        if bool(certified.all()):
            return exact
    if sync_free:
        # eigvalsh asks the host for its error code on CUDA; Gershgorin's bound (the largest
        # absolute row sum) is an upper bound of the largest eigenvalue with no sync, so the
        # steps are safe, only smaller.
        lipschitz = gram.abs().sum(-1).amax(-1, keepdim=True)
    else:
        lipschitz = torch.linalg.eigvalsh(gram)[..., -1:]
    step = (1.0 / lipschitz.clamp_min(torch.finfo(gram.dtype).tiny)).unsqueeze(-2)  # (..., 1, 1)
    z = beta
    t = 1.0
    for it in range(max_iter):
        grad = z @ gram.transpose(-1, -2) - cross
        new = _soft(z - step * grad, alpha * step)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = (new - beta) * ((t - 1) / t_next)
        # Adaptive restart (O'Donoghue & Candes): drop momentum where it points uphill.
        uphill = ((z - new) * (new - beta)).sum(-1, keepdim=True) > 0
        z = torch.where(uphill, new, new + momentum)
        delta = (new - beta).abs()
        beta = new
        t = t_next
        if not sync_free and (it + 1) % check_every == 0:
            polished, optimal = _lasso_polish(gram, cross, beta, alpha, certify=True)
            if bool((optimal | certified).all()) or bool(delta.max() <= tol):
                return torch.where(certified, exact, polished)
    polished = _lasso_polish(gram, cross, beta, alpha)
    return polished if certified is None else torch.where(certified, exact, polished)


def _lasso_active_set(gram: Tensor, cross: Tensor, alpha: float, rounds: int = 8) -> tuple[Tensor, Tensor]:
    """Exact lasso by a primal active-set method, certified by the KKT conditions.

    Starts from the least-squares support and signs, solves the KKT system on the support
    exactly, drops features whose sign flipped and adds the inactive ones that violate
    ``|c_j - G_j b| <= alpha``, a few rounds at most. Each round is one batched solve
    (a fixed number of kernels, whatever the problem), and a problem stops changing once
    its solution is certified; with Lime's small alpha it usually is after one or two.

    Returns:
        ``(beta, optimal)``: the last exact solutions ``(..., K, F)`` and ``(..., K, 1)`` bool
        where they are certified optimal (elsewhere FISTA takes over).
    """
    ls = _solve(gram, cross, 0.0, None)
    signs = torch.sign(torch.where(torch.isfinite(ls), ls, torch.zeros_like(ls)))
    active = signs != 0
    beta = torch.zeros_like(cross)
    optimal = torch.zeros(*cross.shape[:-1], 1, dtype=torch.bool, device=cross.device)
    tiny = torch.finfo(gram.dtype).tiny
    for _ in range(rounds):
        system = _masked_system(gram, active, fill=1.0)
        rhs = (cross - alpha * signs) * active.to(cross.dtype)
        chol, info = torch.linalg.cholesky_ex(system)
        exact = torch.where(active, _cholesky_solve(chol, rhs), torch.zeros_like(rhs))
        slack = cross - exact @ gram.transpose(-1, -2)  # c - G b
        flipped = active & (torch.sign(exact) != signs)
        violated = ~active & (slack.abs() > alpha * (1 + 1e-9) + tiny)
        ok = ~(flipped | violated).any(-1, keepdim=True) & (info == 0).unsqueeze(-1) & torch.isfinite(exact).all(
            -1, keepdim=True
        )
        beta = torch.where(optimal, beta, exact)
        optimal = optimal | ok
        if bool(optimal.all()):
            break
        # Next support: drop the flipped, add the violators with the sign that reduces the objective.
        active = torch.where(optimal, active, (active & ~flipped) | violated)
        signs = torch.where(optimal, signs, torch.where(violated, torch.sign(slack), torch.where(flipped, 0.0, signs)))
    return beta, optimal


def _lasso_polish(gram: Tensor, cross: Tensor, beta: Tensor, alpha: float, certify: bool = False) -> Any:
    active = beta != 0
    signs = torch.sign(beta)
    system = _masked_system(gram, active, fill=1.0)
    rhs = (cross - alpha * signs) * active.to(cross.dtype)
    chol, info = torch.linalg.cholesky_ex(system)
    exact = _cholesky_solve(chol, rhs)
    exact = torch.where(active, exact, torch.zeros_like(exact))
    consistent = (torch.sign(exact) == signs).all(-1) & (info == 0)
    slack = (cross - exact @ gram.transpose(-1, -2)).abs()
    kkt = ((slack <= alpha * (1 + 1e-9) + 1e-12) | active).all(-1)
    better = _lasso_objective(gram, cross, exact, alpha) <= _lasso_objective(gram, cross, beta, alpha) + 1e-12
    keep = (consistent & kkt & better & torch.isfinite(exact).all(-1)).unsqueeze(-1)
    polished = torch.where(keep, exact, beta)
    if certify:  # ``keep``: the exact solve satisfies the KKT conditions, so it is optimal
        return polished, keep
    return polished
