"""A drop-in for ``lime.lime_base.LimeBase`` on torchlime's fits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..functional.selection import check_selection, lime_fit


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
        """lime's ``feature_selection``: indices of the chosen features, in lime's order."""
        from ..functional.selection import select_features

        check_selection(num_features, method)
        sel = select_features(_t(data), _t(labels), _t(weights), num_features, method)
        count = int(sel.count.reshape(-1)[0])
        return sel.order.reshape(-1, sel.order.shape[-1])[0, :count].cpu().numpy()

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
            ValueError: bad shapes, label out of range, num_features < 1, unknown mode.
        """
        check_selection(num_features, feature_selection)
        data = _t(neighborhood_data)
        labels_all = _t(neighborhood_labels)
        if data.dim() != 2:
            raise ValueError(f"expected neighborhood_data of shape (n, F), got shape {tuple(data.shape)}")
        if labels_all.dim() != 2 or labels_all.shape[0] != data.shape[0]:
            raise ValueError(
                f"expected neighborhood_labels of shape ({data.shape[0]}, C), got shape "
                f"{tuple(labels_all.shape)}"
            )
        if not -labels_all.shape[1] <= label < labels_all.shape[1]:
            raise ValueError(
                f"expected label in [0, {labels_all.shape[1]}), got {label}"
            )
        weights = _t(np.asarray(self.kernel_fn(distances)))
        labels = labels_all[:, label]
        if model_regressor is not None:
            return self._with_regressor(data, labels, weights, num_features, feature_selection, model_regressor)
        fit, sel = lime_fit(data, labels, weights, num_features, feature_selection)
        count = int(sel.count.reshape(-1)[0])
        used = sel.order.reshape(-1)[:count].cpu().numpy()
        coef = fit.coef.cpu().numpy()[used]
        intercept = float(fit.intercept)
        local_pred = fit.local_pred.reshape(1).cpu().numpy()
        if self.verbose:
            print("Intercept", intercept)
            print("Prediction_local", local_pred)
            print("Right:", float(labels_all[0, label]))
        exp = sorted(zip(used, coef), key=lambda x: np.abs(x[1]), reverse=True)
        return (np.float64(intercept), exp, np.float64(fit.score), local_pred)

    def _with_regressor(self, data, labels, weights, num_features, feature_selection, regressor):
        used = self.feature_selection(data, labels, weights, num_features, feature_selection)
        X = data.cpu().numpy()[:, used]
        y = labels.cpu().numpy()
        w = weights.cpu().numpy()
        regressor.fit(X, y, sample_weight=w)
        score = regressor.score(X, y, sample_weight=w)
        local_pred = regressor.predict(X[0].reshape(1, -1))
        exp = sorted(zip(used, regressor.coef_), key=lambda x: np.abs(x[1]), reverse=True)
        return (regressor.intercept_, exp, score, local_pred)


def _t(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))
