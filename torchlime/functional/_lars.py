"""Lasso regularization path by least-angle regression (LARS), scikit-learn's algorithm in torch.

A step-by-step port of ``sklearn.linear_model.lars_path(X, y, method="lasso")`` with its
defaults (``Gram=None``, ``alpha_min=0``, ``positive=False``, ``return_path=True``): same
number of steps, same active set at every step, the same "drop" step when a coefficient
crosses zero, and the same handling of degenerate regressors and early stops. lime's
``lasso_path`` feature selection reads the nonzero pattern of this path, so the port keeps
scikit-learn's tie-breaking (first maximum, its column swaps) and roundings.

Shape glossary: n perturbation samples, F interpretable features, M steps of the path.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

__all__ = ["lars_lasso_path"]

# Constants of sklearn's ``_lars_path_solver``.
_TINY32 = torch.finfo(torch.float32).tiny  # keeps denominators off zero
_EQUALITY_TOLERANCE = torch.finfo(torch.float32).eps  # early stop once alpha <= this
_COV_DECIMALS = 15  # np.finfo(np.float64).precision: rounding of the correlation updates
_DBL_MAX = torch.finfo(torch.float64).max  # ``min_pos`` of an array with no positive entry
_DEGENERATE_PIVOT = 1e-7  # a Cholesky pivot below this drops the regressor for good
_ALPHA_MIN = 0.0  # lars_path's default; the only value this port supports


def lars_lasso_path(
    X: Tensor,
    y: Tensor,
    *,
    max_iter: int = 500,
    eps: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Lasso path by LARS, step for step as ``sklearn.linear_model.lars_path(method="lasso")``.

    Minimizes ``(1 / (2 n)) ||y - X w||^2 + alpha ||w||_1`` for every alpha from
    ``max |X^T y| / n`` down to 0 and returns the kinks of the piecewise-linear path.
    Computes in float64 on ``X``'s device.

    The path is inherently sequential (each step depends on the sign of the previous
    one), so this walks it in a Python loop and reads scalars back with ``.item()`` at
    every step: use it per instance, not on a hot path.

    Args:
        X: ``(n, F)`` design matrix (any real dtype; bool and integer masks are fine).
        y: ``(n,)`` targets; moved to ``X``'s device.
        max_iter: Maximum number of steps (sklearn's ``max_iter``).
        eps: Floor of the Cholesky pivots (sklearn's ``eps``); ``None`` for the float64
            machine epsilon, sklearn's default.

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
    eps = torch.finfo(torch.float64).eps if eps is None else float(eps)
    device = X.device
    n_samples, n_features = X.shape
    f64 = {"dtype": torch.float64, "device": device}

    # Features are rows of XT; like sklearn's Fortran-ordered X they get swapped so that the
    # active ones come first, in the order they entered. ``cov[j]`` is the correlation of
    # row ``n_active + j`` with the residual.
    XT = X.detach().to(**f64).T.contiguous()
    y64 = y.detach().to(**f64)
    cov = _rowwise_dot(XT, y64)
    indices = list(range(n_features))
    active: list[int] = []
    max_features = min(max_iter, n_features)
    sign_active = [0.0] * max_features
    # Lower Cholesky factor of the active Gram in L[:n_active, :n_active]; its strict upper
    # triangle stays 0 (the solvers read only the lower one anyway).
    L = torch.zeros(max_features, max_features, **f64)

    alphas = [0.0]
    coefs = [torch.zeros(n_features, **f64)]
    n_iter = n_active = 0
    drop = False
    idx: list[int] = []

    while True:
        if cov.numel():
            c_idx = int(torch.argmax(cov.abs()))  # first maximum, as np.argmax
            c_signed = cov[c_idx].item()
            C = abs(c_signed)
        else:
            C = 0.0
        coef = coefs[n_iter]
        alpha = C / n_samples
        alphas[n_iter] = alpha
        if alpha <= _ALPHA_MIN + _EQUALITY_TOLERANCE:
            # Early stop. sklearn interpolates back to alpha_min when alpha overshoots it by
            # more than the tolerance, which cannot happen with alpha_min = 0.
            break
        if n_iter >= max_iter or n_active >= n_features:
            break

        if not drop:
            # Append the most correlated feature to the Cholesky factor of the active Gram.
            sign_active[n_active] = float((c_signed > 0) - (c_signed < 0))
            m, k = n_active, c_idx + n_active
            cov = cov.clone()
            cov[[0, c_idx]] = cov[[c_idx, 0]]
            indices[k], indices[m] = indices[m], indices[k]
            cov_not_shortened = cov
            cov = cov[1:]
            XT[[m, k]] = XT[[k, m]]
            x_new = XT[n_active]
            c = torch.dot(x_new, x_new)
            if n_active:
                w = XT[:n_active] @ x_new
                w = torch.linalg.solve_triangular(
                    L[:n_active, :n_active], w.unsqueeze(-1), upper=False
                ).squeeze(-1)
                L[n_active, :n_active] = w
                v = torch.dot(w, w)
            else:
                v = torch.zeros((), **f64)
            diag = max(math.sqrt(abs((c - v).item())), eps)
            L[n_active, n_active] = diag

            if diag < _DEGENERATE_PIVOT:
                warnings.warn(
                    f"LARS: regressors in active set degenerate; dropping regressor "
                    f"{indices[n_active]} for good after {n_iter} iterations, alpha={alpha:.3e}, "
                    f"active set of {n_active} regressors, Cholesky pivot {diag:.3e}. "
                    "Reduce max_iter or increase eps.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                # sklearn zeroes the covariance and swaps it back, but leaves the swapped
                # rows of X and ``indices`` as they are; reproduced as is.
                cov = cov_not_shortened
                cov[0] = 0.0
                cov[[0, c_idx]] = cov[[c_idx, 0]]
                continue

            active.append(indices[n_active])
            n_active += 1

        if n_iter > 0 and alphas[n_iter - 1] < alpha:
            warnings.warn(
                f"LARS: early stopping the lasso path, as the residues are small and alpha is "
                f"no longer well controlled: {n_iter} iterations, alpha={alpha:.3e}, previous "
                f"alpha={alphas[n_iter - 1]:.3e}, active set of {n_active} regressors.",
                RuntimeWarning,
                stacklevel=2,
            )
            break

        # Equiangular direction: least squares of the signs on the active Gram.
        signs = torch.tensor(sign_active[:n_active], **f64)
        L_active = L[:n_active, :n_active]
        least_squares = torch.cholesky_solve(signs.unsqueeze(-1), L_active).squeeze(-1)
        if n_active == 1 and least_squares.item() == 0:
            # The sign of the only active feature is 0.
            least_squares = torch.ones(1, **f64)
            AA = 1.0
        else:
            AA = _inv_sqrt((least_squares * signs).sum().item())
            if not math.isfinite(AA):
                # The active Gram is too ill-conditioned: regularize its factor's diagonal.
                i = 0
                L_reg = L_active.clone()
                while not math.isfinite(AA):
                    L_reg.diagonal().add_((2**i) * eps)
                    least_squares = torch.cholesky_solve(signs.unsqueeze(-1), L_reg).squeeze(-1)
                    total = (least_squares * signs).sum().item()
                    AA = _inv_sqrt(eps if eps > total else total)  # Python's max(total, eps)
                    i += 1
            least_squares = least_squares * AA

        eq_dir = XT[:n_active].T @ least_squares
        corr_eq_dir = torch.round(_rowwise_dot(XT[n_active:], eq_dir), decimals=_COV_DECIMALS)

        g1 = _min_pos((C - cov) / (AA - corr_eq_dir + _TINY32))
        g2 = _min_pos((C + cov) / (AA + corr_eq_dir + _TINY32))
        gamma = min(g1, g2, C / AA if AA else math.inf)

        # Lasso modification: stop where an active coefficient crosses zero, and drop it.
        drop = False
        z = -coef[active] / (least_squares + _TINY32)
        z_pos = _min_pos(z)
        if z_pos < gamma:
            idx = torch.nonzero(z == z_pos).squeeze(-1).tolist()[::-1]
            for ii in idx:
                sign_active[ii] = -sign_active[ii]
            gamma = z_pos
            drop = True

        n_iter += 1
        new_coef = torch.zeros(n_features, **f64)
        new_coef[active] = coef[active] + gamma * least_squares
        if drop:
            # Deliberate deviation: sklearn keeps ``p + (-p / l) * l`` here, a rounding
            # residue that is exactly 0 in ~92% of drops and ~1e-18 otherwise, depending on
            # the last bits of p and l, which no other summation order reproduces. lime's
            # ``nonzero()`` rule counts that residue, so the exact 0 agrees with sklearn
            # more often than recomputing the residue with different bits would.
            new_coef[[active[ii] for ii in idx]] = 0.0
        coefs.append(new_coef)
        alphas.append(0.0)
        cov = cov - gamma * corr_eq_dir

        if drop:
            for ii in idx:
                # sklearn passes the same n_active for every tie; reproduced as is.
                _cholesky_delete(L, ii, n_active)
            n_active -= 1
            for ii in idx:
                active.pop(ii)
            for ii in idx:
                # Bubble the dropped feature to the end of the active block.
                for i in range(ii, n_active):
                    XT[[i, i + 1]] = XT[[i + 1, i]]
                    indices[i], indices[i + 1] = indices[i + 1], indices[i]
            residual = y64 - XT[:n_active].T @ new_coef[active]
            cov = torch.cat([(XT[n_active] @ residual).unsqueeze(0), cov])
            drop_set = set(idx)
            sign_active = [s for j, s in enumerate(sign_active) if j not in drop_set] + [0.0]

    alphas_t = torch.tensor(alphas[: n_iter + 1], **f64)
    coefs_t = torch.stack(coefs[: n_iter + 1], dim=1)
    return alphas_t.to(out_dtype), coefs_t.to(out_dtype)


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


def _rowwise_dot(A: Tensor, v: Tensor) -> Tensor:
    """``A @ v`` summed the same way for every row, so equal rows give bitwise-equal results.

    BLAS ``gemv`` may sum rows in different orders (the column blocks of its kernels), which
    breaks exact ties between duplicated features and hence sklearn's first-maximum choice.

    Args:
        A: ``(k, n)``.
        v: ``(n,)``.

    Returns:
        ``(k,)``.
    """
    return (A * v).sum(-1)


def _min_pos(x: Tensor) -> float:
    """sklearn's ``arrayfuncs.min_pos``: the smallest entry in ``(0, DBL_MAX)``, else DBL_MAX.

    Args:
        x: ``(k,)``, any k (NaN and inf entries are skipped).
    """
    if not x.numel():
        return _DBL_MAX
    keep = (x > 0) & (x < _DBL_MAX)
    return torch.where(keep, x, _DBL_MAX).amin().item()


def _inv_sqrt(s: float) -> float:
    """``1 / sqrt(s)`` with numpy's float64 semantics (inf at 0, NaN below 0, 0 at inf)."""
    if math.isnan(s) or s < 0:
        return math.nan
    if s == 0:
        return math.inf
    return 1.0 / math.sqrt(s)


def _cholesky_delete(L: Tensor, go_out: int, n: int) -> None:
    """sklearn's ``arrayfuncs.cholesky_delete`` on ``L[:n, :n]``, in place.

    Removes row and column ``go_out`` from the lower factor: shifts the rows below up, then
    restores the triangle with Givens rotations, keeping the diagonal non-negative. Row
    ``n - 1`` is left stale, as in sklearn.

    Args:
        L: ``(F', F')`` buffer whose leading ``(n, n)`` lower triangle is the factor.
        go_out: Row and column to remove.
        n: Size of the factor before removal.
    """
    for i in range(go_out, n - 1):
        L[i, : i + 2] = L[i + 1, : i + 2]
    for i in range(go_out, n - 1):
        a, b = L[i, i].item(), L[i, i + 1].item()
        # BLAS drotg (LAPACK 3.10 scaling, as OpenBLAS) then sklearn's sign fix, which
        # together give r = |(a, b)| >= 0 and (c, s) = (a, b) / r.
        scale = max(abs(a), abs(b))
        if scale:
            r = scale * math.sqrt((a / scale) ** 2 + (b / scale) ** 2)
            c, s = a / r, b / r
        else:
            r, c, s = 0.0, 1.0, 0.0
        L[i, i] = r
        L[i, i + 1] = 0.0
        x = L[i + 1 : n - 1, i].clone()
        yv = L[i + 1 : n - 1, i + 1].clone()
        L[i + 1 : n - 1, i] = c * x + s * yv
        L[i + 1 : n - 1, i + 1] = c * yv - s * x
