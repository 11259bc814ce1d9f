"""Standard errors of the surrogate match the spread of the coefficients over redraws of the masks."""

import pytest
import torch

from torchlime.functional import linear_regression, ridge
from torchlime.functional.uncertainty import sandwich_stderr

F, N, R = 5, 160, 400
W_TRUE = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5], dtype=torch.float64)


def model(X):
    """Linear plus interactions: the surrogate's residuals are what makes LIME vary."""
    return (X @ W_TRUE + 1.5 * X[..., 0] * X[..., 1] - X[..., 2] * X[..., 3] * X[..., 4]).unsqueeze(-1)


def kernel(X):
    return torch.exp(-((1 - X.mean(-1)) ** 2) / 0.5)


@pytest.fixture(scope="module")
def draws():
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((R, N, F), 0.5, dtype=torch.float64), generator=g)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_stderr_matches_a_monte_carlo_estimate(draws, alpha):
    X = draws
    y, w = model(X), kernel(X)
    fit = ridge(X, y, w, alpha=alpha) if alpha else linear_regression(X, y, w)
    se = sandwich_stderr(X, y, w, fit.coef, fit.intercept, alpha=alpha)
    spread = fit.coef.std(0)  # over R independent draws of N masks
    # R = 400 draws: the spread itself is known to about 1 / sqrt(2 R) = 3.5%.
    torch.testing.assert_close(se.mean(0), spread, rtol=0.12, atol=0)


def test_paired_masks_count_a_pair_as_one_draw(draws):
    half = draws[:, : N // 2]
    X = torch.stack([half, 1 - half], 2).reshape(R, N, F)  # each mask then its complement
    y, w = model(X), kernel(X)
    fit = linear_regression(X, y, w)
    spread = fit.coef.std(0)
    paired = sandwich_stderr(X, y, w, fit.coef, fit.intercept, cluster=torch.arange(N) // 2)
    torch.testing.assert_close(paired.mean(0), spread, rtol=0.12, atol=0)
    naive = sandwich_stderr(X, y, w, fit.coef, fit.intercept)
    assert (naive.mean(0) > 1.3 * spread).all()  # pairs are not independent rows


def test_fixed_rows_and_inactive_features(draws):
    X = draws[:3]
    y, w = model(X), kernel(X)
    fit = linear_regression(X, y, w)
    se = sandwich_stderr(X, y, w, fit.coef, fit.intercept)
    # Rows enumerated exactly carry no sampling variance: fixing them all gives 0.
    assert (sandwich_stderr(X, y, w, fit.coef, fit.intercept, cluster=torch.full((N,), -1)) == 0).all()
    active = torch.tensor([True, True, False, True, False]).expand(3, 1, F)
    masked = sandwich_stderr(X, y, w, fit.coef, fit.intercept, active=active)
    assert (masked[..., ~active[0, 0]] == 0).all() and (masked[..., active[0, 0]] > 0).all()
    # Zero-weight rows are not samples: appending them changes nothing.
    X2, y2, w2 = torch.cat([X, X], 1), torch.cat([y, y], 1), torch.cat([w, torch.zeros_like(w)], 1)
    torch.testing.assert_close(sandwich_stderr(X2, y2, w2, fit.coef, fit.intercept), se)
    # Chunking is an implementation detail.
    torch.testing.assert_close(sandwich_stderr(X, y, w, fit.coef, fit.intercept, chunk=7), se)


def test_batch_equals_loop(draws):
    X = draws[:3]
    y, w = model(X), kernel(X)
    fit = ridge(X, y, w, alpha=1.0)
    batched = sandwich_stderr(X, y, w, fit.coef, fit.intercept, alpha=1.0)
    for b in range(3):
        torch.testing.assert_close(sandwich_stderr(X[b], y[b], w[b], fit.coef[b], fit.intercept[b], alpha=1.0), batched[b])


def test_errors():
    X = torch.ones(10, 3)
    with pytest.raises(ValueError, match=r"expected cluster ids of shape \(10,\) \(one per sample\), got shape \(9,\)"):
        sandwich_stderr(X, torch.ones(10, 1), torch.ones(10), torch.ones(1, 3), torch.ones(1), cluster=torch.arange(9))
    with pytest.raises(ValueError, match=r"expected X \(\.\.\., n, F\), y \(\.\.\., n, K\) and coef \(\.\.\., K, F\) to match"):
        sandwich_stderr(X, torch.ones(9, 1), torch.ones(10), torch.ones(1, 3), torch.ones(1))


def test_chunks_never_split_a_draw(draws):
    half = draws[:2, : N // 2]
    X = torch.stack([half, 1 - half], 2).reshape(2, N, F)
    y, w = model(X), kernel(X)
    fit = linear_regression(X, y, w)
    cluster = torch.arange(N) // 2
    cluster[:3] = -1  # a fixed head: the first pair's mask, the whole first pair and half the second
    whole = sandwich_stderr(X, y, w, fit.coef, fit.intercept, cluster=cluster)
    for chunk in (1, 2, 7, 33):
        torch.testing.assert_close(sandwich_stderr(X, y, w, fit.coef, fit.intercept, cluster=cluster, chunk=chunk), whole)


def test_sampler_clusters_give_the_right_spread():
    """Paired masks from the sampler, their cluster ids, and the spread over 300 seeds."""
    from torchlime.functional import MaskSampler

    coefs, ses = [], []
    for seed in range(300):
        s = MaskSampler("paired", F, first_row_ones=True, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        X = s.draw(N).masks
        y, w = model(X), kernel(X)
        fit = linear_regression(X, y, w)
        coefs.append(fit.coef)
        ses.append(sandwich_stderr(X, y, w, fit.coef, fit.intercept, cluster=s.clusters))
    torch.testing.assert_close(torch.stack(ses).mean(0), torch.stack(coefs).std(0), rtol=0.15, atol=0)


@pytest.mark.parametrize("explainer", ["Lime", "KernelShap"])
def test_attribute_computes_stderr_only_when_the_fit_is_returned(explainer, monkeypatch):
    """The standard errors take a second pass over the masks: only ``return_fit=True`` pays it,
    and then the fit carries them."""
    import torchlime
    from torchlime.models import TorchLinearModel

    calls = []
    original = TorchLinearModel.stderr
    monkeypatch.setattr(TorchLinearModel, "stderr", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    model = torch.nn.Linear(6, 2)
    x = torch.randn(2, 6)
    e = getattr(torchlime, explainer)(model)
    attr = e.attribute(x, target=1, n_samples=200, generator=torch.Generator().manual_seed(0))
    assert calls == [] and attr.shape == (2, 6)
    fit = e.attribute(x, target=1, n_samples=200, generator=torch.Generator().manual_seed(0), return_fit=True)
    assert calls == [1] and fit.stderr.shape == (2, 6) and bool((fit.stderr >= 0).all())
    torch.testing.assert_close(fit.coef, attr)
