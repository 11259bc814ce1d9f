"""torchlime.compat.LimeBase against lime.lime_base.LimeBase on the same neighbourhoods."""

import numpy as np
import pytest
import torch
from lime.lime_base import LimeBase as ReferenceLimeBase
from sklearn.linear_model import Lasso

from torchlime import functional as TF
from torchlime.compat import LimeBase

MODES = ["none", "highest_weights", "forward_selection", "lasso_path", "auto"]


def kernel(d, width=25.0):
    return np.sqrt(np.exp(-(d**2) / width**2))


def neighbourhood(seed, n=400, F=12, C=3):
    """Binary masks (row 0 ones), outputs of a nonlinear model, cosine distances x 100."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2, (n, F)).astype(float)
    data[0] = 1
    W = rng.normal(size=(F, C)) * (rng.uniform(size=(F, 1)) < 0.5)
    logits = data @ W + 0.3 * rng.normal(size=(n, C))
    labels = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    norms = np.linalg.norm(data, axis=1) * np.sqrt(F)
    distances = (1 - data.sum(1) / np.where(norms == 0, 1, norms)) * 100
    return data, labels, distances


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_features", [1, 4, 8])
def test_same_features_same_order_same_numbers(mode, seed, num_features):
    data, labels, distances = neighbourhood(seed)
    label = seed % 3
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, label, num_features, mode)
    ours = LimeBase(kernel).explain_instance_with_data(data, labels, distances, label, num_features, mode)
    assert [int(f) for f, _ in ours[1]] == [int(f) for f, _ in ref[1]]
    np.testing.assert_allclose([w for _, w in ours[1]], [w for _, w in ref[1]], atol=1e-8, rtol=0)
    assert ours[0] == pytest.approx(ref[0], abs=1e-8)
    assert ours[2] == pytest.approx(ref[2], abs=1e-8)
    np.testing.assert_allclose(ours[3], ref[3], atol=1e-8, rtol=0)


def test_same_types_as_lime():
    data, labels, distances = neighbourhood(0)
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, 0, 5)
    ours = LimeBase(kernel).explain_instance_with_data(data, labels, distances, 0, 5)
    assert type(ours[0]) is type(ref[0])
    assert isinstance(ours[1], list) and all(isinstance(t, tuple) and len(t) == 2 for t in ours[1])
    assert type(ours[1][0][0]) is type(ref[1][0][0]) and type(ours[1][0][1]) is type(ref[1][0][1])
    assert isinstance(ours[2], float)
    assert isinstance(ours[3], np.ndarray) and ours[3].shape == ref[3].shape == (1,)


@pytest.mark.parametrize("mode", MODES)
def test_feature_selection_method_matches(mode):
    data, labels, distances = neighbourhood(7)
    w = kernel(distances)
    ref = ReferenceLimeBase(kernel).feature_selection(data, labels[:, 1], w, 5, mode)
    ours = LimeBase(kernel).feature_selection(data, labels[:, 1], w, 5, mode)
    assert list(ours) == list(ref)


def test_accepts_tensors_and_a_model_regressor():
    data, labels, distances = neighbourhood(3)
    reg = lambda: Lasso(alpha=0.001)  # noqa: E731
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, 2, 4, "highest_weights", reg())
    ours = LimeBase(kernel).explain_instance_with_data(
        torch.tensor(data), torch.tensor(labels), distances, 2, 4, "highest_weights", reg()
    )
    assert [int(f) for f, _ in ours[1]] == [int(f) for f, _ in ref[1]]
    np.testing.assert_allclose([w for _, w in ours[1]], [w for _, w in ref[1]], atol=1e-8)


@pytest.mark.parametrize("mode", ["none", "highest_weights", "forward_selection", "lasso_path"])
def test_selection_batch_and_targets_equal_loops(mode):
    sets = [neighbourhood(s) for s in range(3)]
    X = torch.tensor(np.stack([s[0] for s in sets]))
    Y = torch.tensor(np.stack([s[1] for s in sets]))
    W = torch.tensor(np.stack([kernel(s[2]) for s in sets]))
    fit, sel = TF.lime_fit(X, Y, W, 4, mode)
    for b in range(3):
        for k in range(3):
            one_fit, one_sel = TF.lime_fit(X[b], Y[b, :, k], W[b], 4, mode)
            assert torch.equal(sel.selected[b, k], one_sel.selected[0])
            assert torch.equal(sel.order[b, k], one_sel.order[0])
            torch.testing.assert_close(fit.coef[b, k], one_fit.coef, atol=1e-10, rtol=0)
            torch.testing.assert_close(fit.score[b, k], one_fit.score, atol=1e-10, rtol=0)


def test_errors():
    data, labels, distances = neighbourhood(0)
    base = LimeBase(kernel)
    with pytest.raises(ValueError, match="expected num_features >= 1, got 0"):
        base.explain_instance_with_data(data, labels, distances, 0, 0)
    with pytest.raises(ValueError, match="expected feature_selection in .* got 'greedy'"):
        base.explain_instance_with_data(data, labels, distances, 0, 3, "greedy")
    with pytest.raises(ValueError, match=r"expected label in \[0, 3\), got 3"):
        base.explain_instance_with_data(data, labels, distances, 3, 3)
    with pytest.raises(ValueError, match=r"expected neighborhood_labels of shape \(400, C\)"):
        base.explain_instance_with_data(data, labels[:10], distances, 0, 3)
    with pytest.raises(ValueError, match=r"expected neighborhood_data of shape \(n, F\)"):
        base.explain_instance_with_data(data[0], labels, distances, 0, 3)
