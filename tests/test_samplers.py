"""Samplers (functional.sampling.MaskSampler and sampler= on Lime/KernelShap/LimeBase): the
masks have the intended marginals and structure, the same generator gives the same masks,
rounds continue one design, and KernelSHAP with every sampler converges to the exact Shapley
values computed by enumeration."""

import itertools
import math

import pytest
import torch

import torchlime
from torchlime import functional as TF
from torchlime.functional import LIME_SAMPLERS, SAMPLERS, MaskSampler, sample_masks
from torchlime.models import LinearRegression

KINDS = [("lime", s) for s in LIME_SAMPLERS] + [("kernel_shap", s) for s in SAMPLERS]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rows_of(masks):
    return [tuple(int(v) for v in r) for r in masks.tolist()]


# -- structure and marginals ----------------------------------------------------------------


@pytest.mark.parametrize("kind,sampler", KINDS)
def test_same_generator_same_masks_and_shapes(kind, sampler):
    run = lambda s: sample_masks(40, 7, sampler=sampler, kind=kind, batch_shape=(3,), generator=gen(s))  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert a.masks.shape == (3, 40, 7) and set(a.masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.masks, b.masks) and not torch.equal(a.masks, c.masks)
    if sampler in ("leverage", "hybrid"):
        assert a.sample_weight.shape == (3, 40) and torch.equal(a.sample_weight, b.sample_weight)
        assert (a.sample_weight > 0).all()
    else:
        assert a.sample_weight is None
    if kind == "kernel_shap":
        assert (a.masks[:, 0] == 1).all() and (a.masks[:, 1] == 0).all()


def test_iid_is_todays_draws():
    for kind, fn in (("lime", TF.bernoulli_masks), ("kernel_shap", TF.kernel_shap_masks)):
        d = sample_masks(30, 6, kind=kind, batch_shape=(2,), generator=gen(3))
        assert torch.equal(d.masks, fn(30, 6, batch_shape=(2,), generator=gen(3)))
    d = sample_masks(30, 6, first_row_ones=True, generator=gen(3))
    assert torch.equal(d.masks, TF.bernoulli_masks(30, 6, first_row_ones=True, generator=gen(3)))


@pytest.mark.parametrize("kind", ["lime", "kernel_shap"])
def test_paired_rows_are_complements(kind):
    m = sample_masks(41, 9, sampler="paired", kind=kind, batch_shape=(2,), generator=gen()).masks
    body = m[:, 2:] if kind == "kernel_shap" else m
    pairs = body[:, : body.shape[1] // 2 * 2].reshape(2, -1, 2, 9)
    assert torch.equal(pairs[:, :, 0], 1 - pairs[:, :, 1])
    if kind == "lime":  # every column of complete pairs is exactly half on
        assert torch.equal(pairs.mean(dim=(1, 2)), torch.full((2, 9), 0.5))
    first = TF.sample_masks(10, 4, sampler="paired", first_row_ones=True, generator=gen()).masks
    assert first[0].tolist() == [1.0] * 4 and first[1].tolist() == [0.0] * 4
    assert torch.equal(first[2::2], 1 - first[3::2])


def test_paired_kernel_shap_sizes_follow_the_shapley_distribution():
    F = 8
    m = sample_masks(20002, F, sampler="paired", kind="kernel_shap", generator=gen()).masks
    sizes = m[2:].sum(-1).long()
    mass = TF.shapley_size_mass(F)[1:]
    observed = torch.bincount(sizes, minlength=F)[1:].double() / sizes.numel()
    torch.testing.assert_close(observed, mass / mass.sum(), atol=0.01, rtol=0)  # 20k draws: sd < 0.004


@pytest.mark.parametrize("F", [3, 10, 33])
def test_sobol_columns_are_balanced_at_powers_of_two(F):
    for n in (8, 64, 256):
        m = sample_masks(n, F, sampler="sobol", batch_shape=(3,), generator=gen(n)).masks
        assert torch.equal(m.mean(1), torch.full((3, F), 0.5))
    m = sample_masks(100, F, sampler="sobol", batch_shape=(3,), generator=gen()).masks
    assert (m.mean(1) - 0.5).abs().max() <= 0.04  # between powers of two: nearly balanced
    assert not torch.equal(m[0], m[1])  # each instance its own scrambled sequence


def test_sobol_kernel_shap_sizes_are_stratified():
    F = 10
    n = 2 + 1024
    m = sample_masks(n, F, sampler="sobol", kind="kernel_shap", generator=gen()).masks
    sizes = m[2:].sum(-1).long()
    mass = TF.shapley_size_mass(F)[1:]
    counts = torch.bincount(sizes, minlength=F)[1:].double()
    # Quasi-random sizes: every count within 1 of its expectation (iid draws: sd ~ 10).
    assert (counts - 1024 * mass / mass.sum()).abs().max() <= 1.0


def test_leverage_sizes_follow_their_distribution_without_repeats():
    F = 12
    s = MaskSampler("leverage", F, batch_shape=(2,), kind="kernel_shap", generator=gen())
    parts = [s.draw(n) for n in (40, 37, 124, 201)]  # odd rounds too
    m = torch.cat([p.masks for p in parts], 1)
    assert m.shape == (2, 402, F)
    for b in range(2):
        assert len(set(rows_of(m[b]))) == 402  # no coalition twice, across rounds
    sizes = m[0, 2:].sum(-1).long()
    counts = torch.bincount(sizes, minlength=F)[1:]
    # Leverage scores 1 / C(F, s): every size gets the same number of rows, or all of its
    # coalitions when it has fewer (sizes 1 and F-1: 12 each).
    caps = torch.tensor([math.comb(F, k) for k in range(1, F)])
    full = counts == caps
    assert full.tolist() == [True] + [False] * (F - 3) + [True]
    assert counts[~full].max() - counts[~full].min() <= 1 and (counts[~full] > caps[full].max()).all()
    # Pairs: rows after the fixed two come as (z, 1 - z), also across an odd round's end.
    body = m[:, 2:]
    assert torch.equal(body[:, 0::2], 1 - body[:, 1::2])
    # The last weights: the kernel mass of size s shared by the rows of that size, mean 1.
    w = parts[-1].sample_weight
    assert w.shape == (2, 402) and torch.equal(w[:, :2], torch.ones(2, 2, dtype=w.dtype))
    mass = TF.shapley_size_mass(F)
    expected = mass[sizes] / torch.bincount(sizes, minlength=F).double()[sizes]
    torch.testing.assert_close(w[0, 2:], expected * 400 / mass.sum())
    assert s.remaining == 2**F - 402


def test_leverage_caps_small_sizes_and_enumerates_everything():
    F = 6
    d = sample_masks(2**F, F, sampler="leverage", kind="kernel_shap", generator=gen())
    assert len(set(rows_of(d.masks))) == 2**F
    kernel = TF.shapley_kernel(d.masks.double())[2:]
    w = d.sample_weight[2:]
    torch.testing.assert_close(w / w.sum(), kernel / kernel.sum())  # exact kernel weights
    s = MaskSampler("leverage", F, kind="kernel_shap", generator=gen())
    s.draw(60)
    with pytest.raises(ValueError, match=r"expected at most 4 more masks from sampler='leverage'"):
        s.draw(5)


def test_hybrid_enumerates_extreme_sizes_first_round_only():
    F = 10
    s = MaskSampler("hybrid", F, batch_shape=(2,), kind="kernel_shap", generator=gen())
    first = s.draw(2 + 2 * F + 2 * F)  # room for sizes 1 and F-1, and 2F rows to sample the rest
    head = first.masks[0, 2 : 2 + 2 * F]
    assert sorted(rows_of(head)) == sorted(
        rows_of(torch.cat([torch.eye(F), 1 - torch.eye(F)]))
    )
    assert torch.equal(first.masks[0, 2 : 2 + 2 * F], first.masks[1, 2 : 2 + 2 * F])
    rest = first.masks[:, 2 + 2 * F :].sum(-1)
    assert ((rest >= 2) & (rest <= F - 2)).all()
    second = s.draw(30)
    sizes = second.masks.sum(-1)
    assert ((sizes >= 2) & (sizes <= F - 2)).all()  # no more enumeration
    w = second.sample_weight[0]
    mass = TF.shapley_size_mass(F)
    kernel = TF.shapley_kernel(head.double())
    scale = (first.masks.shape[1] + 30 - 2) / mass.sum()
    torch.testing.assert_close(w[2 : 2 + 2 * F], kernel * scale)
    sampled = torch.full((2 * F + 30,), float(mass[2 : F - 1].sum()) / (2 * F + 30), dtype=torch.float64)
    torch.testing.assert_close(w[2 + 2 * F :], sampled * scale)
    # A bigger first round enumerates sizes 2 and F-2 as well.
    big = sample_masks(2 + 2 * F + 2 * math.comb(F, 2) + 2 * F, F, sampler="hybrid", kind="kernel_shap", generator=gen())
    sizes = big.masks[2 : 2 + 2 * F + 2 * math.comb(F, 2)].sum(-1).long()
    assert torch.bincount(sizes, minlength=F + 1).tolist()[1:3] == [F, math.comb(F, 2)]


def test_rounds_concatenated_equal_one_draw_where_the_design_allows():
    for kind in ("lime", "kernel_shap"):  # Sobol continues its sequences, any batch
        s = MaskSampler("sobol", 5, batch_shape=(3,), kind=kind, generator=gen())
        rounds = torch.cat([s.draw(n).masks for n in (7, 16, 9)], 1)
        assert torch.equal(rounds, sample_masks(32, 5, sampler="sobol", kind=kind, batch_shape=(3,), generator=gen()).masks)
    for sampler in ("iid", "paired"):  # one instance, even rounds: the same draws in the same order
        s = MaskSampler(sampler, 6, generator=gen())
        rounds = torch.cat([s.draw(n).masks for n in (8, 4, 12)])
        assert torch.equal(rounds, sample_masks(24, 6, sampler=sampler, generator=gen()).masks)
    assert s.drawn == 24 and s.remaining is None


def test_sampler_errors():
    with pytest.raises(ValueError, match=r"expected sampler in \['iid', 'paired', 'sobol'\], got 'leverage'"):
        MaskSampler("leverage", 4)
    with pytest.raises(ValueError, match=r"expected sampler in \['iid', 'paired', 'sobol', 'leverage', 'hybrid'\], got 'lhs'"):
        MaskSampler("lhs", 4, kind="kernel_shap")
    with pytest.raises(ValueError, match=r"expected kind in \['lime', 'kernel_shap'\], got 'shap'"):
        MaskSampler("iid", 4, kind="shap")
    with pytest.raises(ValueError, match="expected num_features >= 1, got 0"):
        MaskSampler("iid", 0)
    with pytest.raises(ValueError, match="expected n >= 1, got 0"):
        MaskSampler("iid", 3).draw(0)
    with pytest.raises(ValueError, match="expected n_samples >= 2, got 1"):
        sample_masks(1, 3)
    with pytest.raises(ValueError, match="expected num_features <= 21201 for sampler='sobol'"):
        MaskSampler("sobol", 21202)
    with pytest.raises(ValueError, match=r"expected at most 8 masks from sampler='hybrid' with 3 features"):
        sample_masks(9, 3, sampler="hybrid", kind="kernel_shap")


# -- KernelSHAP with every sampler converges to the exact Shapley values ----------------------

F_EXACT = 8


def shapley_problem():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(F_EXACT, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def forward(z):  # nonlinear, with a pairwise and a three-way interaction
        return net(z)[:, 0] + 0.8 * z[:, 0] * z[:, 1] - 0.5 * z[:, 2] * z[:, 3] * z[:, 4]

    x = torch.randn(2, F_EXACT, dtype=torch.float64)
    coalitions = torch.tensor(list(itertools.product([0.0, 1.0], repeat=F_EXACT)), dtype=torch.float64)
    phi = torch.zeros(2, F_EXACT, dtype=torch.float64)
    with torch.no_grad():
        for b in range(2):
            value = {row: v for row, v in zip(rows_of(coalitions), forward(coalitions * x[b]).tolist())}
            for z, v in value.items():
                s = sum(z)
                for i in range(F_EXACT):
                    if not z[i]:
                        weight = math.factorial(s) * math.factorial(F_EXACT - s - 1) / math.factorial(F_EXACT)
                        phi[b, i] += weight * (value[z[:i] + (1,) + z[i + 1 :]] - v)
    return forward, x, phi


def mse(forward, x, phi, sampler, n, seeds):
    ks = torchlime.KernelShap(forward)
    errors = [
        ((ks.attribute(x, n_samples=n, perturbations_per_eval=n, sampler=sampler, generator=gen(s)) - phi) ** 2).mean()
        for s in seeds
    ]
    return float(torch.stack(errors).mean())


def test_every_sampler_converges_to_exact_shapley_values():
    forward, x, phi = shapley_problem()
    for sampler in ("iid", "paired", "sobol"):
        few, many = mse(forward, x, phi, sampler, 100, range(4)), mse(forward, x, phi, sampler, 2000, range(4))
        assert many < few / 5 and many < 2e-4, (sampler, few, many)
    for sampler in ("leverage", "hybrid"):  # without replacement / enumerated: exact with all 2^F rows
        assert mse(forward, x, phi, sampler, 2**F_EXACT, [0]) < 1e-12
        assert mse(forward, x, phi, sampler, 100, range(4)) < mse(forward, x, phi, "iid", 100, range(4)) / 5
    assert mse(forward, x, phi, "paired", 100, range(4)) < mse(forward, x, phi, "iid", 100, range(4))


# -- sampler= on the explainers ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", LIME_SAMPLERS)
def test_lime_samplers_recover_a_linear_model(sampler):
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 1)
    x = torch.randn(3, 6)
    lime = torchlime.Lime(lambda z: lin(z)[:, 0], interpretable_model=LinearRegression())
    attr = lime.attribute(x, n_samples=64, perturbations_per_eval=16, sampler=sampler, generator=gen())
    torch.testing.assert_close(attr, (lin.weight * x).detach(), atol=1e-4, rtol=0)


def test_sampler_iid_is_the_default_on_both_streams():
    net = torch.nn.Linear(5, 2)
    x = torch.randn(2, 5)
    for cls in (torchlime.Lime, torchlime.KernelShap):
        a = cls(net).attribute(x, target=0, n_samples=30, generator=gen(4))
        b = cls(net).attribute(x, target=0, n_samples=30, generator=gen(4), sampler="iid")
        assert torch.equal(a, b)
        torch.manual_seed(2)
        a = cls(net).attribute(x, target=0, n_samples=30)
        torch.manual_seed(2)
        b = cls(net).attribute(x, target=0, n_samples=30, sampler="iid")
        assert torch.equal(a, b)


def test_kernel_shap_samplers_weight_the_fit():
    """The sampler's importance weights reach the fit: with them leverage is exact at 2^F rows."""
    forward, x, phi = shapley_problem()
    ks = torchlime.KernelShap(forward)
    for sampler in ("leverage", "hybrid"):  # chunked forwards: the weights follow their rows
        fit = ks.attribute(x, n_samples=2**F_EXACT, perturbations_per_eval=50, sampler=sampler, generator=gen(),
                           return_fit=True)
        torch.testing.assert_close(fit.coef, phi, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"expected sampler in \['iid', 'paired', 'sobol'\], got 'hybrid'"):
        torchlime.Lime(forward).attribute(x, sampler="hybrid")


def test_limebase_samplers_over_a_user_perturb_func():
    w_true = torch.tensor([1.0, -2.0, 0.5, 3.0])
    calls, masks_seen = [], []

    @torchlime.batched
    def perturb(x, *, n_samples, generator=None, **kw):
        calls.append(n_samples)
        return torch.bernoulli(torch.full((n_samples, 4), 0.5), generator=generator)

    @torchlime.batched
    def to_input(z, x, **kw):
        masks_seen.append(z)
        return z * x

    @torchlime.batched
    def sim(x, xp, z, **kw):
        return torch.ones(z.shape[:-1]).reshape(-1)

    lb = torchlime.LimeBase(lambda v: v @ w_true, LinearRegression(), sim, perturb, True, to_input, None)
    x = torch.ones(1, 4)
    coef = lb.attribute(x, n_samples=21, perturbations_per_eval=21, sampler="paired", generator=gen())
    torch.testing.assert_close(coef, w_true.reshape(1, 4), atol=1e-5, rtol=0)
    z = masks_seen[-1]
    assert calls == [11] and z.shape == (21, 4) and torch.equal(z[0:20:2], 1 - z[1:20:2])
    calls.clear()
    coef = lb.attribute(x, n_samples=16, perturbations_per_eval=16, sampler="sobol", generator=gen(), num_interp_features=4)
    assert calls == [] and torch.equal(masks_seen[-1].mean(0), torch.full((4,), 0.5))
    torch.testing.assert_close(coef, w_true.reshape(1, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"expected num_interp_features=F among the keyword arguments with sampler='sobol'"):
        lb.attribute(x, n_samples=16, sampler="sobol")
    with pytest.raises(ValueError, match=r"expected sampler in \['iid', 'paired', 'sobol'\], got 'leverage'"):
        lb.attribute(x, n_samples=16, sampler="leverage")
    with pytest.raises(ValueError, match="expected either masks= or sampler=, got both"):
        lb.attribute(x, n_samples=16, sampler="paired", masks=torch.ones(16, 4))

    @torchlime.batched
    def soft(x, *, n_samples, generator=None, **kw):
        return torch.full((n_samples, 4), 0.5)

    lb.perturb_func = soft
    with pytest.raises(ValueError, match=r"sampler='paired' needs binary ones"):
        lb.attribute(x, n_samples=8, sampler="paired")
    per_sample = torchlime.LimeBase(lambda v: v @ w_true, LinearRegression(), lambda *a, **k: 1.0,
                                    lambda x, **kw: torch.ones(1, 4), True, lambda z, x, **kw: z * x, None)
    with pytest.raises(ValueError, match="sampler=, .* need batched callables"):
        per_sample.attribute(x, n_samples=8, sampler="paired")


def test_samplers_on_the_device(device):
    for kind, sampler in KINDS:
        g = torch.Generator(device=device).manual_seed(0)
        d = sample_masks(20, 5, sampler=sampler, kind=kind, batch_shape=(2,), device=device, generator=g)
        assert d.masks.device.type == device.type
        assert d.sample_weight is None or d.sample_weight.device.type == device.type
    forward, x, phi = shapley_problem()
    net_device = lambda z: forward(z.cpu()).to(z.device)  # noqa: E731 - the model stays on the CPU
    attr = torchlime.KernelShap(net_device).attribute(
        x.to(device), n_samples=2**F_EXACT, perturbations_per_eval=64, sampler="hybrid",
        generator=torch.Generator(device=device).manual_seed(0),
    )
    torch.testing.assert_close(attr.cpu(), phi, atol=1e-6, rtol=0)
