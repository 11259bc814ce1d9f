"""Lasso regularization path by least-angle regression (LARS), scikit-learn's algorithm in torch.

A port of ``sklearn.linear_model.lars_path(X, y, method="lasso")`` (equivalently its
Gram form ``lars_path_gram``) with its defaults (``alpha_min=0``, ``positive=False``):
same number of steps, same active set at every step, the same "drop" step when a
coefficient crosses zero, and the same handling of degenerate regressors and early
stops. lime's ``lasso_path`` feature selection reads the nonzero pattern of this path,
so the port keeps scikit-learn's tie-breaking (first maximum in the order of its column
swaps) and roundings.

It runs on the Gram matrix ``X^T X`` and ``X^T y`` (the ``(F, F)`` and ``(F,)`` moments), so a
step costs O(F^2) whatever the number of samples, and it walks many problems at once: every
problem of a batch takes its own path, in lockstep, with masks (a problem that has
finished waits for the others). A step reads three flags on the host: whether any problem
is still walking, needs sklearn's regularised direction, or drops a feature.

Shape glossary: n perturbation samples, F interpretable features, K targets (problems
sharing one Gram matrix), M steps of the path.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._linalg import cholesky_solve

__all__ = ["LarsPath", "lars_lasso_gram", "lars_lasso_path"]

# Constants of sklearn's ``_lars_path_solver``.
_TINY32 = torch.finfo(torch.float32).tiny  # keeps denominators off zero
_EQUALITY_TOLERANCE = torch.finfo(torch.float32).eps  # early stop once alpha <= this
_COV_DECIMALS = 15  # np.finfo(np.float64).precision: rounding of the correlation updates
_DBL_MAX = torch.finfo(torch.float64).max  # ``min_pos`` of an array with no positive entry
_DEGENERATE_PIVOT = 1e-7  # a Cholesky pivot below this drops the regressor for good


class LarsPath(NamedTuple):
    """What :func:`lars_lasso_gram` walked.

    Attributes:
        alphas: ``(..., K, M)`` alpha at each step (zero-padded past ``n_iter``), or None
            unless ``return_path``.
        coefs: ``(..., K, F, M)`` coefficients at each step (zero-padded), or None unless
            ``return_path``.
        n_iter: ``(..., K)`` steps taken (the path of a problem has ``n_iter + 1`` columns).
        support: ``(..., K, F)`` bool, lime's choice for ``num_features``: the nonzero
            pattern of the last step with at most ``num_features`` nonzeros (step 1 if
            none has), every feature for a path with no step; None without
            ``num_features``.
    """

    alphas: Tensor | None
    coefs: Tensor | None
    n_iter: Tensor
    support: Tensor | None


def lars_lasso_path(
    X: Tensor,
    y: Tensor,
    *,
    max_iter: int = 500,
    eps: float | None = None,
    batched: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Lasso path by LARS, step for step as ``sklearn.linear_model.lars_path(method="lasso")``.

    Minimizes ``(1 / (2 n)) ||y - X w||^2 + alpha ||w||_1`` for every alpha from
    ``max |X^T y| / n`` down to 0 and returns the kinks of the piecewise-linear path.
    Computes in float64 on ``X``'s device, on ``X^T X`` and ``X^T y`` (each entry summed in
    the same order, so equal columns of X tie exactly, as in scikit-learn).

    Args:
        X: ``(n, F)`` design matrix (any real dtype; bool and integer masks are fine).
        y: ``(n,)`` targets; moved to ``X``'s device.
        max_iter: Maximum number of steps (sklearn's ``max_iter``).
        eps: Floor of the Cholesky pivots (sklearn's ``eps``); ``None`` for the float64
            machine epsilon, sklearn's default.
        batched: walk with the batched torch code (True) or the single-problem numpy
            code (False); None: numpy on the CPU, torch elsewhere (see
            :func:`lars_lasso_gram`).

    Returns:
        ``(alphas, coefs)``: ``alphas`` ``(M,)``, the maximum absolute correlation divided
        by n at each step (decreasing); ``coefs`` ``(F, M)``, the coefficients at each
        step. Both in ``X``'s floating dtype promoted with ``y``'s (float64 for integer or
        bool inputs). ``M - 1`` is the number of steps taken.

    Raises:
        TypeError: ``X`` or ``y`` is not a tensor, or ``max_iter`` is not an int.
        ValueError: ``X`` is not 2-D, ``y`` is not 1-D, their numbers of rows differ,
            there are no rows, a dtype is complex, a value is not finite, ``max_iter`` is
            negative, or ``eps`` is not a positive finite number.

    Warns:
        RuntimeWarning: where sklearn raises a ``ConvergenceWarning``: a regressor that is
            (numerically) a combination of the active ones is dropped for good, or the
            path stops early because alpha started to increase.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> alphas, coefs = lars_lasso_path(X, torch.tensor([1.0, 0.5, 2.0]))
        >>> alphas.shape, coefs.shape
        (torch.Size([3]), torch.Size([2, 3]))
    """
    out_dtype = _validate(X, y, max_iter, eps)
    n, F = X.shape
    f64 = {"dtype": torch.float64, "device": X.device}
    if F == 0:
        return torch.zeros(1, **f64).to(out_dtype), torch.zeros(0, 1, **f64).to(out_dtype)
    XT = X.detach().to(**f64).T.contiguous()
    y64 = y.detach().to(**f64)
    gram = _rowwise_gram(XT)
    xy = (XT * y64).sum(-1)
    path = lars_lasso_gram(gram, xy.unsqueeze(0), n, max_iter=max_iter, eps=eps, return_path=True, batched=batched)
    M = int(path.n_iter[0]) + 1
    return path.alphas[0, :M].to(out_dtype), path.coefs[0, :, :M].to(out_dtype)


def lars_lasso_gram(
    gram: Tensor,
    xy: Tensor,
    n_samples: int,
    *,
    max_iter: int = 500,
    eps: float | None = None,
    num_features: int | None = None,
    return_path: bool = False,
    batched: bool | None = None,
) -> LarsPath:
    """LARS lasso paths from Gram matrices, many problems at once (``lars_path_gram``).

    A batch walks in torch on the tensors' device, every path in lockstep (:func:`_walk`).
    A single problem on the CPU walks in float64 numpy instead (:func:`_walk_one`): a
    step is a few dozen operations on vectors of F numbers, where numpy's per-call cost
    is a fraction of torch's and no mask is needed for other problems. Both take the same
    steps (the tests hold them to scikit-learn and to each other).

    Args:
        gram: ``(..., F, F)`` float64 ``X^T X``.
        xy: ``(..., K, F)`` float64 ``X^T y`` of K problems sharing each Gram matrix.
        n_samples: n, the divisor of the alphas (early stop once ``alpha <= 1.19e-7``).
        max_iter: maximum number of steps.
        eps: floor of the Cholesky pivots (None: float64 epsilon).
        num_features: fill :attr:`LarsPath.support` with lime's rule for this many.
        return_path: keep every step's alphas and coefficients.
        batched: force the torch walk (True) or the numpy one (False, a single problem
            only); None picks as above.

    Returns:
        :class:`LarsPath`.
    """
    eps = torch.finfo(torch.float64).eps if eps is None else float(eps)
    lead = xy.shape[:-2]
    K, F = xy.shape[-2:]
    gram = gram.reshape(-1, F, F)
    xy = xy.reshape(-1, K, F)
    single = gram.shape[0] * K == 1
    if batched is None:
        batched = not (single and xy.device.type == "cpu")
    if not batched and not single:
        raise ValueError(f"expected a single problem for batched=False, got {gram.shape[0] * K}")
    with torch.no_grad():
        if batched:
            alphas, coefs, n_iter, support = _walk(gram, xy, n_samples, max_iter, eps, num_features, return_path)
        else:
            alphas, coefs, n_iter, support = _walk_one(
                gram[0].detach().cpu().numpy(), xy[0, 0].detach().cpu().numpy(), n_samples, max_iter, eps,
                num_features, return_path,
            )
    shape = (*lead, K)
    return LarsPath(
        None if alphas is None else alphas.reshape(*shape, -1),
        None if coefs is None else coefs.reshape(*shape, F, -1),
        n_iter.reshape(shape),
        None if support is None else support.reshape(*shape, F),
    )


def _walk_one(
    gram: np.ndarray, xy: np.ndarray, n_samples: int, max_iter: int, eps: float, num_features: int | None,
    return_path: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """One path, sklearn's Gram branch line for line, on float64 numpy: ``gram (F, F)``, ``xy (F,)``.

    The triangular solves go through torch on the same memory (numpy has none); ``u = L^-1 s``
    grows by one entry per added feature, so a step needs two solves, not three. Returns
    what :func:`_walk` returns, with leading dims ``(1, 1)``.
    """
    F = xy.shape[0]
    S = min(max_iter, F)
    G = gram.copy()  # rows and columns swapped along with the positions, as sklearn does
    cov = xy.copy()  # by position; those below n_active are stale
    order = np.arange(F)  # feature at each position
    L = np.zeros((S, S))
    L_t = torch.from_numpy(L)
    sign = np.zeros(S)
    u = np.zeros(S)  # L^-1 sign over the active slots
    u_t = torch.from_numpy(u).unsqueeze(-1)
    coef = np.zeros(F)  # by feature
    alphas: list[float] = [0.0]
    coefs: list[np.ndarray] = [coef.copy()]
    support = np.ones(F, dtype=bool)
    k = F if num_features is None else num_features
    n_iter = n_active = 0
    drop = False
    degenerate_seen = early_seen = False
    while True:
        if n_active < F:
            c_idx = n_active + int(np.abs(cov[n_active:]).argmax())  # first maximum
            c_signed = float(cov[c_idx])
            C = abs(c_signed)
        else:
            C = 0.0
        alpha = C / n_samples
        alphas[n_iter] = alpha
        if alpha <= _EQUALITY_TOLERANCE or n_iter >= max_iter or n_active >= F:
            break
        if not drop:
            m = n_active
            if c_idx != m:
                cov[m], cov[c_idx] = cov[c_idx], cov[m]
                order[m], order[c_idx] = order[c_idx], order[m]
                row = G[m].copy()
                G[m] = G[c_idx]
                G[c_idx] = row
                col = G[:, m].copy()
                G[:, m] = G[:, c_idx]
                G[:, c_idx] = col
            if m:
                b = torch.from_numpy(G[m, :m]).unsqueeze(-1)
                w = torch.linalg.solve_triangular(L_t[:m, :m], b, upper=False).numpy()[:, 0]
                v = float(w @ w)
            else:
                v = 0.0
            diag = max(math.sqrt(abs(G[m, m] - v)), eps)
            if diag < _DEGENERATE_PIVOT:
                degenerate_seen = True
                # sklearn zeroes the covariance at m and swaps the values back, but not the
                # positions (nor the Gram rows): reproduced as is.
                cov[m] = 0.0
                cov[m], cov[c_idx] = cov[c_idx], cov[m]
                continue
            if m:
                L[m, :m] = w
            L[m, m] = diag
            sign[m] = np.sign(c_signed)
            u[m] = (sign[m] - (L[m, :m] @ u[:m] if m else 0.0)) / diag
            n_active += 1
        if n_iter > 0 and alphas[n_iter - 1] < alpha:
            early_seen = True
            break
        a = n_active
        ls = torch.linalg.solve_triangular(L_t[:a, :a].mT, u_t[:a], upper=True).numpy()[:, 0]
        AA = _inv_sqrt(float(ls @ sign[:a]))
        if not math.isfinite(AA):
            i = 0
            L_reg = L_t[:a, :a].clone()
            sign_t = torch.from_numpy(sign[:a]).unsqueeze(-1)
            while not math.isfinite(AA) and i < 64:
                L_reg.diagonal().add_((2.0**i) * eps)
                ls = torch.cholesky_solve(sign_t, L_reg).numpy()[:, 0]
                total = float(ls @ sign[:a])
                AA = _inv_sqrt(eps if eps > total else total)  # Python's max(total, eps)
                i += 1
        ls = ls * AA
        corr = np.around(ls @ G[:a, a:], _COV_DECIMALS)
        rest = cov[a:]
        g1 = _min_pos_np((C - rest) / (AA - corr + _TINY32))
        g2 = _min_pos_np((C + rest) / (AA + corr + _TINY32))
        gamma = min(g1, g2, C / AA)
        active = order[:a]
        z = coef[active] / (ls + _TINY32)
        z *= -1.0
        z_pos = _min_pos_np(z)
        drop = z_pos < gamma
        if drop:
            gamma = z_pos
        n_iter += 1
        coef = coef.copy() if return_path else coef
        coef[active] += gamma * ls
        cov[a:] -= gamma * corr
        alphas.append(0.0)
        if drop:
            dropped = np.nonzero(z == z_pos)[0][::-1]
            # Deliberate deviation: sklearn keeps ``p + (-p / l) * l`` for a dropped coefficient,
            # a rounding residue that is exactly 0 in ~92% of drops and ~1e-18 otherwise; lime's
            # ``nonzero()`` rule counts it, and the exact 0 agrees with sklearn more often.
            coef[active[dropped]] = 0.0
        if return_path:
            coefs.append(coef)
        nonzero = coef != 0
        if int(nonzero.sum()) <= k:
            support = nonzero
        if drop:
            for ii in dropped:  # last slot first
                # The factor without the slot (sklearn: cholesky_delete), see :func:`_drop`.
                rows = np.r_[0:ii, ii + 1 : a]
                R = np.linalg.qr(L[rows, :a].T, mode="r")
                L[: a - 1, : a - 1] = (R * np.where(np.diag(R) < 0, -1.0, 1.0)[:, None]).T[:, : a - 1]
                L[a - 1, :] = 0.0
                L[:, a - 1] = 0.0
                # The feature goes to the first inactive position, its covariance from the Gram
                # matrix (sklearn's Gram branch).
                shift = np.r_[0:ii, ii + 1 : a, ii, a:F]
                f_out = order[ii]
                order = order[shift]
                G = G[shift][:, shift]
                sign[ii : a - 1] = sign[ii + 1 : a]
                sign[a - 1] = 0.0
                a -= 1
                cov[a] = xy[f_out] - gram[f_out] @ coef
            u[:] = 0.0
            if a:
                u[:a] = torch.linalg.solve_triangular(L_t[:a, :a], torch.from_numpy(sign[:a]).unsqueeze(-1),
                                                      upper=False).numpy()[:, 0]
        n_active = a
    if degenerate_seen:
        warnings.warn(
            "LARS: regressors in active set degenerate; dropped a regressor for good (its Cholesky "
            f"pivot was below {_DEGENERATE_PIVOT}). Reduce max_iter or increase eps.",
            RuntimeWarning,
            stacklevel=3,
        )
    if early_seen:
        warnings.warn(
            "LARS: early stopping the lasso path, as the residues are small and alpha is no longer "
            "well controlled.",
            RuntimeWarning,
            stacklevel=3,
        )
    M = n_iter + 1
    alphas_t = torch.tensor(alphas[:M], dtype=torch.float64).view(1, 1, M) if return_path else None
    coefs_t = torch.from_numpy(np.stack(coefs[:M], 1)).view(1, 1, F, M) if return_path else None
    support_t = torch.from_numpy(support.copy()).view(1, 1, F) if num_features is not None else None
    return alphas_t, coefs_t, torch.tensor([[n_iter]]), support_t


def _walk(
    gram: Tensor, xy: Tensor, n_samples: int, max_iter: int, eps: float, num_features: int | None, return_path: bool
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """The path of every problem, in lockstep: ``gram (G, F, F)``, ``xy (G, K, F)``.

    The state follows sklearn's layout: ``order`` lists the features in the order its
    column swaps put them (the active ones first, in the order they entered, which is
    also their slot in the Cholesky factor ``L``), ``cov`` is in that order, and the
    coefficients are kept per slot; per-problem scalars are ``(G, K, 1)``. A problem that
    has finished keeps stepping on whatever its state holds (nothing it computes is
    recorded), so no update needs a mask for it; the loop ends when every problem has
    finished. A step is a fixed sequence of small tensor operations: on a CPU their
    number, not their size, is the cost, hence the folded masks below.
    """
    G, K, F = xy.shape
    dev = xy.device
    f64 = {"dtype": torch.float64, "device": dev}
    S = min(max_iter, F)  # slots of the Cholesky factor
    gram_k = gram.unsqueeze(1).expand(G, K, F, F)  # a view: rows gathered per problem
    arange_f = torch.arange(F, device=dev)
    arange_s = torch.arange(S, device=dev)
    cov = xy.clone()  # by position
    order = arange_f.expand(G, K, F).clone()  # feature at each position
    n_active = torch.zeros(G, K, 1, dtype=torch.long, device=dev)
    L = torch.eye(S, **f64).expand(G, K, S, S).clone()  # identity past n_active
    sign = torch.zeros(G, K, S, **f64)  # by slot
    coef = torch.zeros(G, K, S, **f64)  # by slot
    last_alpha = torch.full((G, K, 1), math.inf, **f64)  # alpha of the previous step (none yet)
    n_iter = torch.zeros(G, K, 1, dtype=torch.long, device=dev)
    drop = torch.zeros(G, K, 1, dtype=torch.bool, device=dev)
    done = torch.zeros(G, K, 1, dtype=torch.bool, device=dev)
    degenerate_seen = torch.zeros(G, K, 1, dtype=torch.bool, device=dev)
    early_seen = torch.zeros(G, K, 1, dtype=torch.bool, device=dev)
    support = torch.ones(G, K, F, dtype=torch.bool, device=dev) if num_features is not None else None
    alphas = coefs = None
    if return_path:
        alphas = torch.zeros(G, K, S + 1, **f64)
        coefs = torch.zeros(G, K, F, S + 1, **f64)
    row_index = (G, K, 1, F)
    pm = torch.tensor([[1.0], [-1.0]], **f64)  # the two sides of sklearn's g1 and g2

    while True:
        # The most correlated inactive feature: the first maximum in position order.
        inactive = arange_f >= n_active
        masked = torch.where(inactive, cov.abs(), -1.0)
        # amax and argmax, not max(dim): on a CPU that one starts the thread pool for any
        # size, and on a busy machine the start waits a scheduler time slice (~10 ms).
        C = masked.amax(-1, keepdim=True).clamp_min_(0.0)
        c_pos = masked.argmax(-1, keepdim=True)
        alpha = C / n_samples
        if return_path:
            alphas, coefs = _grow(alphas, coefs, n_iter)  # a degenerate try rewrites its step
            alphas.scatter_(-1, n_iter, torch.where(done, alphas.gather(-1, n_iter), alpha))
        done = done | (alpha <= _EQUALITY_TOLERANCE) | (n_iter >= max_iter) | (n_active >= F)
        if bool(done.all()):
            break

        # Append the chosen feature to the Cholesky factor; sklearn swaps it to position m
        # (nothing is added, and nothing swapped, right after a drop).
        m = n_active.clamp_max(F - 1)
        c_pos = torch.where(drop, m, c_pos)
        f_c = order.gather(-1, c_pos)
        f_m = order.gather(-1, m)
        row = gram_k.gather(-2, f_c.unsqueeze(-1).expand(row_index)).squeeze(-2)  # G[f_c, :]
        b = torch.where(arange_s < n_active, row.gather(-1, order[..., :S]), 0.0)
        w = torch.linalg.solve_triangular(L, b.unsqueeze(-1), upper=False).squeeze(-1)
        pivot = (row.gather(-1, f_c) - (w * w).sum(-1, keepdim=True)).abs_()
        # sqrt(p) as p / sqrt(p): float64 sqrt runs on MKL's threaded vector math from ~100 values.
        diag = torch.where(pivot > 0, pivot * pivot.rsqrt(), 0.0).clamp_min_(eps)
        adding = ~(drop | done)
        degenerate = (diag < _DEGENERATE_PIVOT) & adding
        accept = adding & ~degenerate
        degenerate_seen |= degenerate
        c_signed = cov.gather(-1, c_pos)
        order = order.scatter(-1, m, f_c).scatter_(-1, c_pos, f_m)
        # Position c_pos now holds the feature from m, with its covariance. sklearn zeroes a
        # degenerate feature's covariance and swaps the values back but not the positions:
        # there the feature from m gets 0 (and the chosen one, now at m, keeps the covariance
        # of the feature it swapped with; 0 if it was at m). Reproduced as is.
        cov = cov.scatter(-1, c_pos, cov.gather(-1, m) * ~degenerate)
        m_s = n_active.clamp_max(S - 1)
        at_m = arange_s == m_s
        r = torch.where(at_m, torch.where(accept, diag, 1.0), w * accept)
        L.scatter_(-2, m_s.unsqueeze(-1).expand(G, K, 1, S), r.unsqueeze(-2))
        sign = torch.where(at_m & accept, torch.sign(c_signed), sign)
        n_active = n_active + accept

        go = ~(done | degenerate)
        early = (last_alpha < alpha) & go
        early_seen |= early
        done = done | early
        go = go & ~early

        # Equiangular direction: least squares of the signs on the active Gram. (sklearn's
        # special case of a lone active feature of sign 0 cannot occur on a live path: the
        # sign is that of a covariance of size C > 0.)
        ls = cholesky_solve(L, sign)
        AA = (ls * sign).sum(-1, keepdim=True).rsqrt_()
        bad = ~torch.isfinite(AA) & go
        if bool(bad.any()):
            ls, AA = _regularized_direction(L, sign, arange_s < n_active, ls, AA, bad, eps)
        ls = ls * AA

        # The step to the next kink: an inactive correlation catches up with C (sklearn's
        # g1 and g2, both signs at once) ...
        active_feat = order[..., :S]
        corr = torch.zeros_like(cov).scatter_(-1, active_feat, ls) @ gram  # G[active, :]^T ls
        corr = corr.gather(-1, order).round_(decimals=_COV_DECIMALS).unsqueeze(-2) * pm
        gaps = (C.unsqueeze(-1) - cov.unsqueeze(-2) * pm) / (AA.unsqueeze(-1) - corr + _TINY32)
        gaps = torch.where((gaps > 0) & (arange_f >= n_active).unsqueeze(-2), gaps, _DBL_MAX)
        gamma = torch.minimum(gaps.amin((-2, -1)).unsqueeze(-1), C / AA)
        # ... or, the lasso modification, an active coefficient crosses zero and is dropped
        # (free slots hold 0 / (0 + tiny) = 0, which min_pos skips).
        z = coef / (ls + _TINY32)
        z.neg_()
        z_pos = torch.where(z > 0, z, _DBL_MAX).amin(-1, keepdim=True)
        drop = (z_pos < gamma) & go
        gamma = torch.where(drop, z_pos, gamma) * go
        dropped = (z == z_pos) & drop

        # Deliberate deviation: sklearn keeps ``p + (-p / l) * l`` for a dropped coefficient,
        # a rounding residue that is exactly 0 in ~92% of drops and ~1e-18 otherwise,
        # depending on the last bits of p and l. lime's ``nonzero()`` rule counts that
        # residue, so the exact 0 agrees with sklearn more often than any recomputation.
        coef = torch.where(dropped, 0.0, coef + gamma * ls)
        cov = cov - gamma * corr[..., 0, :]
        last_alpha = torch.where(go, alpha, last_alpha)
        n_iter = n_iter + go
        if return_path:
            alphas, coefs = _grow(alphas, coefs, n_iter)
            by_feature = torch.zeros_like(cov).scatter(-1, active_feat, coef) * go
            coefs.scatter_add_(-1, n_iter.unsqueeze(-1).expand(G, K, F, 1), by_feature.unsqueeze(-1))
        if support is not None:
            nonzero = coef != 0
            take = (nonzero.sum(-1, keepdim=True) <= num_features) & go
            support = torch.where(take, torch.zeros_like(support).scatter_(-1, active_feat, nonzero), support)
        if bool(drop.any()):
            L, sign, coef, order, n_active, cov = _drop(gram_k, xy, L, sign, coef, order, n_active, cov, dropped)

    if bool(degenerate_seen.any()):
        warnings.warn(
            "LARS: regressors in active set degenerate; dropped a regressor for good (its Cholesky "
            f"pivot was below {_DEGENERATE_PIVOT}) in {int(degenerate_seen.sum())} of {G * K} path(s). "
            "Reduce max_iter or increase eps.",
            RuntimeWarning,
            stacklevel=3,
        )
    if bool(early_seen.any()):
        warnings.warn(
            "LARS: early stopping the lasso path, as the residues are small and alpha is no longer "
            f"well controlled, in {int(early_seen.sum())} of {G * K} path(s).",
            RuntimeWarning,
            stacklevel=3,
        )
    return alphas, coefs, n_iter.squeeze(-1), support


def _grow(alphas: Tensor, coefs: Tensor, n_iter: Tensor) -> tuple[Tensor, Tensor]:
    """Double the path buffers when step ``n_iter`` does not fit (drops lengthen a path)."""
    M = alphas.shape[-1]
    if int(n_iter.max()) < M:
        return alphas, coefs
    return torch.cat([alphas, torch.zeros_like(alphas)], -1), torch.cat([coefs, torch.zeros_like(coefs)], -1)


def _min_pos_np(x: np.ndarray) -> float:
    """sklearn's ``arrayfuncs.min_pos``: the smallest entry in ``(0, DBL_MAX)``, else DBL_MAX."""
    if not x.size:
        return _DBL_MAX
    return min(float(np.where(x > 0, x, math.inf).min()), _DBL_MAX)  # NaN > 0 is False


def _inv_sqrt(s: float) -> float:
    """``1 / sqrt(s)`` with numpy's float64 semantics (inf at 0, NaN below 0, 0 at inf)."""
    if math.isnan(s) or s < 0:
        return math.nan
    if s == 0:
        return math.inf
    return 1.0 / math.sqrt(s)


def _regularized_direction(
    L: Tensor, sign: Tensor, slot_on: Tensor, ls: Tensor, AA: Tensor, bad: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """sklearn's fix of an ill-conditioned active Gram: grow the factor's diagonal until
    ``1 / sqrt(max(s^T ls, eps))`` is finite (``2^i eps`` added at try i, cumulatively)."""
    L_reg = L.clone()
    diag = L_reg.diagonal(dim1=-2, dim2=-1)
    for i in range(64):
        if not bool(bad.any()):
            break
        diag.add_(torch.where(bad & slot_on, (2.0**i) * eps, 0.0))
        ls_try = cholesky_solve(L_reg, sign)
        total = (ls_try * sign).sum(-1, keepdim=True)
        AA_try = torch.where(eps > total, eps, total).rsqrt()  # Python's max(total, eps)
        ls = torch.where(bad, ls_try, ls)
        AA = torch.where(bad, AA_try, AA)
        bad = bad & ~torch.isfinite(AA_try)
    return ls, AA


def _drop(
    gram_k: Tensor,
    xy: Tensor,
    L: Tensor,
    sign: Tensor,
    coef: Tensor,
    order: Tensor,
    n_active: Tensor,
    cov: Tensor,
    dropped: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Remove the ``dropped`` slots ``(G, K, S)`` from the active set, last slot first.

    The factor loses the slot's row and is made triangular again (sklearn's
    ``cholesky_delete`` does it with Givens rotations; the R of a QR of the transpose is
    the same factor); the feature moves to the first inactive position, its covariance
    recomputed from the Gram matrix as sklearn's Gram form does. sklearn takes one slot
    off ``n_active`` however many coefficients cross zero at the same step (exact ties);
    here each is removed.
    """
    G, K, S = sign.shape
    F = cov.shape[-1]
    arange_s = torch.arange(S, device=L.device)
    arange_f = torch.arange(F, device=L.device)
    eye = torch.eye(S, dtype=L.dtype, device=L.device)
    while bool(dropped.any()):
        has = dropped.any(-1, keepdim=True)
        ii = torch.where(dropped, arange_s, -1).amax(-1, keepdim=True)  # -1 where none is left
        n = n_active
        f_out = order.gather(-1, ii.clamp_min(0))
        # Positions and slots: below ii they stay, ii..n-2 take the next one, n-1 takes ii.
        src_f = torch.where(has & (arange_f >= ii) & (arange_f < n - 1), arange_f + 1, arange_f)
        src_f = torch.where(has & (arange_f == n - 1), ii, src_f)
        src_s = src_f[..., :S]
        last = has & (arange_s == n - 1)
        order = order.gather(-1, src_f)
        sign = torch.where(last, 0.0, sign.gather(-1, src_s))
        coef = torch.where(last, 0.0, coef.gather(-1, src_s))
        # The factor without the slot's row: (n-1) x n, one superdiagonal from row ii on, and
        # still L'' L''^T = the active Gram without the slot; the R^T of a QR of its
        # transpose is triangular with the same product. The freed slot n-1 goes back to
        # the identity.
        shifted = torch.where(last.unsqueeze(-1), 0.0, L.gather(-2, src_s.unsqueeze(-1).expand(G, K, S, S)))
        rows = has.reshape(-1).nonzero().squeeze(-1)
        flat = shifted.reshape(-1, S, S)
        R = torch.linalg.qr(flat[rows].mT, mode="r").R
        d = torch.where(R.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0)
        flat = flat.index_copy(0, rows, R.mT * d.unsqueeze(-2))
        fixed = torch.where(last.unsqueeze(-1) | last.unsqueeze(-2), eye, flat.view(G, K, S, S))
        L = torch.where(has.unsqueeze(-1), fixed, L)
        n_active = n_active - has.long()
        # The dropped feature's covariance with the residual, at the first inactive position.
        g_row = gram_k.gather(-2, f_out.unsqueeze(-1).expand(G, K, 1, F)).squeeze(-2)
        by_feature = torch.zeros_like(cov).scatter(-1, order[..., :S], coef)
        fresh = xy.gather(-1, f_out) - (g_row * by_feature).sum(-1, keepdim=True)
        cov = torch.where(has & (arange_f == n - 1), fresh, cov.gather(-1, src_f))
        dropped = dropped.gather(-1, src_s) & ~last & (arange_s < ii)
    return L, sign, coef, order, n_active, cov


def _rowwise_gram(XT: Tensor) -> Tensor:
    """``XT @ XT.T`` with every entry summed in the same order: ``XT (F, n) -> (F, F)``.

    BLAS may sum rows in different orders (the blocks of its kernels), which breaks exact
    ties between duplicated features and hence sklearn's first-maximum choice.
    """
    F, n = XT.shape
    step = max(1, (1 << 22) // max(1, F * n))
    return torch.cat([(XT[i : i + step, None, :] * XT[None, :, :]).sum(-1) for i in range(0, F, step)])


def _validate(X: Tensor, y: Tensor, max_iter: int, eps: float | None) -> torch.dtype:
    """Checks the arguments of :func:`lars_lasso_path` and returns the output dtype."""
    for name, t in (("X", X), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected {name} to be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise ValueError(f"expected {name} to have a real dtype, got {t.dtype}")
    if X.dim() != 2:
        raise ValueError(f"expected X to be 2-D (n, F), got shape {tuple(X.shape)}")
    if y.dim() != 1:
        raise ValueError(f"expected y to be 1-D (n,), got shape {tuple(y.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"expected y to have as many rows as X (n={X.shape[0]}), got {y.shape[0]}"
        )
    if X.shape[0] == 0:
        raise ValueError("expected n >= 1 samples, got 0")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int):
        raise TypeError(f"expected max_iter to be an int, got {type(max_iter).__name__}")
    if max_iter < 0:
        raise ValueError(f"expected max_iter >= 0, got {max_iter}")
    eps_ok = isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < math.inf
    if eps is not None and not eps_ok:
        raise ValueError(f"expected eps to be None or a positive finite float, got {eps!r}")
    for name, t in (("X", X), ("y", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"expected finite values in {name}, got NaN or inf")
    floats = [t.dtype for t in (X, y) if t.is_floating_point()]
    if not floats:
        return torch.float64
    out = floats[0]
    for dt in floats[1:]:
        out = torch.promote_types(out, dt)
    return out
