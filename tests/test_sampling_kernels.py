import math

import numpy as np
import pytest
import torch
from captum.attr._core.lime import get_exp_kernel_similarity_function as captum_kernel
from scipy.special import comb
from sklearn.metrics import pairwise_distances

import torchlime
from torchlime import functional as TF

from .conftest import FakeGenerator


def test_bernoulli_same_seed_same_masks_different_seed_different(device):
    g = lambda s: torch.Generator(device=device).manual_seed(s)  # noqa: E731
    a = TF.bernoulli_masks(50, 7, batch_shape=(3,), device=device, generator=g(1))
    b = TF.bernoulli_masks(50, 7, batch_shape=(3,), device=device, generator=g(1))
    c = TF.bernoulli_masks(50, 7, batch_shape=(3,), device=device, generator=g(2))
    assert a.shape == (3, 50, 7) and a.device.type == device.type
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_bernoulli_first_row_ones_and_rate():
    m = TF.bernoulli_masks(4000, 10, first_row_ones=True, generator=torch.Generator().manual_seed(0))
    assert (m[0] == 1).all()
    assert abs(m[1:].mean().item() - 0.5) < 0.02  # 40k Bernoulli(0.5) draws: sd 0.0025


def test_bernoulli_uses_global_rng_like_captum():
    from captum.attr._core.lime import default_perturb_func

    torch.manual_seed(3)
    ours = TF.bernoulli_masks(20, 6)
    torch.manual_seed(3)
    ref = torch.cat([default_perturb_func(torch.zeros(1), num_interp_features=6) for _ in range(20)])
    assert torch.equal(ours, ref.float())


def test_kernel_shap_masks_structure_and_size_distribution():
    F = 8
    m = TF.kernel_shap_masks(20000, F, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
    assert m.shape == (2, 20000, F)
    assert (m[:, 0] == 1).all() and (m[:, 1] == 0).all()
    sizes = m[:, 2:].sum(-1).flatten().long()
    assert sizes.min() >= 1 and sizes.max() <= F - 1
    k = torch.arange(1, F, dtype=torch.float64)
    expected = (F - 1) / (k * (F - k))
    expected = expected / expected.sum()
    observed = torch.bincount(sizes, minlength=F)[1:].double() / sizes.numel()
    torch.testing.assert_close(observed, expected, atol=0.01, rtol=0)  # 40k draws: sd < 0.003


def test_check_masks_errors():
    with pytest.raises(ValueError, match=r"expected masks of shape \(n, F\) or \(B, n, F\), got shape \(5,\)"):
        TF.check_masks(torch.ones(5))
    with pytest.raises(ValueError, match="expected masks with 4 features"):
        TF.check_masks(torch.ones(5, 3), num_features=4)
    with pytest.raises(ValueError, match=r"expected binary masks \(values 0 or 1\), got 0.5 at index \(0, 1, 2\)"):
        m = torch.ones(5, 3)
        m[1, 2] = 0.5
        TF.check_masks(m)
    with pytest.raises(ValueError, match="expected masks for 2 instances"):
        TF.check_masks(torch.ones(3, 5, 3), batch_size=2)
    with pytest.raises(TypeError, match="expected masks to be a torch.Tensor, got list"):
        TF.check_masks([[1, 0]])
    with pytest.raises(ValueError, match="expected n_samples >= 2 rows in masks, got 1"):
        TF.check_masks(torch.ones(1, 3))


def test_sampling_errors():
    with pytest.raises(ValueError, match="expected n_samples >= 2, got 1"):
        TF.bernoulli_masks(1, 3)
    with pytest.raises(ValueError, match="expected num_features >= 1, got 0"):
        TF.kernel_shap_masks(10, 0)
    with pytest.raises(ValueError, match="expected a torch.Generator on cpu .* got one on cuda"):
        TF.bernoulli_masks(10, 3, device="cpu", generator=FakeGenerator("cuda"))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "hamming"])
def test_distances_match_sklearn(metric):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (40, 9)).astype(float)
    X[0] = 1
    X[5] = 0  # all-zero row: cosine distance 1, as sklearn
    ref = pairwise_distances(X, X[0].reshape(1, -1), metric=metric).ravel()
    ours = TF.pairwise_distance(torch.tensor(X), torch.tensor(X[0]), metric)
    torch.testing.assert_close(ours, torch.tensor(ref), atol=1e-12, rtol=0)


def test_distances_are_batched():
    X = torch.rand(3, 20, 5, dtype=torch.float64)
    ref = X[:, 0]
    batched = TF.pairwise_distance(X, ref, "cosine")
    for b in range(3):
        torch.testing.assert_close(batched[b], TF.pairwise_distance(X[b], ref[b], "cosine"))


def test_lime_kernel_matches_lime_expression():
    d = np.linspace(0, 100, 21)
    width = 25.0
    ref = np.sqrt(np.exp(-(d**2) / width**2))  # lime_text / lime_tabular's kernel
    torch.testing.assert_close(TF.lime_kernel(torch.tensor(d), width), torch.tensor(ref))


@pytest.mark.parametrize("mode", ["cosine", "euclidean"])
def test_exp_kernel_similarity_matches_captum(mode):
    x = torch.randn(1, 3, 7)
    ours = torchlime.get_exp_kernel_similarity_function(mode, 0.7)
    ref = captum_kernel(mode, 0.7)
    for _ in range(5):
        p = x * torch.bernoulli(torch.full_like(x, 0.5))
        assert ours(x, p, None) == pytest.approx(ref(x, p, None), rel=1e-6)
        batched = ours.__torchlime_batched__(x, p, torch.ones(1, 4))
        assert batched.item() == pytest.approx(ref(x, p, None), rel=1e-5)


def test_exp_kernel_values():
    d = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(TF.exp_kernel(d, 2.0), torch.exp(-(d**2) / 8))


def test_shapley_kernel_matches_formula():
    F = 6
    masks = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1] * 6, [0] * 6], dtype=torch.float64)
    w = TF.shapley_kernel(masks, inf_weight=1e6)
    for row, value in zip(masks, w):
        k = int(row.sum())
        expected = 1e6 if k in (0, F) else (F - 1) / (comb(F, k) * k * (F - k))
        assert value.item() == pytest.approx(expected)


def test_kernel_shap_weights():
    masks = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    assert TF.kernel_shap_weights(masks).tolist() == [1e6, 1e6, 1.0]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_masked_input_distance_equals_distance_of_composed_inputs(metric):
    g = torch.Generator().manual_seed(0)
    B, D, F, n = 2, 30, 5, 16
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    base = torch.randn(B, D, generator=g, dtype=torch.float64)
    ids = torch.randint(0, F, (B, D), generator=g)
    z = TF.bernoulli_masks(n, F, batch_shape=(B,), generator=g, dtype=torch.float64)
    z[:, 1] = 0
    composed = torch.where(z.gather(2, ids.unsqueeze(1).expand(B, n, D)).bool(), x.unsqueeze(1), base.unsqueeze(1))
    direct = TF.pairwise_distance(composed, x, metric)
    stats = TF.group_statistics(x, base, ids, F)
    torch.testing.assert_close(TF.masked_input_distance(z, stats, metric), direct, atol=1e-12, rtol=1e-10)


def test_kernel_errors():
    with pytest.raises(ValueError, match="expected kernel_width > 0, got 0"):
        TF.lime_kernel(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="expected metric in"):
        TF.pairwise_distance(torch.zeros(3, 2), torch.zeros(2), "manhattan")
    with pytest.raises(ValueError, match="expected distance_mode 'cosine' or 'euclidean', got 'l1'"):
        torchlime.get_exp_kernel_similarity_function("l1")
    with pytest.raises(ValueError, match="expected metric in"):
        TF.masked_input_distance(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), "hamming")
    assert math.isfinite(TF.lime_kernel(torch.tensor([1e3]), 1.0).item())
