"""How sure an explanation is: standard errors of the surrogate's coefficients.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.

LIME's coefficients are a weighted least-squares fit on randomly drawn masks, so they move
from one draw to the next. The model itself is deterministic: what varies is which masks
were drawn. For independently drawn masks the variance of the fitted coefficients over
redraws is estimated, from one draw, by the heteroskedasticity-robust ("sandwich")
covariance of an M-estimator:

    Cov(beta) = A^-1 (sum_c u_c u_c^T) A^-1,   A = Xc^T W Xc + alpha I,
    u_c = sum_{i in c} w_i r_i Xc_i

with ``r`` the residuals of the fit, ``Xc`` the weighted-centred masks and ``c`` the
independent draws: one row each for i.i.d. masks, a pair of rows for paired (antithetic)
masks, none for rows a sampler enumerated exactly (they do not vary). A small-sample
factor ``m / (m - p - 1)`` (HC1) is applied, m the independent draws with weight and p the
fitted features. Quasi-random (Sobol) masks are not independent: the same formula is then
conservative (it overstates the error), which is documented where they are offered.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sandwich_stderr"]


def sandwich_stderr(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    coef: Tensor,
    intercept: Tensor,
    *,
    alpha: float = 0.0,
    fit_intercept: bool = True,
    active: Tensor | None = None,
    cluster_size: int = 1,
    fixed: Tensor | None = None,
    chunk: int = 8192,
) -> Tensor:
    """Standard errors of weighted (ridge) least-squares coefficients over redraws of the masks.

    Args:
        X: ``(..., n, F)`` masks.
        y: ``(..., n, K)`` model outputs.
        sample_weight: ``(..., n)`` non-negative weights (zero rows do not count).
        coef: ``(..., K, F)`` the fitted coefficients.
        intercept: ``(..., K)``.
        alpha: the ridge penalty the fit used (0 for least squares and for a lasso's
            active set).
        fit_intercept: whether the fit centred X and y.
        active: ``(..., K, F)`` bool, the features the fit estimated (a feature selection's
            or a lasso's support); the others get standard error 0.
        cluster_size: consecutive rows drawn together (2 for paired masks: a mask and its
            complement); the variance comes from whole clusters.
        fixed: ``(..., n)`` bool, rows that were enumerated, not drawn (no variance).
        chunk: rows handled at a time (memory stays O(chunk F + F^2) per instance and target).

    Returns:
        ``(..., K, F)`` standard errors, in the dtype of ``coef``.

    Raises:
        ValueError: shapes that do not fit together, or ``n`` not a multiple of ``cluster_size``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.bernoulli(torch.full((400, 3), 0.5), generator=g)
        >>> y = (X @ torch.tensor([1.0, -2.0, 0.5]) + 0.5 * X[:, 0] * X[:, 1]).unsqueeze(-1)
        >>> from torchlime.functional import linear_regression
        >>> fit = linear_regression(X, y)
        >>> se = sandwich_stderr(X, y, torch.ones(400), fit.coef, fit.intercept)
        >>> se.shape, bool((se > 0).all() and (se < 0.1).all())
        (torch.Size([1, 3]), True)
    """
    if X.dim() < 2 or y.dim() != X.dim() or coef.shape[-1] != X.shape[-1] or y.shape[-2] != X.shape[-2]:
        raise ValueError(
            f"expected X (..., n, F), y (..., n, K) and coef (..., K, F) to match, got shapes {tuple(X.shape)}, "
            f"{tuple(y.shape)} and {tuple(coef.shape)}"
        )
    n, F = X.shape[-2:]
    if cluster_size < 1 or n % cluster_size:
        raise ValueError(f"expected n = {n} samples in whole clusters of {cluster_size}, got a remainder")
    dtype = coef.dtype
    f64 = torch.float64
    w = sample_weight.to(f64)
    if fixed is not None:
        drawn = ~fixed.to(torch.bool)
    else:
        drawn = None
    wsum = w.sum(-1).clamp_min(torch.finfo(f64).tiny)
    x_mean = (w.unsqueeze(-2) @ X.to(f64)).squeeze(-2) / wsum.unsqueeze(-1) if fit_intercept else None
    b = coef.to(f64)
    b0 = intercept.to(f64)
    lead = torch.broadcast_shapes(X.shape[:-2], y.shape[:-2], w.shape[:-1], b.shape[:-2])
    K = b.shape[-2]
    act = None if active is None else active.to(torch.bool).expand(*lead, K, F)
    # Bread: A = Xc^T W Xc + alpha I, restricted to the active features of each target.
    gram = torch.zeros(*lead, F, F, dtype=f64, device=X.device)
    for start in range(0, n, chunk):
        xs = X[..., start : start + chunk, :].to(f64)
        if x_mean is not None:
            xs = xs - x_mean.unsqueeze(-2)
        ws = w[..., start : start + chunk]
        gram = gram + xs.transpose(-1, -2) @ (xs * ws.unsqueeze(-1))
    eye = torch.eye(F, dtype=f64, device=X.device)
    system = (gram + alpha * eye).unsqueeze(-3).expand(*lead, K, F, F)
    if act is not None:
        a = act.to(f64)
        system = system * (a.unsqueeze(-1) * a.unsqueeze(-2)) + eye * (1 - a).unsqueeze(-1)
    scale = system.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(f64).tiny)
    # A jitter of 1e-10 of the mean diagonal keeps a rank-deficient design factorable
    # (its null directions get a huge variance: the coefficient is not identified).
    chol, _ = torch.linalg.cholesky_ex(system + (1e-10 * scale)[..., None, None] * eye)
    var = torch.zeros(*lead, K, F, dtype=f64, device=X.device)
    draws = torch.zeros(lead, dtype=f64, device=X.device)
    step = max(cluster_size, chunk - chunk % cluster_size)
    for start in range(0, n, step):
        xs = X[..., start : start + step, :].to(f64)
        ys = y[..., start : start + step, :].to(f64)
        ws = w[..., start : start + step]
        resid = ys - (xs @ b.transpose(-1, -2) + b0.unsqueeze(-2))  # (..., c, K)
        if x_mean is not None:
            xs = xs - x_mean.unsqueeze(-2)
        score = (ws.unsqueeze(-1) * resid).transpose(-1, -2).unsqueeze(-1) * xs.unsqueeze(-3)  # (..., K, c, F)
        keep = ws > 0
        if drawn is not None:
            d = drawn[..., start : start + step]
            score = score * d.to(f64).unsqueeze(-2).unsqueeze(-1)
            keep = keep & d
        if act is not None:
            score = score * act.to(f64).unsqueeze(-2)
        c = score.shape[-2]
        clusters = score.reshape(*score.shape[:-2], c // cluster_size, cluster_size, F).sum(-2)  # (..., K, m, F)
        solved = _chol_solve(chol, clusters.transpose(-1, -2))  # (..., K, F, m)
        var = var + solved.pow(2).sum(-1)
        draws = draws + keep.reshape(*keep.shape[:-1], c // cluster_size, cluster_size).any(-1).to(f64).sum(-1)
    p = act.to(f64).sum(-1) if act is not None else torch.full((*lead, K), float(F), dtype=f64, device=X.device)
    dof = (draws.unsqueeze(-1) - p - float(fit_intercept)).clamp_min(1.0)
    var = var * (draws.unsqueeze(-1) / dof).unsqueeze(-1)
    se = var.clamp_min(0).sqrt()
    if act is not None:
        se = torch.where(act, se, torch.zeros_like(se))
    return se.to(dtype)


def _chol_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """``A^-1 rhs`` for ``rhs (..., F, m)`` from A's Cholesky factor, by two triangular solves."""
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)
