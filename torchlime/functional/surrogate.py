"""Weighted linear surrogate fits, batched over instances and targets.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.

Every fit takes ``X (..., n, F)``, ``y (..., n, K)`` (or ``(..., n)`` for one target) and
sample weights ``w (..., n)``, solves in float64 and returns a :class:`SurrogateFit`
in the dtype of ``y``. Each fit checks its inputs (one host sync) unless told they were
checked (``checked=True``: the explainers check once, in the engine) or ``sync_free``;
``lasso(..., sync_free=False)`` also reads values on the host to stop once converged.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._linalg import Moments, rounding_level
from ._linalg import cholesky_solve as _cholesky_solve
from ._linalg import masked_system as _masked_system
from ._linalg import moments as _moments
from ._linalg import prepare as _prepare
from ._linalg import solve as _solve
from ._linalg import spd_solve as _spd_solve

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


def weighted_r2(y: Tensor, pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """scikit-learn's ``r2_score(y, pred, sample_weight=w)`` per column.

    A constant target scores 1.0 when predicted exactly and 0.0 otherwise, as
    scikit-learn does. "Constant" and "exactly" allow for rounding: a column whose
    weighted spread around its mean, or whose residual, is at the rounding level of an
    n-sample sum relative to the column's largest ``|y|`` counts as zero (scikit-learn
    needs an exact 0, which a computed mean or prediction rarely gives).

    Args:
        y: ``(..., n, K)``.
        pred: ``(..., n, K)``.
        sample_weight: ``(..., n)`` or None.

    Returns:
        ``(..., K)``.

    Example:
        >>> y = torch.tensor([[0.3, 1.0], [0.3, 2.0], [0.3, 3.0]])
        >>> weighted_r2(y, torch.tensor([[0.3, 1.0], [0.3, 2.5], [0.3, 2.5]]))
        tensor([1.0000, 0.7500])
    """
    if sample_weight is None:
        sample_weight = torch.ones(y.shape[:-1], device=y.device, dtype=y.dtype)
    w = sample_weight.unsqueeze(-1).to(y.dtype)
    weight_sum = w.sum(-2)
    mean = (w * y).sum(-2, keepdim=True) / weight_sum.unsqueeze(-2)
    num = (w * (y - pred) ** 2).sum(-2)
    den = (w * (y - mean) ** 2).sum(-2)
    return _r2_score(num, den, (y == y[..., :1, :]).all(-2), weight_sum, y)


def _r2_score(sse: Tensor, den: Tensor, exactly_constant: Tensor, weight_sum: Tensor, y: Tensor) -> Tensor:
    """``1 - sse / den`` per column ``(..., K)``, with scikit-learn's rule for a constant target
    (1.0 when predicted exactly, else 0.0); "constant" and "exactly" allow for rounding
    (:func:`~torchlime.functional._linalg.rounding_level` relative to the column's largest |y|)."""
    scale = torch.maximum(y.detach().amax(-2), -y.detach().amin(-2))  # max |y| without an (n, K) copy
    n = y.shape[-2]
    constant = exactly_constant | rounding_level(den.detach(), weight_sum, scale, n)
    exact = rounding_level(sse.detach(), weight_sum, scale, n)
    score = 1 - sse / torch.where(constant, torch.ones_like(den), den)
    return torch.where(constant, exact.to(score.dtype), score)


def finish_fit(
    X: Tensor, y: Tensor, w: Tensor, moments: Moments, coef: Tensor, single: bool, dtype: torch.dtype,
    fit_intercept: bool = True,
) -> SurrogateFit:
    """Intercept, weighted R^2 and local prediction for solved coefficients, from the moments.

    The residual sum of squares is ``yy - 2 b.c + b G b`` of the centred moments (the
    intercept makes the weighted residuals sum to 0), so no ``(..., n, K)`` prediction is
    formed; the local prediction is the surrogate at row 0.

    Args:
        X: ``(..., n, F)`` (any dtype; only row 0 is read).
        y: ``(..., n, K)`` float64.
        w: ``(..., n)`` float64.
        moments: the problem's :class:`Moments`.
        coef: ``(..., K, F)`` float64.
        single: drop the K dim from the outputs.
        dtype: dtype of the outputs.
        fit_intercept: whether the moments were centred (R^2 is relative to the weighted mean
            either way).

    Returns:
        :class:`SurrogateFit`.
    """
    intercept = moments.y_mean - (coef * moments.x_mean.unsqueeze(-2)).sum(-1)
    gb = coef @ moments.gram  # (..., K, F): b G
    sse = (moments.yy - 2 * (coef * moments.cross).sum(-1) + (gb * coef).sum(-1)).clamp_min(0)
    if fit_intercept:  # the centred moments hold the spread; shifted by row 0, a constant column's is exactly 0
        den, exactly_constant = moments.yy, moments.yy == 0
    else:  # R^2 is about the weighted mean even without an intercept
        mean = (w.unsqueeze(-1) * y).sum(-2, keepdim=True) / w.sum(-1)[..., None, None]
        den, exactly_constant = (w.unsqueeze(-1) * (y - mean) ** 2).sum(-2), (y == y[..., :1, :]).all(-2)
    score = _r2_score(sse, den, exactly_constant, moments.weight_sum.unsqueeze(-1), y)
    local_pred = (X[..., 0, :].to(torch.float64).unsqueeze(-2) * coef).sum(-1) + intercept
    parts = (coef, intercept, score, local_pred)
    if single:
        parts = tuple(t.squeeze(-2) if t is coef else t.squeeze(-1) for t in parts)
    return SurrogateFit(*(t.to(dtype) for t in parts))


def _out_dtype(y: Tensor) -> torch.dtype:
    return y.dtype if y.dtype.is_floating_point else torch.float32


def _check_problem(X: Tensor, y: Tensor, w: Tensor, m: Moments) -> None:
    """Raise on what no weighted least-squares fit can use (one host sync when all is well).

    NaN or inf in the design or the targets would give NaN coefficients; negative weights
    make the problem non-convex; a problem whose weights are all zero has no data (lime
    and scikit-learn refuse both). NaN and inf are found in the moments (they reach the
    sums whatever their weight), so the check makes no copy of the ``(..., n, F)`` design;
    the rows are looked up only to name them.

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)``.
        w: ``(..., n)`` (broadcast as :func:`~torchlime.functional._linalg.prepare` does).
        m: the problem's :class:`Moments`.

    Raises:
        ValueError: naming the argument and up to 5 places.
    """
    bad_w = ~torch.isfinite(w) | (w < 0)
    empty = (w == 0).all(-1)
    flags = torch.stack([
        ~torch.isfinite(m.gram).all() | ~torch.isfinite(m.x_mean).all(),
        ~torch.isfinite(m.cross).all() | ~torch.isfinite(m.yy).all(),
        bad_w.any(),
        empty.any(),
    ]).tolist()
    if not any(flags):
        return
    where = lambda bad: ", ".join(str(tuple(i)) for i in bad.nonzero().tolist()[:5])  # noqa: E731
    lead = "(problem..., sample)" if w.dim() > 1 else "sample"
    if flags[2]:
        raise ValueError(f"expected finite, non-negative sample_weight, got bad ones at {lead} {where(bad_w)}")
    bad_x = ~torch.isfinite(X).all(-1) if X.dtype.is_floating_point else torch.zeros_like(w, dtype=torch.bool)
    if bool(bad_x.any()):
        raise ValueError(f"expected finite X, got NaN or inf in the rows at {lead} {where(bad_x)}")
    bad_y = ~torch.isfinite(y).all(-1)
    if bool(bad_y.any()):
        raise ValueError(f"expected finite y, got NaN or inf at {lead} {where(bad_y)}")
    if flags[0] or flags[1]:
        raise ValueError("expected X and y whose weighted sums of squares are finite, got an overflow to inf "
                         "(rescale the data)")
    problems = [tuple(i) for i in empty.nonzero().tolist()[:5]] if empty.dim() else "the problem"
    raise ValueError(f"expected sample_weight with a positive entry in every problem, got all zeros for {problems}")


def ridge(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    alpha: float = 1.0,
    fit_intercept: bool = True,
    active: Tensor | None = None,
    sync_free: bool = False,
    checked: bool = False,
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
        sync_free: skip the input checks (they read a flag on the host); for ``alpha > 0``
            the solve itself never synchronises.
        checked: the caller has checked ``X``, ``y`` and ``sample_weight`` already (finite
            X and y, finite non-negative weights with a positive one per problem: the
            explainers' ``validate``, :func:`~torchlime.functional.engine.check_explained`):
            skip the input check and its host sync. An overflow of the float64 sums of
            finite data (values beyond about 1e150) then gives non-finite coefficients
            instead of an error.

    Returns:
        :class:`SurrogateFit`.

    Raises:
        ValueError: ``alpha < 0``; unless ``sync_free`` or ``checked``, NaN or inf in ``X`` or ``y``, and
            sample weights that are negative, not finite or all zero for a problem.

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
    if not (sync_free or checked):
        _check_problem(X, y, w, m)
    coef = _solve(m.gram, m.cross, float(alpha), active)
    return finish_fit(X, y, w, m, coef, single, dtype, fit_intercept)


def linear_regression(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    fit_intercept: bool = True,
    warn_singular: bool = False,
    sync_free: bool = False,
    checked: bool = False,
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
            its error code on CUDA. It also skips the input checks (as :func:`ridge`).
        checked: the inputs were checked already: no input check (see :func:`ridge`).

    Returns:
        :class:`SurrogateFit`.

    Raises:
        ValueError: unless ``sync_free`` or ``checked``, NaN or inf in ``X`` or ``y``, and sample weights
            that are negative, not finite or all zero for a problem.
    """
    dtype = _out_dtype(y)
    X, y, w, single = _prepare(X, y, sample_weight)
    m = _moments(X, y, w, fit_intercept)
    if not (sync_free or checked):
        _check_problem(X, y, w, m)
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
    return finish_fit(X, y, w, m, coef, single, dtype, fit_intercept)


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
    checked: bool = False,
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
            CUDA for its error code), so it may need more iterations; and no input
            checks (as :func:`ridge`).
        checked: the inputs were checked already: no input check (see :func:`ridge`).

    Returns:
        :class:`SurrogateFit`.

    Raises:
        ValueError: ``alpha < 0``, ``max_iter < 1``; unless ``sync_free`` or ``checked``, NaN or inf in
            ``X`` or ``y``, and sample weights that are negative, not finite or all zero
            for a problem.
    """
    if alpha < 0:
        raise ValueError(f"expected alpha >= 0, got {alpha}")
    if max_iter < 1:
        raise ValueError(f"expected max_iter >= 1, got {max_iter}")
    dtype = _out_dtype(y)
    X, y, w, single = _prepare(X, y, sample_weight)
    m = _moments(X, y, w, fit_intercept)
    if not (sync_free or checked):
        _check_problem(X, y, w, m)
    scale = m.weight_sum.clamp_min(torch.finfo(torch.float64).tiny)
    gram = m.gram / scale[..., None, None]
    cross = m.cross / scale[..., None, None]
    coef = _lasso_solve(gram, cross, float(alpha), max_iter, tol, sync_free)
    return finish_fit(X, y, w, m, coef, single, dtype, fit_intercept)


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
    # The starting signs need not be exact (the rounds and the certificate decide): least
    # squares with a ridge of 1e-10 of the mean diagonal, one Cholesky or LU solve, not the
    # eigendecomposition of a pseudo-inverse (a host sync and dozens of kernels on CUDA).
    diag = gram.diagonal(dim1=-2, dim2=-1)
    ridge = 1e-10 * diag.mean(-1).clamp_min(torch.finfo(gram.dtype).tiny)[..., None, None]
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    ls = _spd_solve((gram + ridge * eye).unsqueeze(-3), cross)
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
