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

from .surrogate import SurrogateFit, _cholesky_solve, _moments, _prepare, _solve, finish_fit

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
        ``lasso_path`` walks a LARS path per instance and target on the host.
    """
    check_selection(num_features, feature_selection)
    X64, y64, w, _ = _prepare(X, y, sample_weight)
    F = X64.shape[-1]
    K = y64.shape[-1]
    lead = X64.shape[:-2]
    if feature_selection == "auto":
        feature_selection = "forward_selection" if num_features <= 6 else "highest_weights"
    if feature_selection == "none":
        selected = torch.ones(*lead, K, F, dtype=torch.bool, device=X.device)
        return _from_mask(selected)
    if feature_selection == "highest_weights":
        m = _moments(X64, y64, w, True)
        coef = _solve(m.gram, m.cross, 0.01, None)
        score = (coef * X64[..., 0, :].unsqueeze(-2)).abs()
        order = score.argsort(dim=-1, descending=True, stable=True)
        count = torch.full((*lead, K), min(num_features, F), device=X.device)
        return _from_order(order, count)
    if feature_selection == "forward_selection":
        return _forward_selection(X64, y64, w, num_features)
    return _lasso_path_selection(X64, y64, w, num_features)


def _forward_selection(X: Tensor, y: Tensor, w: Tensor, num_features: int) -> FeatureSelection:
    m = _moments(X, y, w, True)
    F = X.shape[-1]
    K = y.shape[-1]
    lead = X.shape[:-2]
    steps = min(num_features, F)
    used = torch.zeros(*lead, K, F, dtype=torch.bool, device=X.device)
    picks = []
    eye = torch.eye(F, dtype=torch.bool, device=X.device)
    for _ in range(steps):
        # One candidate problem per feature j: active = used | {j}  -> (..., K, F_cand, F)
        active = used.unsqueeze(-2) | eye
        gram = m.gram.unsqueeze(-3)  # (..., 1, F, F): shared by the K targets
        cross = m.cross.unsqueeze(-2).expand(*lead, K, F, F)
        coef = _solve(gram.expand(*lead, K, F, F), cross, 0.0, active)  # (..., K, F_cand, F)
        sse = (
            m.yy.unsqueeze(-1)
            - 2 * (coef * cross).sum(-1)
            + ((coef.unsqueeze(-2) @ m.gram.unsqueeze(-3).unsqueeze(-3)) @ coef.unsqueeze(-1))
            .squeeze(-1)
            .squeeze(-1)
        )
        yy = m.yy.unsqueeze(-1)
        # A constant label scores 1 (scikit-learn's r2_score for a perfect fit of it).
        score = torch.where(yy > 0, 1 - sse / torch.where(yy > 0, yy, torch.ones_like(yy)), 1.0)
        score = score.masked_fill(used, float("-inf"))
        best = score.argmax(-1)
        picks.append(best)
        used = used | torch.nn.functional.one_hot(best, F).bool()
    chosen = torch.stack(picks, -1)
    rest = torch.arange(F, device=X.device).expand(*lead, K, F)
    rest_key = torch.where(used, rest + F, rest)
    rest_order = rest_key.argsort(dim=-1, stable=True)[..., : F - steps]
    order = torch.cat([chosen, rest_order], -1)
    count = torch.full((*lead, K), steps, device=X.device)
    return FeatureSelection(used, order, count)


def _lasso_path_selection(X: Tensor, y: Tensor, w: Tensor, num_features: int) -> FeatureSelection:
    from ._lars import lars_lasso_path

    F = X.shape[-1]
    K = y.shape[-1]
    lead = X.shape[:-2]
    Xf = X.reshape(-1, *X.shape[-2:])
    yf = y.reshape(-1, *y.shape[-2:])
    wf = w.reshape(-1, w.shape[-1])
    selected = torch.zeros(Xf.shape[0], K, F, dtype=torch.bool, device=X.device)
    for b in range(Xf.shape[0]):
        wb = wf[b]
        sqrt_w = wb.sqrt().unsqueeze(-1)
        x_mean = (wb.unsqueeze(-1) * Xf[b]).sum(0) / wb.sum()
        data = (Xf[b] - x_mean) * sqrt_w
        for k in range(K):
            labels = yf[b, :, k]
            labels = (labels - (wb * labels).sum() / wb.sum()) * sqrt_w.squeeze(-1)
            _, coefs = lars_lasso_path(data, labels)
            nonzero = torch.ones(F, dtype=torch.bool, device=X.device)
            for i in range(coefs.shape[1] - 1, 0, -1):
                nonzero = coefs[:, i] != 0
                if int(nonzero.sum()) <= num_features:
                    break
            selected[b, k] = nonzero
    selected = selected.reshape(*lead, K, F)
    return _from_mask(selected)


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
    selected ones (the others get coefficient 0).

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
    selection = select_features(X, y, sample_weight, num_features, feature_selection)
    dtype = y.dtype if y.dtype.is_floating_point else torch.float32
    X64, y64, w, single = _prepare(X, y, sample_weight)
    m = _moments(X64, y64, w, True)
    F = X64.shape[-1]
    # Every mode but "none" keeps at most num_features: solve that k x k system, not F x F.
    if feature_selection != "none" and 2 * num_features < F:
        coef = _solve_selected(m.gram, m.cross, float(alpha), selection, num_features)
    else:
        coef = _solve(m.gram, m.cross, float(alpha), selection.selected)
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
    chol, _ = torch.linalg.cholesky_ex(system)
    solution = _cholesky_solve(chol, cross.gather(-1, idx) * valid) * valid
    return torch.zeros_like(cross).scatter(-1, idx, solution)
