"""A drop-in for ``lime.lime_base.LimeBase`` on torchlime's fits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..functional.selection import check_selection, lime_fit, select_features


class LimeBase:
    """Drop-in for ``lime.lime_base.LimeBase``: same constructor, same return types.

    ``explain_instance_with_data`` runs lime's feature selection and its Ridge(alpha=1)
    explanation in torch (float64), so code written for lime, such as MusicLIME,
    switches by changing one import. Arrays may be numpy arrays or tensors; the
    results are numpy/Python values exactly as lime returns them.

    Args:
        kernel_fn: maps an array of distances to an array of weights.
        verbose: print the intercept, local prediction and the model's value.
        random_state: accepted for compatibility (the fits are deterministic).

    Example:
        >>> import numpy as np
        >>> from torchlime.compat import LimeBase
        >>> rng = np.random.default_rng(0)
        >>> data = rng.integers(0, 2, (100, 5)).astype(float); data[0] = 1
        >>> labels = np.stack([data @ [3, 0, 0, 1, 0], -data[:, 0]], 1)
        >>> base = LimeBase(lambda d: np.sqrt(np.exp(-d**2 / 0.25**2)))
        >>> intercept, exp, score, local = base.explain_instance_with_data(
        ...     data, labels, np.zeros(100), label=0, num_features=2)
        >>> [int(f) for f, _ in exp]
        [0, 3]
    """

    def __init__(
        self, kernel_fn: Callable[[np.ndarray], np.ndarray], verbose: bool = False, random_state: Any = None
    ) -> None:
        self.kernel_fn = kernel_fn
        self.verbose = verbose
        self.random_state = random_state

    def feature_selection(
        self, data: Any, labels: Any, weights: Any, num_features: int, method: str
    ) -> np.ndarray:
        """lime's ``feature_selection``: indices of the chosen features, in lime's order.

        Args:
            data: ``(n, F)`` neighbourhood data, row 0 the original instance.
            labels: ``(n,)`` the label column.
            weights: ``(n,)`` kernel weights.
            num_features: maximum number of features.
            method: one of lime's five modes.

        Raises:
            ValueError: bad shapes, an unknown mode, NaN or inf in ``data`` or ``labels``,
                or weights that are not finite, negative, or all zero (where lime's
                scikit-learn calls raise).
        """
        check_selection(num_features, method)
        X = _t(data)
        if X.dim() != 2:
            raise ValueError(f"expected data of shape (n, F), got shape {tuple(X.shape)}")
        y = _t(labels)
        if y.shape != X.shape[:1]:
            raise ValueError(f"expected labels of shape ({X.shape[0]},), got shape {tuple(y.shape)}")
        w = _t(weights)
        _check_finite(X, "data", _AXES[-2:])
        _check_finite(y, "labels", _AXES[1:2])
        _check_weights(w, "weights", X.shape[:1], None)
        sel = select_features(X, y, w, num_features, method)
        count = int(sel.count.reshape(-1)[0])
        return sel.order.reshape(-1, sel.order.shape[-1])[0, :count].numpy()

    def explain_instance_with_data(
        self,
        neighborhood_data: Any,
        neighborhood_labels: Any,
        distances: Any,
        label: int,
        num_features: int,
        feature_selection: str = "auto",
        model_regressor: Any = None,
    ) -> tuple[float, list[tuple[int, float]], float, np.ndarray]:
        """Explain one label from a neighbourhood, as lime does.

        Args:
            neighborhood_data: ``(n, F)`` perturbed data, row 0 the original instance.
            neighborhood_labels: ``(n, C)`` model outputs.
            distances: ``(n,)`` distances to the original.
            label: the column of ``neighborhood_labels`` to explain.
            num_features: maximum number of features in the explanation.
            feature_selection: "none", "highest_weights", "forward_selection",
                "lasso_path" or "auto".
            model_regressor: None for lime's Ridge(alpha=1); any scikit-learn style
                regressor (``fit(X, y, sample_weight)``, ``score``, ``predict``,
                ``coef_``, ``intercept_``) is fitted on the selected features instead.

        Returns:
            ``(intercept, [(feature, weight), ...] sorted by |weight| descending,
            score, local_pred)`` with lime's types.

        Raises:
            ValueError: bad shapes, label out of range, num_features < 1, unknown mode;
                and where lime raises from inside scikit-learn: NaN or inf in
                ``neighborhood_data`` or in the explained label's column, and kernel
                weights (``kernel_fn(distances)``) that are NaN, inf, negative or all zero.
        """
        check_selection(num_features, feature_selection)
        data, labels_all, weights = self._neighbourhoods(neighborhood_data, neighborhood_labels, distances, 2)
        _check_labels(labels_all, [label])
        labels = labels_all[:, label]
        _check_finite(labels, f"neighborhood_labels[:, {label}]", _AXES[1:2])
        if model_regressor is not None:
            return self._with_regressor(data, labels, weights, num_features, feature_selection, model_regressor)
        fit, sel = lime_fit(data, labels, weights, num_features, feature_selection)
        return self._explanation(fit, sel, None, labels_all[0, label])

    def explain_instances_with_data(
        self,
        neighborhood_data: Any,
        neighborhood_labels: Any,
        distances: Any,
        labels: Sequence[int],
        num_features: int,
        feature_selection: str = "auto",
    ) -> list[list[tuple[float, list[tuple[int, float]], float, np.ndarray]]]:
        """Many explanations in one batched fit: every label of every neighbourhood.

        The same numbers as calling :meth:`explain_instance_with_data` for each
        neighbourhood ``b`` and each label, but the B x K selections and fits run as one
        batched computation (lime's Ridge explanation; no ``model_regressor``).

        Args:
            neighborhood_data: ``(B, n, F)`` perturbed data, row 0 of each the original.
            neighborhood_labels: ``(B, n, C)`` model outputs.
            distances: ``(B, n)`` distances; ``kernel_fn`` is called on each row.
            labels: the K label columns to explain in every neighbourhood.
            num_features: maximum number of features per explanation.
            feature_selection: as in :meth:`explain_instance_with_data`.

        Returns:
            ``result[b][j]``: what :meth:`explain_instance_with_data` returns for
            neighbourhood ``b`` and label ``labels[j]``.

        Raises:
            ValueError: as :meth:`explain_instance_with_data`, naming the neighbourhood.

        Example:
            >>> import numpy as np
            >>> from torchlime.compat import LimeBase
            >>> rng = np.random.default_rng(0)
            >>> data = rng.integers(0, 2, (4, 100, 5)).astype(float); data[:, 0] = 1
            >>> outputs = np.stack([data @ [3, 0, 0, 1, 0], -data[..., 0]], -1)
            >>> base = LimeBase(lambda d: np.sqrt(np.exp(-d**2 / 0.25**2)))
            >>> result = base.explain_instances_with_data(data, outputs, np.zeros((4, 100)), [0, 1], 2)
            >>> len(result), len(result[0]), [int(f) for f, _ in result[3][0][1]]
            (4, 2, [0, 3])
        """
        check_selection(num_features, feature_selection)
        data, labels_all, weights = self._neighbourhoods(neighborhood_data, neighborhood_labels, distances, 3)
        labels = list(labels)
        _check_labels(labels_all, labels)
        Y = labels_all[..., labels]
        for j, label in enumerate(labels):
            _check_finite(Y[..., j], f"neighborhood_labels[..., {label}]", _AXES[:2])
        fit, sel = lime_fit(data, Y, weights, num_features, feature_selection)
        return [
            [self._explanation(fit, sel, (b, j), labels_all[b, 0, label]) for j, label in enumerate(labels)]
            for b in range(data.shape[0])
        ]

    def _neighbourhoods(
        self, neighborhood_data: Any, neighborhood_labels: Any, distances: Any, dims: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked float64 ``(..., n, F)`` data, ``(..., n, C)`` labels and ``(..., n)`` weights."""
        data = _t(neighborhood_data)
        labels_all = _t(neighborhood_labels)
        lead = "B, " if dims == 3 else ""
        if data.dim() != dims:
            raise ValueError(f"expected neighborhood_data of shape ({lead}n, F), got shape {tuple(data.shape)}")
        if labels_all.dim() != dims or labels_all.shape[:-1] != data.shape[:-1]:
            raise ValueError(
                f"expected neighborhood_labels of shape ({', '.join(map(str, data.shape[:-1]))}, C), got shape "
                f"{tuple(labels_all.shape)}"
            )
        _check_finite(data, "neighborhood_data", _AXES[-dims:])
        if dims == 2:
            weights = _t(np.asarray(self.kernel_fn(distances)))
        else:
            rows = np.asarray(distances)
            if rows.shape != data.shape[:-1]:
                raise ValueError(
                    f"expected distances of shape {tuple(data.shape[:-1])}, got shape {rows.shape}"
                )
            weights = _t(np.stack([np.asarray(self.kernel_fn(d)) for d in rows]))
        _check_weights(weights, "kernel_fn(distances)", data.shape[:-1], distances)
        return data, labels_all, weights

    def _explanation(self, fit, sel, at: tuple[int, int] | None, right) -> tuple:
        """lime's return value for problem ``at`` (neighbourhood, label) of a batched fit, or
        for the one problem of a single fit (``at=None``: ``fit`` has no batch dims and
        ``sel`` one K dim)."""
        problem = () if at is None else at
        kept = 0 if at is None else at
        used = sel.order[kept][: int(sel.count[kept])].numpy()
        coef = fit.coef[problem].numpy()[used]
        intercept = float(fit.intercept[problem])
        local_pred = fit.local_pred[problem].reshape(1).numpy()
        if self.verbose:
            print("Intercept", intercept)
            print("Prediction_local", local_pred)
            print("Right:", float(right))
        exp = sorted(zip(used, coef), key=lambda x: np.abs(x[1]), reverse=True)
        return (np.float64(intercept), exp, np.float64(fit.score[problem]), local_pred)

    def _with_regressor(self, data, labels, weights, num_features, feature_selection, regressor):
        sel = select_features(data, labels, weights, num_features, feature_selection)
        used = sel.order.reshape(-1)[: int(sel.count.reshape(-1)[0])].numpy()
        X = data.numpy()[:, used]
        y = labels.numpy()
        w = weights.numpy()
        regressor.fit(X, y, sample_weight=w)
        score = regressor.score(X, y, sample_weight=w)
        local_pred = regressor.predict(X[0].reshape(1, -1))
        exp = sorted(zip(used, regressor.coef_), key=lambda x: np.abs(x[1]), reverse=True)
        return (regressor.intercept_, exp, score, local_pred)


# What the dims of the inputs are called in messages: (B,) n, F.
_AXES = ("neighbourhood", "row", "column")


def _t(x: Any) -> torch.Tensor:
    """A float64 CPU tensor of ``x`` (a tensor on any device, or anything numpy reads)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _at(index: Sequence[int], axes: Sequence[str]) -> str:
    return ", ".join(f"{name} {int(i)}" for name, i in zip(axes, index))


def _check_finite(t: torch.Tensor, name: str, axes: Sequence[str]) -> None:
    """NaN or inf, which scikit-learn refuses inside lime: refused here, with where."""
    if bool(torch.isfinite(t.sum())):  # one reduction; a sum that overflows is looked at closely
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        index = bad.nonzero()[0].tolist()
        raise ValueError(f"expected finite values in {name}, got {float(t[tuple(index)])} at {_at(index, axes)}")


def _check_labels(labels_all: torch.Tensor, labels: Sequence[int]) -> None:
    C = labels_all.shape[-1]
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not -C <= label < C:
            raise ValueError(f"expected label in [0, {C}), got {label!r}")


def _check_weights(weights: torch.Tensor, name: str, shape: Sequence[int], distances: Any) -> None:
    """Kernel weights: ``shape``, finite, non-negative, and not all zero in any neighbourhood.

    Args:
        weights: the kernel weights.
        name: what they came from, for the message.
        shape: the expected ``(..., n)``.
        distances: the distances they came from (quoted where a weight is bad), or None.
    """
    if weights.shape != tuple(shape):
        raise ValueError(f"expected {name} of shape {tuple(shape)}, got shape {tuple(weights.shape)}")
    axes = _AXES[-len(shape) - 1 : -1]
    bad = ~torch.isfinite(weights) | (weights < 0)
    if bool(bad.any()):
        index = bad.nonzero()[0].tolist()
        source = ""
        if distances is not None and np.shape(distances) == tuple(shape):
            source = f" from distance {np.asarray(distances)[tuple(index)]}"
        raise ValueError(
            f"expected finite, non-negative values in {name}, got {float(weights[tuple(index)])} at "
            f"{_at(index, axes)}{source}"
        )
    empty = weights.sum(-1) <= 0
    if bool(empty.any()):
        where = f" at {_at(empty.nonzero()[0].tolist(), axes)}" if empty.dim() else ""
        raise ValueError(f"expected {name} with a positive sum, got all zeros{where}")
