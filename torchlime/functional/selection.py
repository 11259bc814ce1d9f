"""The ``lime`` package's feature selection and its explanation fit, batched.

Shape glossary: B instances (any leading dims ``...``), n perturbation samples,
F interpretable features, K targets.

Each mode follows ``lime.lime_base.LimeBase.feature_selection`` rule for rule:

- ``none``: every feature.
- ``highest_weights``: Ridge(alpha=0.01) on all features, rank by ``|coef * x_0|``.
- ``forward_selection``: greedy, adding the feature whose Ridge(alpha=0) fit has the
  highest weighted R^2 (first best on ties).
- ``lasso_path``: LARS lasso path on the weighted-centred data; the last step with at
  most ``num_features`` non-zeros.
- ``auto``: ``forward_selection`` when ``num_features <= 6``, else ``highest_weights``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._lars import lars_lasso_gram
from ._linalg import Moments, moments, prepare, rounding_level, solve, spd_solve
from .surrogate import SurrogateFit, finish_fit

__all__ = ["FEATURE_SELECTION_MODES", "FeatureSelection", "select_features", "lime_fit", "check_selection"]

FEATURE_SELECTION_MODES = ("none", "highest_weights", "forward_selection", "lasso_path", "auto")


class FeatureSelection(NamedTuple):
    """Which features a selection kept, in lime's order.

    Attributes:
        selected: ``(..., K, F)`` bool.
        order: ``(..., K, F)`` feature indices: the selected ones first, in the order
            lime lists them, then the others ascending.
        count: ``(..., K)`` number of selected features.
    """

    selected: Tensor
    order: Tensor
    count: Tensor


def check_selection(num_features: int, feature_selection: str) -> None:
    """Validate ``num_features`` and ``feature_selection``.

    Raises:
        ValueError: ``num_features < 1`` or an unknown mode.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"expected num_features >= 1, got {num_features!r}")
    if feature_selection not in FEATURE_SELECTION_MODES:
        raise ValueError(
            f"expected feature_selection in {list(FEATURE_SELECTION_MODES)}, got "
            f"{feature_selection!r}"
        )


def _from_order(order: Tensor, count: Tensor) -> FeatureSelection:
    """Build a selection from a ranking whose first ``count`` entries are kept."""
    F = order.shape[-1]
    rank_pos = torch.arange(F, device=order.device)
    keep_sorted = rank_pos < count.unsqueeze(-1)
    selected = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return FeatureSelection(selected, order, count)


def _from_mask(selected: Tensor) -> FeatureSelection:
    """Build a selection whose kept features are listed ascending, after ``first``."""
    F = selected.shape[-1]
    idx = torch.arange(F, device=selected.device).expand_as(selected)
    key = torch.where(selected, idx, idx + F)
    order = key.argsort(dim=-1, stable=True)
    return FeatureSelection(selected, order, selected.sum(-1))


def select_features(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    num_features: int,
    feature_selection: str = "auto",
) -> FeatureSelection:
    """Choose features with lime's rules.

    Args:
        X: ``(..., n, F)`` neighbourhood data, row 0 the original instance.
        y: ``(..., n, K)`` labels (or ``(..., n)``).
        sample_weight: ``(..., n)`` kernel weights.
        num_features: maximum number of features (>= 1).
        feature_selection: one of :data:`FEATURE_SELECTION_MODES`.

    Returns:
        :class:`FeatureSelection` with a K dim (``(..., 1, F)`` for a single target).
        ``lasso_path`` walks the LARS paths of every instance and target in lockstep
        (a few host synchronisations per step; a single problem on a CPU walks in numpy).

    Example:
        >>> X = torch.bernoulli(torch.full((200, 6), 0.5), generator=torch.Generator().manual_seed(0))
        >>> y = 3 * X[:, 1] - X[:, 4] + 0.5 * X[:, 0]
        >>> select_features(X, y, torch.ones(200), 2, "forward_selection").order[0, :2].tolist()
        [1, 4]
    """
    check_selection(num_features, feature_selection)
    X64, y64, w, _ = prepare(X, y, sample_weight)
    m = _lime_moments(X64, y64, w)
    return _select(X64, m, num_features, feature_selection)


def _lime_moments(X: Tensor, y: Tensor, w: Tensor) -> Moments:
    """The centred moments, with a target that is constant up to rounding made exactly so.

    lime (scikit-learn) sees a constant label as exactly constant: its selection ranks
    nothing (features come in index order) and its fit is the mean with R^2 = 1. Its
    rounding residue (~1e-31 cross moments) must not rank features here either.
    """
    m = moments(X, y, w, True)
    # Exactly equal values have a spread of exactly 0 (the moments are shifted by row 0, so
    # their deviations are exact zeros in any summation order); else the rounding bound.
    constant = (m.yy == 0) | rounding_level(m.yy, m.weight_sum.unsqueeze(-1), y.abs().amax(-2), y.shape[-2])
    return m._replace(
        cross=m.cross.masked_fill(constant.unsqueeze(-1), 0.0), yy=m.yy.masked_fill(constant, 0.0)
    )


def _select(X: Tensor, m: Moments, num_features: int, feature_selection: str) -> FeatureSelection:
    """lime's selection from the problem's moments: ``X (..., n, F)`` float64 for row 0 and n."""
    F = X.shape[-1]
    K = m.cross.shape[-2]
    lead = m.cross.shape[:-2]
    if feature_selection == "auto":
        feature_selection = "forward_selection" if num_features <= 6 else "highest_weights"
    if feature_selection == "none":
        selected = torch.ones(*lead, K, F, dtype=torch.bool, device=X.device)
        return _from_mask(selected)
    if feature_selection == "highest_weights":
        coef = solve(m.gram, m.cross, 0.01, None)
        score = (coef * X[..., 0, :].unsqueeze(-2)).abs()
        order = score.argsort(dim=-1, descending=True, stable=True)
        count = torch.full((*lead, K), min(num_features, F), device=X.device)
        return _from_order(order, count)
    if feature_selection == "forward_selection":
        return _forward_selection(m.gram, m.cross, num_features)
    path = lars_lasso_gram(m.gram, m.cross, X.shape[-2], num_features=num_features)
    return _from_mask(path.support)


def _forward_selection(gram: Tensor, cross: Tensor, num_features: int) -> FeatureSelection:
    """Greedy forward selection, every candidate of a step scored at once.

    lime refits Ridge(alpha=0) on ``used + [j]`` for every candidate j and keeps the best
    weighted R^2. With the active set's Cholesky factor, the R^2 of ``used + [j]`` is the
    current one plus ``r_j^2 / d_j / yy``, where ``d_j`` is j's pivot (its variance left
    after projecting out the used features) and ``r_j`` its covariance with the current
    residual: one ``(F,)`` vector per step for all candidates (the bordered factor).
    A candidate whose pivot is rounding (collinear with the used ones, or a constant
    column) adds nothing, as scikit-learn's least-squares fit of it gives.

    Args:
        gram: ``(..., F, F)``.
        cross: ``(..., K, F)``.
        num_features: steps (at most F).
    """
    F = gram.shape[-1]
    K = cross.shape[-2]
    lead = cross.shape[:-2]
    steps = min(num_features, F)
    g = gram.unsqueeze(-3)  # (..., 1, F, F), shared by the K targets
    g_diag = gram.diagonal(dim1=-2, dim2=-1).unsqueeze(-2)  # (..., 1, F)
    floor = 1e-10 * g_diag
    pivot = g_diag.expand(*lead, K, F).clone()  # d_j
    residual = cross.clone()  # r_j
    rows = cross.new_zeros(*lead, K, steps, F)  # the factor's rows L^-1 G[used, :]
    used = torch.zeros(*lead, K, F, dtype=torch.bool, device=cross.device)
    picks = []
    for step in range(steps):
        usable = pivot > floor
        gain = torch.where(usable, residual.square() / torch.where(usable, pivot, 1.0), 0.0)
        best = gain.masked_fill(used, -1.0).argmax(-1, keepdim=True)  # (..., K, 1), first max
        picks.append(best)
        used = used.scatter(-1, best, True)
        d_best = pivot.gather(-1, best)
        scale = torch.where(d_best > floor.expand_as(pivot).gather(-1, best), d_best.rsqrt(), 0.0)
        g_best = g.expand(*lead, K, F, F).gather(-2, best.unsqueeze(-1).expand(*lead, K, 1, F)).squeeze(-2)
        w_best = rows[..., :step, :].gather(-1, best.unsqueeze(-2).expand(*lead, K, step, 1))  # (..., K, step, 1)
        new = (g_best - (w_best * rows[..., :step, :]).sum(-2)) * scale
        rows[..., step, :] = new
        pivot = pivot - new.square()
        residual = residual - residual.gather(-1, best) * scale * new
    chosen = torch.cat(picks, -1)
    rest = torch.arange(F, device=cross.device).expand(*lead, K, F)
    rest_order = torch.where(used, rest + F, rest).argsort(dim=-1, stable=True)[..., : F - steps]
    order = torch.cat([chosen, rest_order], -1)
    count = torch.full((*lead, K), steps, device=cross.device)
    return FeatureSelection(used, order, count)


def lime_fit(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    num_features: int,
    feature_selection: str = "auto",
    alpha: float = 1.0,
) -> tuple[SurrogateFit, FeatureSelection]:
    """lime's ``explain_instance_with_data`` with the default regressor, batched.

    Selects features with :func:`select_features`, then fits Ridge(``alpha``) on the
    selected ones (the others get coefficient 0). The weighted moments are formed once
    and serve both.

    Args:
        X: ``(..., n, F)`` neighbourhood data, row 0 the original instance.
        y: ``(..., n, K)`` labels (or ``(..., n)`` for one).
        sample_weight: ``(..., n)`` kernel weights.
        num_features: maximum number of features.
        feature_selection: one of :data:`FEATURE_SELECTION_MODES`.
        alpha: the explanation Ridge's penalty (lime: 1).

    Returns:
        ``(fit, selection)``; ``fit`` has a K dim unless y was ``(..., n)``.
    """
    check_selection(num_features, feature_selection)
    dtype = y.dtype if y.dtype.is_floating_point else torch.float32
    X64, y64, w, single = prepare(X, y, sample_weight)
    m = _lime_moments(X64, y64, w)
    selection = _select(X64, m, num_features, feature_selection)
    F = X64.shape[-1]
    # Every mode but "none" keeps at most num_features: solve that k x k system, not F x F.
    if feature_selection != "none" and 2 * num_features < F:
        coef = _solve_selected(m.gram, m.cross, float(alpha), selection, num_features)
    else:
        coef = solve(m.gram, m.cross, float(alpha), selection.selected)
        coef = torch.where(selection.selected, coef, torch.zeros_like(coef))
    return finish_fit(X64, y64, w, m, coef, single, dtype), selection


def _solve_selected(gram: Tensor, cross: Tensor, alpha: float, selection: FeatureSelection, k: int) -> Tensor:
    """Ridge on the at most ``k`` selected features of each target: ``(..., K, F)`` coefficients.

    Gathers the ``(..., K, k, k)`` block of ``gram`` (the selected features come first in
    ``selection.order``; slots past ``count`` are inactive) and scatters the solution back.
    """
    F = gram.shape[-1]
    idx = selection.order[..., :k]  # (..., K, k)
    K = idx.shape[-2]
    lead = gram.shape[:-2]
    rows = gram.unsqueeze(-3).expand(*lead, K, F, F).gather(-2, idx.unsqueeze(-1).expand(*lead, K, k, F))
    sub = rows.gather(-1, idx.unsqueeze(-2).expand(*lead, K, k, k))
    valid = (torch.arange(k, device=idx.device) < selection.count.unsqueeze(-1)).to(gram.dtype)  # (..., K, k)
    eye = torch.eye(k, device=gram.device, dtype=gram.dtype)
    system = (sub + alpha * eye) * (valid.unsqueeze(-1) * valid.unsqueeze(-2)) + eye * (1 - valid).unsqueeze(-1)
    solution = spd_solve(system, cross.gather(-1, idx) * valid) * valid
    return torch.zeros_like(cross).scatter(-1, idx, solution)
