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
    """Check shapes, add the K dim to a single target, broadcast, cast to float64.

    Args:
        X: ``(..., n, F)``.
        y: ``(..., n, K)`` or ``(..., n)``.
        sample_weight: ``(..., n)`` or None for ones.

    Returns:
        ``(X, y, w, single)``: float64 ``(..., n, F)``, ``(..., n, K)``, ``(..., n)`` on common
        leading dims, and whether ``y`` had no K dim.

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
    X = X.to(torch.float64).expand(*lead, *X.shape[-2:])
    y = y.to(torch.float64).expand(*lead, *y.shape[-2:])
    w = sample_weight.to(torch.float64).expand(*lead, sample_weight.shape[-1])
    return X, y, w, single


# On a CPU, a batch of problems is taken a few instances at a time, so that each block's
# centred copy of X stays in the core's cache while it is scaled and multiplied (32
# neighbourhoods of 5000 x 50: half the time of one pass over the whole batch).
_CPU_BLOCK_BYTES = 2 << 20


def moments(X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool) -> Moments:
    """The normal-equation terms of float64 ``X (..., n, F)``, ``y (..., n, K)``, ``w (..., n)``.

    On a CPU a batch ``(B, n, F)`` is taken in blocks that fit the cache, and outside
    autograd (with weights >= 0) the Gram matrix is a symmetric product
    (:func:`_symmetric_product`); elsewhere it is ``Xc^T (w Xc)`` in one batched product.
    """
    B = X.shape[0] if X.dim() == 3 else 1
    block = max(1, _CPU_BLOCK_BYTES // max(1, X.shape[-2] * X.shape[-1] * X.element_size()))
    if _eager_cpu(X) and block < B:
        parts = [_block_moments(X[i : i + block], y[i : i + block], w[i : i + block], fit_intercept)
                 for i in range(0, B, block)]
        return Moments(*(torch.cat(t) for t in zip(*parts)))
    return _block_moments(X, y, w, fit_intercept)


def _block_moments(X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool) -> Moments:
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
    yy = (w.unsqueeze(-1) * yc * yc).sum(-2)
    if _symmetric_product_applies(Xc, yc, w):
        gram, cross = _symmetric_product(Xc, yc, w, owned=fit_intercept)
    else:
        wX = Xc * w.unsqueeze(-1)
        gram = Xc.transpose(-1, -2) @ wX
        cross = yc.transpose(-1, -2) @ wX
    return Moments(gram, cross, yy, x_mean, y_mean, weight_sum)


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
    ``Xc`` and ``yc`` are this module's own centred copies, scaled in place.
    """
    root = np.sqrt(w.numpy())[..., None]
    Z, Zy = Xc.numpy(), yc.numpy()
    if owned:
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
