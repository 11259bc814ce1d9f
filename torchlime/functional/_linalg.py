"""The linear algebra the surrogate fits and lime's feature selection share.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.

Private to :mod:`torchlime.functional`: :mod:`.surrogate` (the fits) and :mod:`.selection`
(lime's feature selection) both build on these, so the weighted moments of a problem are
formed once and every solve goes through one Cholesky path. Everything is float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Moments",
    "prepare",
    "row_block",
    "moments",
    "masked_system",
    "spd_solve",
    "cholesky_solve",
    "min_norm_sync_free",
    "solve",
    "rounding_level",
]


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


def prepare(X: Tensor, y: Tensor, sample_weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Check shapes, add the K dim to a single target, broadcast; y and w to float64.

    ``X`` keeps its dtype (float32, bool or integer masks are common): :func:`moments` casts
    it chunk by chunk, so a fit never holds a float64 copy of the ``(..., n, F)`` design.

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)`` or ``(..., n)``.
        sample_weight: ``(..., n)`` or None for ones.

    Returns:
        ``(X, y, w, single)``: ``(..., n, F)`` (a view), float64 ``(..., n, K)`` and ``(..., n)``
        on common leading dims, and whether ``y`` had no K dim.

    Raises:
        ValueError: shapes that do not match.
    """
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
    X = X.expand(*lead, *X.shape[-2:])
    y = y.to(torch.float64).expand(*lead, *y.shape[-2:])
    w = sample_weight.to(torch.float64).expand(*lead, sample_weight.shape[-1])
    return X, y, w, single


# Rows of a problem are taken a chunk at a time: the float64 copy of a chunk of X stays in
# the CPU's cache while it is shifted, scaled and multiplied (32 neighbourhoods of 5000 x 50:
# half the time of one pass over the whole batch), and a fit never holds a float64 copy of
# all n rows (10^7 masks of 8 features: 640 MB, for moments of 8 x 8).
_CPU_BLOCK_BYTES = 2 << 20
_DEVICE_BLOCK_BYTES = 256 << 20


def row_block(X: Tensor) -> int:
    """Rows of ``X (..., n, F)`` to convert to float64 at a time: 2 MiB of them on a CPU (the
    cache), 256 MiB on an accelerator (few kernel launches), all of them under ``torch.compile``."""
    n = X.shape[-2]
    if torch.compiler.is_compiling():
        return max(n, 1)
    budget = _CPU_BLOCK_BYTES if _eager_cpu(X) else _DEVICE_BLOCK_BYTES
    return max(1, min(n, budget // max(1, X[..., :1, :].numel() * 8)))


def moments(X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool) -> Moments:
    """The normal-equation terms of ``X (..., n, F)``, float64 ``y (..., n, K)`` and ``w (..., n)``.

    One pass over the rows, a chunk at a time, shifted by row 0: sums of ``w (x - x_0)`` and
    ``w (x - x_0)(x - x_0)^T`` (and the same for y), then centred at the weighted mean. The
    shift makes a constant column's mean and spread exact (its deviations are exactly 0,
    in any summation order) and keeps the one-pass formula accurate (row 0 is a typical
    sample). Outside autograd on a CPU the Gram matrix is a symmetric product
    (:func:`_symmetric_product`).

    Returns:
        :class:`Moments` (float64).
    """
    n, F = X.shape[-2:]
    K = y.shape[-1]
    lead = y.shape[:-2]
    f64 = torch.float64
    chunk = row_block(X)
    weight_sum = w.sum(-1)
    x0 = X[..., :1, :].to(f64) if fit_intercept else None
    y0 = y[..., :1, :] if fit_intercept else None
    gram = cross = yy = sx = sy = None
    for start in range(0, n, chunk):
        xs = X[..., start : start + chunk, :].to(f64)
        ys = y[..., start : start + chunk, :]
        ws = w[..., start : start + chunk]
        if fit_intercept:
            xs = xs - x0
            ys = ys - y0
        wy = ws.unsqueeze(-1) * ys
        sums = ((wy * ys).sum(-2), (ws.unsqueeze(-2) @ xs).squeeze(-2), wy.sum(-2))
        # after the sums: the shifted chunks are this function's copies, scaled in place
        parts = (*_products(xs, ys, ws, owned=fit_intercept), *sums)
        if gram is None:
            gram, cross, yy, sx, sy = parts
        else:
            gram, cross, yy, sx, sy = (acc + part for acc, part in zip((gram, cross, yy, sx, sy), parts))
    if not fit_intercept:
        zeros_x = torch.zeros(*lead, F, dtype=f64, device=y.device)
        return Moments(gram, cross, yy, zeros_x, torch.zeros(*lead, K, dtype=f64, device=y.device), weight_sum)
    denom = weight_sum.clamp_min(torch.finfo(f64).tiny).unsqueeze(-1)
    mx, my = sx / denom, sy / denom  # the means' offsets from row 0
    gram = gram - sx.unsqueeze(-1) * mx.unsqueeze(-2)
    cross = cross - sy.unsqueeze(-1) * mx.unsqueeze(-2)
    yy = yy - sy * my
    return Moments(gram, cross, yy.clamp_min(0), x0.squeeze(-2) + mx, y0.squeeze(-2) + my, weight_sum)


def _products(xs: Tensor, ys: Tensor, ws: Tensor, owned: bool) -> tuple[Tensor, Tensor]:
    """``xs^T W xs`` and ``ys^T W xs`` of one chunk."""
    if _symmetric_product_applies(xs, ys, ws):
        return _symmetric_product(xs, ys, ws, owned=owned)
    wX = xs * ws.unsqueeze(-1)
    return xs.transpose(-1, -2) @ wX, ys.transpose(-1, -2) @ wX


def _eager_cpu(X: Tensor) -> bool:
    """A CPU tensor outside ``torch.compile`` tracing (which the numpy path and the blocks would break)."""
    return X.device.type == "cpu" and not torch.compiler.is_compiling()


def _symmetric_product_applies(Xc: Tensor, yc: Tensor, w: Tensor) -> bool:
    """Eager CPU tensors outside autograd, weights >= 0 (read on the CPU: no device sync)."""
    if not _eager_cpu(Xc) or Xc.requires_grad or yc.requires_grad or w.requires_grad:
        return False
    return bool((w >= 0).all())


def _symmetric_product(Xc: Tensor, yc: Tensor, w: Tensor, owned: bool) -> tuple[Tensor, Tensor]:
    """``Xc^T W Xc`` and ``yc^T W Xc`` as ``Z^T Z`` and ``(sqrt(w) yc)^T Z``, ``Z = sqrt(w) Xc``, in numpy.

    torch has no symmetric rank-k product; numpy's matmul calls BLAS ``syrk`` for
    ``Z.T @ Z``, half the multiplications of the general product that dominates a single
    lime problem's cost at F = 200 (scikit-learn's Ridge, inside lime, gets it the same
    way). numpy's sqrt, unlike torch's float64 one, never starts a thread pool. ``owned``:
    ``Xc`` and ``yc`` are this module's own copies, scaled in place.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf data: the fits' checks name them
        root = np.sqrt(w.contiguous().numpy())[..., None]
        Z, Zy = Xc.contiguous().numpy(), yc.contiguous().numpy()
        if owned and Xc.is_contiguous() and yc.is_contiguous():  # numpy() shares their memory: scale in place
            Z *= root
            Zy *= root
        else:
            Z, Zy = Z * root, Zy * root
        lead = Z.shape[:-2]
        Zf = Z.reshape(-1, *Z.shape[-2:])
        Zyf = Zy.reshape(-1, *Zy.shape[-2:])
        gram = np.stack([z.T @ z for z in Zf]).reshape(*lead, Z.shape[-1], Z.shape[-1])
        cross = np.matmul(Zyf.transpose(0, 2, 1), Zf).reshape(*lead, Zy.shape[-1], Z.shape[-1])
    return torch.from_numpy(gram), torch.from_numpy(cross)


def rounding_level(sq_sum: Tensor, weight_sum: Tensor, scale: Tensor, n: int) -> Tensor:
    """Whether a weighted sum of squared deviations is nothing but rounding.

    A column of n equal values ``c`` has, once centred by its computed weighted mean, a
    deviation of at most about ``(log2(n) + 2) eps |c|`` in every row (the rounding of two
    pairwise sums and a division), never an exact 0. Twice that bound, relative to the
    column's ``scale``, separates "constant up to rounding" from a real spread.

    Args:
        sq_sum: ``(..., K)`` ``sum_i w_i d_i^2`` of deviations ``d``.
        weight_sum: ``(..., K)`` or ``(..., 1)``: ``sum_i w_i``.
        scale: ``(..., K)`` magnitude of the values (``max_i |y_i|``).
        n: number of samples.

    Returns:
        ``(..., K)`` bool.
    """
    eps = torch.finfo(sq_sum.dtype).eps
    tol = 2 * (math.log2(max(n, 1)) + 2) * eps
    return sq_sum <= weight_sum * (tol * scale) ** 2


def masked_system(gram: Tensor, active: Tensor | None, fill: float) -> Tensor:
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


def spd_solve(system: Tensor, rhs: Tensor) -> Tensor:
    """Solve symmetric positive definite ``system (..., F, F) x = rhs (..., F)``, sync-free.

    Cholesky (``cholesky_ex``, no error-code sync) and two triangular solves; on a CPU an
    LU solve (``solve_ex``) instead: ``cholesky_ex`` zeroes the factor's other triangle with
    a kernel that enters an OpenMP parallel region whatever the size, and on a CPU shared
    with other work each such region waits a scheduler time slice for its threads (8-16 ms
    measured on a busy 2-core machine, for a 10 x 10 system that takes 30 us).
    """
    if system.device.type == "cpu":
        return torch.linalg.solve_ex(system, rhs.unsqueeze(-1))[0].squeeze(-1)
    chol, _ = torch.linalg.cholesky_ex(system)
    return cholesky_solve(chol, rhs)


def cholesky_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``L L^T x = rhs`` for ``rhs (..., F)`` by two triangular solves.

    Not ``torch.cholesky_solve``: its batched CUDA path (MAGMA's ``dpotrs_batched``)
    allocates device memory itself, which a CUDA graph capture forbids.
    """
    half = torch.linalg.solve_triangular(chol, rhs.unsqueeze(-1), upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True).squeeze(-1)


def min_norm_sync_free(system: Tensor, rhs: Tensor, iterations: int = 6) -> Tensor:
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
        beta = beta + cholesky_solve(chol, residual)
    return beta


def solve(gram: Tensor, cross: Tensor, alpha: float, active: Tensor | None, sync_free: bool = False) -> Tensor:
    """Solve ``(G + alpha I) beta = c`` for each target (restricted to ``active``).

    Args:
        gram: ``(..., F, F)``.
        cross: ``(..., K, F)``.
        alpha: ridge penalty; 0 gives the minimum-norm least-squares solution
            (scikit-learn's lstsq fallback).
        active: ``(..., K, F)`` bool or None for every feature.
        sync_free: for ``alpha == 0``, iterated Tikhonov instead of ``pinv``.

    Returns:
        ``(..., K, F)``.
    """
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    if alpha > 0:
        system = masked_system(gram + alpha * eye, active, fill=1.0)
        rhs = cross if active is None else cross * active.to(cross.dtype)
        return spd_solve(system, rhs)
    system = masked_system(gram, active, fill=0.0)
    rhs = cross if active is None else cross * active.to(cross.dtype)
    if sync_free:
        return min_norm_sync_free(system, rhs)
    return (torch.linalg.pinv(system, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1)
