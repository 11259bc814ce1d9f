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

import bisect

import torch
from torch import Tensor

from ._linalg import moments, prepare

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
    cluster: Tensor | None = None,
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
        cluster: ``(n,)`` long, the independent draw each row belongs to (rows of one draw
            consecutive: a mask and its complement for paired masks), -1 for rows that
            were not drawn at random (a fixed first row, enumerated coalitions: no
            variance); None: every row is its own draw. A sampler's
            :attr:`~torchlime.functional.MaskSampler.clusters`.
        chunk: rows of the residual pass handled at a time (memory stays O(chunk F + F^2) per
            instance and target); the Gram matrix and the weighted mean of X come from the
            fits' one pass (:func:`~torchlime.functional.weighted_moments`), a row block at a
            time.

    Returns:
        ``(..., K, F)`` standard errors, in the dtype of ``coef``.

    Raises:
        ValueError: shapes that do not fit together, or a cluster of other shape than ``(n,)``.

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
    if cluster is not None and (cluster.dim() != 1 or cluster.shape[0] != n):
        raise ValueError(f"expected cluster ids of shape ({n},) (one per sample), got shape {tuple(cluster.shape)}")
    dtype = coef.dtype
    f64 = torch.float64
    w = sample_weight.to(f64)
    ids = cluster.to(X.device, torch.long) if cluster is not None else torch.arange(n, device=X.device)
    b = coef.to(f64)
    b0 = intercept.to(f64)
    lead = torch.broadcast_shapes(X.shape[:-2], y.shape[:-2], w.shape[:-1], b.shape[:-2])
    K = b.shape[-2]
    act = None if active is None else active.to(torch.bool).expand(*lead, K, F)
    # Bread: A = Xc^T W Xc + alpha I, restricted to the active features of each target; Xc^T W Xc
    # and the weighted mean of X from the fits' own moments (one pass over the masks).
    m = moments(*prepare(X, y, w)[:3], fit_intercept)
    gram = m.gram.expand(*lead, F, F)
    x_mean = m.x_mean if fit_intercept else None
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
    bounds = _chunks(ids, chunk) if cluster is not None else [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    for start, end in bounds:
        xs = X[..., start:end, :].to(f64)
        ys = y[..., start:end, :].to(f64)
        ws = w[..., start:end]
        resid = ys - (xs @ b.transpose(-1, -2) + b0.unsqueeze(-2))  # (..., c, K)
        if x_mean is not None:
            xs = xs - x_mean.unsqueeze(-2)
        score = (ws.unsqueeze(-1) * resid).transpose(-1, -2).unsqueeze(-1) * xs.unsqueeze(-3)  # (..., K, c, F)
        if act is not None:
            score = score * act.to(f64).unsqueeze(-2)
        drawn = ids[start:end] >= 0
        local = torch.unique_consecutive(ids[start:end].clamp_min(-1), return_inverse=True)[1]
        m = int(local.max()) + 1 if local.numel() else 0
        # Sum the rows of one draw (fixed rows go to a draw that is dropped).
        index = torch.where(drawn, local, torch.full_like(local, m))
        sums = score.new_zeros(*score.shape[:-2], m + 1, F).index_add_(-2, index, score)[..., :m, :]
        solved = _solve_columns(chol, sums.transpose(-1, -2))  # (..., K, F, m)
        var = var + solved.pow(2).sum(-1)
        weighted = (ws > 0) & drawn
        per_draw = weighted.to(f64).new_zeros(*weighted.shape[:-1], m + 1).index_add_(-1, index, weighted.to(f64))
        draws = draws + (per_draw[..., :m] > 0).to(f64).sum(-1)
    p = act.to(f64).sum(-1) if act is not None else torch.full((*lead, K), float(F), dtype=f64, device=X.device)
    dof = (draws.unsqueeze(-1) - p - float(fit_intercept)).clamp_min(1.0)
    var = var * (draws.unsqueeze(-1) / dof).unsqueeze(-1)
    se = var.clamp_min(0).sqrt()
    if act is not None:
        se = torch.where(act, se, torch.zeros_like(se))
    return se.to(dtype)


def _chunks(ids: Tensor, chunk: int) -> list[tuple[int, int]]:
    """Row ranges of about ``chunk`` rows that never split a draw (ids are consecutive per draw)."""
    n = ids.shape[0]
    bounds = []
    start = 0
    cut = ids[1:] != ids[:-1]  # a new draw starts after row i
    starts = set((cut.nonzero().flatten() + 1).tolist()) | {0, n}
    ordered = sorted(starts)
    while start < n:
        target = min(start + max(chunk, 1), n)
        end = ordered[bisect.bisect_left(ordered, target)]  # the first draw boundary at or after the target
        bounds.append((start, end))
        start = end
    return bounds


def _solve_columns(chol: Tensor, rhs: Tensor) -> Tensor:
    """``A^-1 rhs`` for the columns of ``rhs (..., F, m)`` from A's Cholesky factor (two
    triangular solves, as :func:`torchlime.functional._linalg.cholesky_solve` for vectors)."""
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)
