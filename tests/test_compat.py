"""torchlime.compat.LimeBase against lime.lime_base.LimeBase on the same neighbourhoods."""

import warnings

import numpy as np
import pytest
import torch
from lime.lime_base import LimeBase as ReferenceLimeBase
from sklearn.linear_model import Lasso
from sklearn.metrics import r2_score

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


def _lime_or_error(fn):
    """lime's result, or the exception it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception as err:  # noqa: BLE001 - any refusal counts; the test checks which
        return err


def _same_explanation(ours, ref):
    assert [int(f) for f, _ in ours[1]] == [int(f) for f, _ in ref[1]]
    np.testing.assert_allclose([w for _, w in ours[1]], [w for _, w in ref[1]], atol=1e-8, rtol=0)
    assert ours[0] == pytest.approx(ref[0], abs=1e-8)
    assert ours[2] == pytest.approx(ref[2], abs=1e-8)
    np.testing.assert_allclose(ours[3], ref[3], atol=1e-8, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [0.3, 0.5, 0.0])
def test_constant_labels_as_lime(mode, value):
    # Where lime's weighted mean of the constant comes out exact: coefficients 0, features
    # in index order (every feature for lasso_path, whose path has no step), R^2 1.0.
    data, labels, distances = neighbourhood(0, n=400, F=8)
    labels[:, 1] = value
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, 1, 4, mode)
    ours = LimeBase(kernel).explain_instance_with_data(data, labels, distances, 1, 4, mode)
    assert ours[2] == 1.0 and all(w == 0 for _, w in ours[1])
    # Whether lime's own mean comes out exact depends on how numpy sums (its thread count):
    # where it does, the two explanations are the same; where it does not, lime ranks by
    # rounding noise (test_constant_labels_do_not_depend_on_rounding).
    if ref[2] == 1.0 and all(w == 0 for _, w in ref[1]):
        _same_explanation(ours, ref)


@pytest.mark.parametrize("mode", MODES)
def test_constant_labels_do_not_depend_on_rounding(mode):
    # Here lime's computed mean is off by an ulp: it ranks features by ~1e-32 coefficients
    # and scores R^2 0. torchlime gives the answer lime gives when its rounding is exact.
    data, labels, distances = neighbourhood(4, n=500, F=10)
    labels[:, 1] = 0.3
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, 1, 4, mode)
    assert all(abs(w) < 1e-20 for _, w in ref[1])  # lime's weights are rounding noise
    ours = LimeBase(kernel).explain_instance_with_data(data, labels, distances, 1, 4, mode)
    expected = list(range(10)) if mode in ("none", "lasso_path") else [0, 1, 2, 3]
    assert [int(f) for f, _ in ours[1]] == expected
    assert all(w == 0 for _, w in ours[1]) and ours[2] == 1.0
    assert ours[0] == pytest.approx(0.3, abs=1e-15) and ours[3] == pytest.approx([0.3], abs=1e-15)


def test_weighted_r2_constant_target_up_to_rounding():
    # sklearn's r2_score needs den == 0 exactly; a prediction or a mean an ulp away from a
    # constant target is still a perfect fit of it.
    # (On these weights sklearn's own mean of 0.3 is an ulp off, and its r2_score of 0.3
    # predicted by 0.31 is -3e28; on 0.5, whose mean comes out exact, it is 0.)
    rng = np.random.default_rng(3)
    w = torch.tensor(rng.uniform(0.1, 1.0, 500))
    y = torch.full((500, 3), 0.3, dtype=torch.float64)
    y[:, 1] = 0.5
    y[:, 2] = torch.tensor(rng.normal(size=500))
    pred = y.clone()
    pred[:, 0] = 0.30000000000000004
    pred[:, 1] = 0.51
    pred[:, 2] += 0.1 * torch.tensor(rng.normal(size=500))
    score = TF.weighted_r2(y, pred, w)
    assert score[0] == 1.0 and score[1] == 0.0
    assert r2_score(y[:, 1], pred[:, 1], sample_weight=w) == 0.0
    assert TF.weighted_r2(y[:, :1], y[:, :1], w) == 1.0 == r2_score(y[:, 1], y[:, 1], sample_weight=w)
    assert score[2] == pytest.approx(r2_score(y[:, 2], pred[:, 2], sample_weight=w), abs=1e-12)
    # A real spread, however small next to the values (1e-12 relative, thousands of ulps),
    # is not rounding. Centring loses ~1e-13 of each 1e-9 deviation in both libraries,
    # hence the tolerance.
    y[:, 0] = 1e3 + 1e-9 * torch.tensor(rng.normal(size=500))
    pred[:, 0] = 1e3
    expected = r2_score(y[:, 0], pred[:, 0], sample_weight=w)
    assert TF.weighted_r2(y, pred, w)[0] == pytest.approx(expected, rel=1e-3) and abs(expected) > 1e-6


def test_nan_in_another_label_column_is_fine_as_in_lime():
    data, labels, distances = neighbourhood(5)
    labels[7, 0] = np.nan
    ref = ReferenceLimeBase(kernel).explain_instance_with_data(data, labels, distances, 2, 4, "lasso_path")
    ours = LimeBase(kernel).explain_instance_with_data(data, labels, distances, 2, 4, "lasso_path")
    _same_explanation(ours, ref)


def _bad_inputs():
    data, labels, distances = neighbourhood(6, n=200, F=8)
    nan_label = labels.copy()
    nan_label[5, 1] = np.nan
    inf_label = labels.copy()
    inf_label[9, 1] = np.inf
    nan_data = data.copy()
    nan_data[3, 2] = np.nan
    nan_distances = distances.copy()
    nan_distances[4] = np.nan
    zero = lambda d: np.zeros_like(d)  # noqa: E731
    negative = lambda d: kernel(d) - 0.5  # noqa: E731
    return [
        ("nan_label", (data, nan_label, distances, kernel), r"finite values in neighborhood_labels\[:, 1\], got nan at row 5"),
        ("inf_label", (data, inf_label, distances, kernel), r"neighborhood_labels\[:, 1\], got inf at row 9"),
        ("nan_data", (nan_data, labels, distances, kernel), r"finite values in neighborhood_data, got nan at row 3, column 2"),
        ("nan_distance", (data, labels, nan_distances, kernel),
         r"finite, non-negative values in kernel_fn\(distances\), got nan at row 4 from distance nan"),
        ("zero_weights", (data, labels, distances, zero), r"kernel_fn\(distances\) with a positive sum, got all zeros"),
        ("negative_weights", (data, labels, distances, negative), r"non-negative values in kernel_fn\(distances\), got -"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_refuses_what_lime_refuses_with_a_clear_error(mode, case):
    _, (data, labels, distances, kern), match = case
    err = _lime_or_error(lambda: ReferenceLimeBase(kern).explain_instance_with_data(data, labels, distances, 1, 3, mode))
    # lime raises from inside scikit-learn (ZeroDivisionError from np.average for all-zero
    # weights in lasso_path), ValueError everywhere else.
    assert isinstance(err, (ValueError, ZeroDivisionError)), err
    with pytest.raises(ValueError, match=match):
        LimeBase(kern).explain_instance_with_data(data, labels, distances, 1, 3, mode)


def test_feature_selection_errors():
    data, labels, distances = neighbourhood(0, n=50, F=5)
    base = LimeBase(kernel)
    w = kernel(distances)
    bad = labels[:, 0].copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="finite values in labels, got nan at row 2"):
        base.feature_selection(data, bad, w, 2, "highest_weights")
    with pytest.raises(ValueError, match=r"expected weights of shape \(50,\), got shape \(49,\)"):
        base.feature_selection(data, labels[:, 0], w[1:], 2, "highest_weights")
    with pytest.raises(ValueError, match=r"expected labels of shape \(50,\), got shape \(50, 3\)"):
        base.feature_selection(data, labels, w, 2, "highest_weights")
    with pytest.raises(ValueError, match="weights with a positive sum, got all zeros"):
        base.feature_selection(data, labels[:, 0], 0 * w, 2, "lasso_path")
    with pytest.raises(ValueError, match=r"kernel_fn\(distances\) of shape \(50,\), got shape \(\)"):
        LimeBase(lambda d: 1.0).explain_instance_with_data(data, labels, distances, 0, 2)


def _batch(B=4, n=300, F=12, seed=20):
    sets = [neighbourhood(seed + b, n=n, F=F) for b in range(B)]
    return np.stack([s[0] for s in sets]), np.stack([s[1] for s in sets]), np.stack([s[2] for s in sets])


@pytest.mark.parametrize("mode", MODES)
def test_batched_explanations_equal_lime_one_by_one(mode):
    data, labels, distances = _batch()
    chosen = [2, 0]
    ours = LimeBase(kernel).explain_instances_with_data(data, labels, distances, chosen, 4, mode)
    assert len(ours) == 4 and all(len(row) == 2 for row in ours)
    for b in range(4):
        for j, label in enumerate(chosen):
            ref = ReferenceLimeBase(kernel).explain_instance_with_data(data[b], labels[b], distances[b], label, 4, mode)
            _same_explanation(ours[b][j], ref)
            single = LimeBase(kernel).explain_instance_with_data(data[b], labels[b], distances[b], label, 4, mode)
            assert [f for f, _ in ours[b][j][1]] == [f for f, _ in single[1]]
            assert type(ours[b][j][0]) is type(single[0]) and type(ours[b][j][2]) is type(single[2])


def test_batched_errors_name_the_neighbourhood():
    data, labels, distances = _batch(B=3, n=50, F=5)
    base = LimeBase(kernel)
    bad = labels.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(ValueError, match=r"neighborhood_labels\[\.\.\., 1\], got nan at neighbourhood 2, row 7"):
        base.explain_instances_with_data(data, bad, distances, [0, 1], 2)
    far = distances.copy()
    far[1] = np.inf  # every weight of neighbourhood 1 is exp(-inf) = 0
    with pytest.raises(ValueError, match="with a positive sum, got all zeros at neighbourhood 1"):
        base.explain_instances_with_data(data, labels, far, [0], 2)
    with pytest.raises(ValueError, match=r"expected distances of shape \(3, 50\), got shape \(50,\)"):
        base.explain_instances_with_data(data, labels, distances[0], [0], 2)
    with pytest.raises(ValueError, match=r"expected label in \[0, 3\), got 5"):
        base.explain_instances_with_data(data, labels, distances, [0, 5], 2)
    with pytest.raises(ValueError, match=r"expected neighborhood_data of shape \(B, n, F\)"):
        base.explain_instances_with_data(data[0], labels, distances, [0], 2)
