import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.metrics import r2_score

from torchlime import functional as TF
from torchlime import models


def problem(seed, n=150, F=10, K=None, binary=True):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, F)).astype(float) if binary else rng.normal(size=(n, F))
    X[0] = 1
    coef = rng.normal(size=(F,) if K is None else (F, K))
    y = X @ coef + 0.3 * rng.normal(size=(n,) if K is None else (n, K))
    w = rng.uniform(0.05, 1.0, n)
    return X, y, w


REFERENCES = [
    ("ridge", lambda: Ridge(alpha=1.0), lambda X, y, w: TF.ridge(X, y, w, alpha=1.0)),
    ("ridge_alpha0", lambda: Ridge(alpha=0.0), lambda X, y, w: TF.ridge(X, y, w, alpha=0.0)),
    ("linear", lambda: LinearRegression(), lambda X, y, w: TF.linear_regression(X, y, w)),
    # sklearn's coordinate descent is run to a tight tolerance so both sit on the optimum.
    ("lasso", lambda: Lasso(alpha=0.02, tol=1e-14, max_iter=100_000), lambda X, y, w: TF.lasso(X, y, w, alpha=0.02)),
]


@pytest.mark.parametrize("name,ref,ours", REFERENCES, ids=[r[0] for r in REFERENCES])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("binary", [True, False])
def test_parity_with_sklearn(name, ref, ours, seed, binary):
    X, y, w = problem(seed, binary=binary)
    expected = ref().fit(X, y, sample_weight=w)
    fit = ours(torch.tensor(X), torch.tensor(y), torch.tensor(w))
    torch.testing.assert_close(fit.coef, torch.tensor(expected.coef_), atol=1e-6, rtol=0)
    torch.testing.assert_close(fit.intercept, torch.tensor(expected.intercept_, dtype=torch.float64), atol=1e-6, rtol=0)
    score = expected.score(X, y, sample_weight=w)
    torch.testing.assert_close(fit.score, torch.tensor(score, dtype=torch.float64), atol=1e-6, rtol=0)
    local = expected.predict(X[:1])[0]
    torch.testing.assert_close(fit.local_pred, torch.tensor(local, dtype=torch.float64), atol=1e-6, rtol=0)


def test_lasso_sets_coefficients_to_exact_zero():
    X, y, w = problem(0, F=20)
    fit = TF.lasso(torch.tensor(X), torch.tensor(y), torch.tensor(w), alpha=0.3)
    ref = Lasso(alpha=0.3, tol=1e-14, max_iter=100_000).fit(X, y, sample_weight=w)
    assert ((fit.coef == 0).numpy() == (ref.coef_ == 0)).all()
    assert (fit.coef == 0).any()


@pytest.mark.parametrize("fn", [TF.ridge, TF.linear_regression, TF.lasso])
def test_batch_and_targets_equal_loops(fn):
    B, K = 3, 4
    problems = [problem(s, K=K) for s in range(B)]
    X = torch.tensor(np.stack([p[0] for p in problems]))
    Y = torch.tensor(np.stack([p[1] for p in problems]))
    W = torch.tensor(np.stack([p[2] for p in problems]))
    batched = fn(X, Y, W)
    assert batched.coef.shape == (B, K, X.shape[-1])
    for b in range(B):
        for k in range(K):
            single = fn(X[b], Y[b, :, k], W[b])
            torch.testing.assert_close(batched.coef[b, k], single.coef, atol=1e-10, rtol=0)
            torch.testing.assert_close(batched.intercept[b, k], single.intercept, atol=1e-10, rtol=0)
            torch.testing.assert_close(batched.score[b, k], single.score, atol=1e-10, rtol=0)


def test_weighted_r2_matches_sklearn_including_constant_targets():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3))
    pred = y + 0.1 * rng.normal(size=(50, 3))
    w = rng.uniform(size=50)
    y[:, 2] = 1.0
    pred[:, 2] = 1.0
    ours = TF.weighted_r2(torch.tensor(y), torch.tensor(pred), torch.tensor(w))
    expected = [r2_score(y[:, k], pred[:, k], sample_weight=w) for k in range(3)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))
    pred[:, 2] = 2.0
    ours = TF.weighted_r2(torch.tensor(y), torch.tensor(pred), torch.tensor(w))
    assert ours[2] == r2_score(y[:, 2], pred[:, 2], sample_weight=w) == 0.0


def test_singular_design_solves_with_minimum_norm_and_warns():
    X, y, w = problem(1, F=5)
    X = np.concatenate([X, X[:, :2]], axis=1)  # duplicated columns: rank-deficient
    expected = LinearRegression().fit(X, y, sample_weight=w)
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        fit = TF.linear_regression(torch.tensor(X), torch.tensor(y), torch.tensor(w), warn_singular=True)
    torch.testing.assert_close(fit.coef, torch.tensor(expected.coef_), atol=1e-6, rtol=0)
    ridge = TF.ridge(torch.tensor(X), torch.tensor(y), torch.tensor(w), alpha=0.0)
    assert torch.isfinite(ridge.coef).all()
    torch.testing.assert_close(ridge.coef, torch.tensor(expected.coef_), atol=1e-6, rtol=0)


def test_ill_conditioned_ridge_is_finite():
    X, y, w = problem(2, F=6)
    X[:, 1] = X[:, 0] + 1e-12
    fit = TF.ridge(torch.tensor(X), torch.tensor(y), torch.tensor(w), alpha=1e-8)
    assert torch.isfinite(fit.coef).all() and torch.isfinite(fit.score).all()


def test_output_dtype_follows_targets(dtype):
    X, y, w = problem(0)
    fit = TF.ridge(torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype), torch.tensor(w, dtype=dtype))
    assert fit.coef.dtype == dtype


def test_ridge_gradcheck():
    X, y, w = problem(3, n=30, F=4)
    X = torch.tensor(X)
    w = torch.tensor(w)
    y = torch.tensor(y, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: TF.ridge(X, t, w, alpha=0.5).coef, (y,))
    assert torch.autograd.gradcheck(lambda t: TF.linear_regression(X, t, w).coef, (y,))


@pytest.mark.parametrize("model,ref", [
    (lambda: models.Ridge(alpha=2.0), lambda: Ridge(alpha=2.0)),
    (lambda: models.LinearRegression(), lambda: LinearRegression()),
    (lambda: models.Lasso(alpha=0.01), lambda: Lasso(alpha=0.01, tol=1e-14, max_iter=100_000)),
])
def test_models_fit_dataloader_like_captum(model, ref):
    from torch.utils.data import DataLoader, TensorDataset

    X, y, w = problem(5)
    data = TensorDataset(torch.tensor(X), torch.tensor(y), torch.tensor(w))
    m = model()
    stats = m.fit(DataLoader(data, batch_size=40))  # several batches, concatenated as Captum does
    assert "train_time" in stats
    expected = ref().fit(X, y, sample_weight=w)
    assert m.representation().shape == (1, X.shape[1])
    torch.testing.assert_close(m.representation()[0], torch.tensor(expected.coef_), atol=1e-6, rtol=0)
    torch.testing.assert_close(m.bias()[0], torch.tensor(expected.intercept_, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(m(torch.tensor(X[:3]))[:, 0], torch.tensor(expected.predict(X[:3])), atol=1e-6, rtol=0)


def test_errors():
    X = torch.rand(10, 3)
    with pytest.raises(ValueError, match="expected alpha >= 0, got -1"):
        TF.ridge(X, X.sum(-1), alpha=-1)
    with pytest.raises(ValueError, match="expected alpha >= 0, got -1"):
        models.Lasso(alpha=-1)
    with pytest.raises(ValueError, match=r"expected y of shape \(\.\.\., 10, K\)"):
        TF.ridge(X, torch.rand(9))
    with pytest.raises(ValueError, match=r"expected sample_weight of shape \(\.\.\., 10\)"):
        TF.lasso(X, X.sum(-1), torch.rand(4))
    with pytest.raises(ValueError, match=r"expected X of shape \(\.\.\., n, F\)"):
        TF.ridge(torch.rand(10), torch.rand(10))
    with pytest.raises(RuntimeError, match="has not been fitted"):
        models.Ridge().representation()
    with pytest.raises(ValueError, match="differentiable=True needs .* got Lasso"):
        models.Lasso().fit_tensors(X, X.sum(-1), differentiable=True)


@pytest.mark.parametrize("design", ["full_rank", "constant_column", "duplicate_columns"])
def test_sync_free_linear_regression_equals_the_pseudo_inverse(design):
    g = torch.Generator().manual_seed(5)
    X = torch.bernoulli(torch.full((3, 200, 8), 0.5), generator=g).double()
    if design == "constant_column":
        X[..., 2] = 1.0
    elif design == "duplicate_columns":
        X[..., 5] = X[..., 1]
    y = torch.randn(3, 200, 2, generator=g, dtype=torch.float64)
    w = torch.rand(3, 200, generator=g, dtype=torch.float64)
    want = TF.linear_regression(X, y, w)
    got = TF.linear_regression(X, y, w, sync_free=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)


def test_sync_free_lasso_equals_the_checked_lasso():
    # sync_free=True: a Gershgorin step (no eigvalsh) and no convergence checks; with enough
    # iterations the exact polish lands on the same solution.
    g = torch.Generator().manual_seed(9)
    X = torch.bernoulli(torch.full((3, 400, 12), 0.5), generator=g).double()
    y = X @ torch.randn(3, 12, 2, generator=g, dtype=torch.float64) + 0.1 * torch.randn(3, 400, 2, generator=g, dtype=torch.float64)
    w = torch.rand(3, 400, generator=g, dtype=torch.float64)
    want = TF.lasso(X, y, w, alpha=0.05)
    got = TF.lasso(X, y, w, alpha=0.05, max_iter=1000, sync_free=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.1, 0.5])
def test_lasso_equals_scikit_learn_over_many_problems(alpha):
    """The active-set solve (and its FISTA fallback where it does not certify) is the lasso optimum."""
    g = np.random.default_rng(int(alpha * 1000))
    B, n, F = 6, 300, 12
    X = (g.random((B, n, F)) > 0.5).astype(float)
    y = np.einsum("bnf,bf->bn", X, g.normal(size=(B, F))) + 0.5 * X[..., 0] * X[..., 1] + 0.1 * g.normal(size=(B, n))
    w = g.random((B, n)) + 0.1
    fit = TF.lasso(torch.tensor(X), torch.tensor(y), torch.tensor(w), alpha=alpha)
    for b in range(B):
        ref = Lasso(alpha=alpha, tol=1e-14, max_iter=100_000).fit(X[b], y[b], sample_weight=w[b])
        np.testing.assert_allclose(fit.coef[b].numpy(), ref.coef_, atol=1e-8)
        np.testing.assert_allclose(float(fit.intercept[b]), ref.intercept_, atol=1e-8)


def test_lasso_active_set_certifies_lime_problems_without_iterating():
    """With Lime's alpha the solve needs a few exact solves, not hundreds of proximal steps."""
    from torchlime.functional import surrogate as S

    g = torch.Generator().manual_seed(0)
    X = torch.bernoulli(torch.full((4, 1000, 64), 0.5), generator=g)
    y = X @ torch.randn(4, 64, 1, generator=g)
    m = TF.weighted_moments(X, y, torch.rand(4, 1000, generator=g))
    scale = m.weight_sum[..., None, None]
    beta, certified = S._lasso_active_set(m.gram / scale, m.cross / scale, 0.01)
    assert bool(certified.all())


@pytest.mark.parametrize("name,ref,ours", REFERENCES, ids=[r[0] for r in REFERENCES])
def test_rows_streamed_in_chunks_equal_sklearn(name, ref, ours, monkeypatch):
    """The normal equations are summed a chunk of rows at a time (memory O(chunk F), not O(n F)
    in float64): with chunks of 7 rows the fit is still scikit-learn's."""
    from torchlime.functional import _linalg

    monkeypatch.setattr(_linalg, "_CPU_BLOCK_BYTES", 7 * 10 * 8)
    X, y, w = problem(5, n=150)
    expected = ref().fit(X, y, sample_weight=w)
    fit = ours(torch.tensor(X), torch.tensor(y), torch.tensor(w))
    torch.testing.assert_close(fit.coef, torch.tensor(expected.coef_), atol=1e-6, rtol=0)
    torch.testing.assert_close(fit.score, torch.tensor(expected.score(X, y, sample_weight=w), dtype=torch.float64),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("fn", [TF.ridge, TF.linear_regression, TF.lasso])
def test_bool_and_float32_masks_fit_as_float64(fn):
    """Masks are fitted in their own dtype (no float64 copy of the design): the same fit."""
    X, y, w = problem(2)
    y64, w64 = torch.tensor(y), torch.tensor(w)
    reference = fn(torch.tensor(X), y64, w64)
    for X_as in (torch.tensor(X).bool(), torch.tensor(X).float(), torch.tensor(X).to(torch.uint8)):
        fit = fn(X_as, y64, w64)
        for got, want in zip(fit, reference):
            torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


def test_constant_column_and_large_offset_moments_exact():
    """Shifting by row 0 keeps a constant column's spread exactly 0 and a large offset accurate."""
    X, y, w = problem(3)
    X[:, 2] = 1.0
    fit = TF.ridge(torch.tensor(X), torch.tensor(y + 1e6), torch.tensor(w), alpha=1.0)
    expected = Ridge(alpha=1.0).fit(X, y + 1e6, sample_weight=w)
    assert fit.coef[2] == 0
    torch.testing.assert_close(fit.coef, torch.tensor(expected.coef_), atol=1e-6, rtol=0)


FITS = [TF.ridge, TF.linear_regression, TF.lasso]


@pytest.mark.parametrize("fn", FITS)
def test_bad_data_named_before_fitting(fn):
    """NaN or inf in X or y, negative or non-finite weights and a problem with no weight give
    a clear error naming the argument and where, before any fitting."""
    X, y, w = (torch.tensor(a) for a in problem(0))
    with pytest.raises(ValueError, match=r"expected finite X, got NaN or inf in the rows at sample \(3,\)"):
        fn(X.index_put((torch.tensor(3), torch.tensor(1)), torch.tensor(float("nan"), dtype=X.dtype)), y, w)
    with pytest.raises(ValueError, match=r"expected finite y, got NaN or inf at sample \(7,\)"):
        fn(X, y.index_put((torch.tensor(7),), torch.tensor(float("inf"), dtype=y.dtype)), w)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"expected finite, non-negative sample_weight, got bad ones at sample \(2,\)"):
            fn(X, y, w.index_put((torch.tensor(2),), torch.tensor(bad, dtype=w.dtype)))
    with pytest.raises(ValueError, match=r"expected sample_weight with a positive entry in every problem, "
                                         r"got all zeros for the problem"):
        fn(X, y, torch.zeros_like(w))
    # a batch names the problem
    W = torch.stack([w, torch.zeros_like(w), w])
    with pytest.raises(ValueError, match=r"got all zeros for \[\(1,\)\]"):
        fn(X, y, W)
    sklearn_like = {TF.ridge: Ridge(), TF.linear_regression: LinearRegression(), TF.lasso: Lasso()}[fn]
    X_nan = X.numpy().copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # scikit-learn refuses NaN data too
        sklearn_like.fit(X_nan, y.numpy(), sample_weight=w.numpy())


@pytest.mark.parametrize("fn", FITS)
def test_sync_free_fits_do_not_check(fn):
    """``sync_free`` reads nothing on the host: bad data flows through as NaN (training loops)."""
    X, y, w = (torch.tensor(a) for a in problem(0))
    X[3, 1] = float("nan")
    fit = fn(X, y, w, sync_free=True)
    assert torch.isnan(fit.coef).any()


@pytest.mark.parametrize("name,ref,ours", REFERENCES[:3], ids=[r[0] for r in REFERENCES[:3]])
def test_without_intercept_equals_sklearn(name, ref, ours):
    """Moments taken without centring: coefficients and R^2 (still about the weighted mean) as
    scikit-learn's ``fit_intercept=False``."""
    X, y, w = problem(6)
    estimator = ref().set_params(fit_intercept=False).fit(X, y, sample_weight=w)
    fn = {"ridge": lambda *a: TF.ridge(*a, alpha=1.0, fit_intercept=False),
          "ridge_alpha0": lambda *a: TF.ridge(*a, alpha=0.0, fit_intercept=False),
          "linear": lambda *a: TF.linear_regression(*a, fit_intercept=False)}[name]
    fit = fn(torch.tensor(X), torch.tensor(y), torch.tensor(w))
    torch.testing.assert_close(fit.coef, torch.tensor(estimator.coef_), atol=1e-6, rtol=0)
    torch.testing.assert_close(fit.score, torch.tensor(estimator.score(X, y, sample_weight=w), dtype=torch.float64),
                               atol=1e-6, rtol=0)
