"""torchlime.LimeBase / Lime / KernelShap against Captum on the same masks."""

import pytest
import torch
from captum._utils.models.linear_model import SGDLasso, SkLearnLasso, SkLearnLinearRegression, SkLearnRidge
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Lime as CaptumLime
from captum.attr import LimeBase as CaptumLimeBase

import torchlime
from torchlime import functional as TF
from torchlime.models import Lasso, LinearRegression, Ridge

from .conftest import FakeGenerator


def make_net(seed=0, d_in=8, classes=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, classes))


def replay(masks):
    """A Captum generator perturb_func yielding the given (n, F) masks."""

    def perturb(original, **kwargs):
        for row in masks:
            yield row.reshape(1, -1).long()

    return perturb


@pytest.mark.parametrize(
    "ours,ref", [(lambda: Ridge(alpha=1.0), lambda: SkLearnRidge(alpha=1.0)), (lambda: Lasso(alpha=0.01), lambda: SkLearnLasso(alpha=0.01))]
)
def test_same_masks_same_coefficients_as_captum(ours, ref):
    net = make_net()
    x = torch.randn(1, 8)
    masks = TF.bernoulli_masks(300, 8, generator=torch.Generator().manual_seed(1))
    a = torchlime.Lime(net, interpretable_model=ours(), perturb_func=replay(masks)).attribute(
        x, target=1, n_samples=300, perturbations_per_eval=64, return_input_shape=False
    )
    b = CaptumLime(net, interpretable_model=ref(), perturb_func=replay(masks)).attribute(
        x, target=1, n_samples=300, perturbations_per_eval=64, return_input_shape=False
    )
    assert a.shape == b.shape == (1, 8)
    # Captum fits in float32 through scikit-learn; kernel weights differ in the 7th digit.
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
    c = torchlime.Lime(net, interpretable_model=ours()).attribute(
        x, target=1, masks=masks, n_samples=300, perturbations_per_eval=64, return_input_shape=False
    )
    torch.testing.assert_close(c, a, atol=1e-6, rtol=0)


def test_limebase_generator_perturb_matches_captum_limebase():
    net = make_net()
    x = torch.randn(1, 8)
    masks = TF.bernoulli_masks(200, 8, generator=torch.Generator().manual_seed(4))
    sim = torchlime.get_exp_kernel_similarity_function("euclidean", 2.0)
    transform = torchlime.Lime(net).from_interp_rep_transform
    kw = dict(baselines=0.0, feature_mask=torch.arange(8).reshape(1, 8), num_interp_features=8)
    a = torchlime.LimeBase(net, Ridge(alpha=1.0), sim, replay(masks), True, transform, None).attribute(
        x, target=2, n_samples=200, perturbations_per_eval=50, **kw
    )
    b = CaptumLimeBase(net, SkLearnRidge(alpha=1.0), sim, replay(masks), True, transform, None).attribute(
        x, target=2, n_samples=200, perturbations_per_eval=50, **kw
    )
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_global_seed_reproduces_captum_masks():
    """With no generator, masks come from torch's global RNG in Captum's order."""
    net = make_net()
    x = torch.randn(1, 8)
    torch.manual_seed(11)
    a = torchlime.Lime(net, interpretable_model=Ridge(alpha=1.0)).attribute(x, target=2, n_samples=150, perturbations_per_eval=30)
    torch.manual_seed(11)
    b = CaptumLime(net, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(x, target=2, n_samples=150, perturbations_per_eval=30)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_batch_of_examples_matches_captums_loop_on_same_masks():
    net = make_net()
    x = torch.randn(3, 8)
    masks = TF.bernoulli_masks(150, 8, generator=torch.Generator().manual_seed(1))
    a = torchlime.Lime(net, interpretable_model=Ridge(alpha=1.0)).attribute(
        x, target=[0, 1, 2], masks=masks, perturbations_per_eval=30
    )
    with pytest.warns(UserWarning, match="multiple inputs"):
        b = CaptumLime(net, interpretable_model=SkLearnRidge(alpha=1.0), perturb_func=replay(masks)).attribute(
            x, target=[0, 1, 2], n_samples=150, perturbations_per_eval=30
        )
    assert a.shape == b.shape == (3, 8)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_tuple_inputs_baselines_feature_mask_additional_args_like_captum():
    net = make_net(d_in=6)

    def forward(a, b, scale):
        return net(torch.cat([a, b], 1)) * scale

    x = (torch.randn(2, 4), torch.randn(2, 2))
    baselines = (torch.full((1, 4), 0.5), -1.0)
    feature_mask = (torch.tensor([[0, 0, 1, 2]]), torch.tensor([[3, 3]]))
    masks = TF.bernoulli_masks(120, 4, generator=torch.Generator().manual_seed(5))
    for return_input_shape in (True, False):
        a = torchlime.Lime(forward, interpretable_model=Ridge(alpha=0.5)).attribute(
            x, baselines, target=1, additional_forward_args=(2.0,), feature_mask=feature_mask,
            n_samples=120, perturbations_per_eval=40, return_input_shape=return_input_shape, masks=masks,
        )
        b = CaptumLime(forward, interpretable_model=SkLearnRidge(alpha=0.5), perturb_func=replay(masks)).attribute(
            x, baselines, target=1, additional_forward_args=(2.0,), feature_mask=feature_mask,
            n_samples=120, perturbations_per_eval=40, return_input_shape=return_input_shape,
        )
        if return_input_shape:
            assert isinstance(a, tuple) and [t.shape for t in a] == [t.shape for t in b]
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v, atol=2e-5, rtol=0)
        else:
            torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_tensor_additional_forward_args_follow_their_instance():
    net = make_net()
    x = torch.randn(2, 8)
    offset = torch.tensor([[0.0], [100.0]])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    batched = torchlime.Lime(lambda z, o: net(z) + o, interpretable_model=Ridge()).attribute(
        x, target=0, additional_forward_args=(offset,), n_samples=64, perturbations_per_eval=16, generator=g(), return_fit=True
    )
    masks = TF.bernoulli_masks(64, 8, batch_shape=(2,), generator=g())
    for b in range(2):
        one = torchlime.Lime(lambda z, o: net(z) + o, interpretable_model=Ridge()).attribute(
            x[b : b + 1], target=0, additional_forward_args=(offset[b : b + 1],), masks=masks[b], return_fit=True
        )
        torch.testing.assert_close(batched.intercept[b], one.intercept[0], atol=1e-5, rtol=0)


def test_batch_equals_loop_and_targets_equal_calls():
    net = make_net()
    x = torch.randn(4, 8)
    masks = TF.bernoulli_masks(100, 8, batch_shape=(4,), generator=torch.Generator().manual_seed(2))
    lime = torchlime.Lime(net, interpretable_model=Ridge(alpha=1.0))
    targets = torch.tensor([[0, 2], [1, 0], [2, 1], [0, 1]])
    batched = lime.attribute(x, target=targets, masks=masks, perturbations_per_eval=25, return_fit=True)
    assert batched.coef.shape == (4, 2, 8)
    for b in range(4):
        for k in range(2):
            one = lime.attribute(x[b : b + 1], target=int(targets[b, k]), masks=masks[b], return_fit=True, perturbations_per_eval=100)
            torch.testing.assert_close(batched.coef[b, k], one.coef[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(batched.score[b, k], one.score[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(batched.local_pred[b, k], one.local_pred[0], atol=1e-6, rtol=0)
    shaped = lime.attribute(x, target=targets, masks=masks)
    assert shaped.shape == (4, 2, 8)


def test_generator_determinism():
    net = make_net()
    x = torch.randn(2, 8)
    lime = torchlime.Lime(net)
    run = lambda s: lime.attribute(x, target=0, n_samples=80, perturbations_per_eval=40, generator=torch.Generator().manual_seed(s))  # noqa: E731
    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_kernel_shap_is_exact_for_a_linear_model_and_matches_captum_on_same_masks():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 1)
    forward = lambda z: lin(z)[:, 0]  # noqa: E731
    x = torch.randn(1, 6)
    ks = torchlime.KernelShap(forward)
    attr = ks.attribute(x, n_samples=200, perturbations_per_eval=50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(attr, (lin.weight * x).detach(), atol=1e-4, rtol=0)
    masks = TF.kernel_shap_masks(200, 6, generator=torch.Generator().manual_seed(3))
    ref = CaptumKernelShap(lambda z: forward(z) ** 2)
    ref.perturb_func = replay(masks)
    ours = torchlime.KernelShap(lambda z: forward(z) ** 2).attribute(x, n_samples=200, masks=masks, perturbations_per_eval=50)
    expected = ref.attribute(x, n_samples=200, perturbations_per_eval=50)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert isinstance(ks, CaptumKernelShap) and isinstance(torchlime.Lime(forward), CaptumLime)


def test_forward_returning_one_scalar_per_batch():
    net = make_net()
    x = torch.randn(3, 8)
    torch.manual_seed(1)
    a = torchlime.Lime(lambda z: net(z).sum(), interpretable_model=Ridge()).attribute(x, n_samples=60)
    torch.manual_seed(1)
    b = CaptumLime(lambda z: net(z).sum(), interpretable_model=SkLearnRidge()).attribute(x, n_samples=60)
    assert a.shape == b.shape == (1, 8)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="expected perturbations_per_eval == 1 when forward_func returns one scalar per batch, got 4"):
        torchlime.Lime(lambda z: net(z).sum()).attribute(x, n_samples=60, perturbations_per_eval=4)


def test_per_sample_callables_run_captums_loop():
    net = make_net()
    x = torch.randn(1, 8)
    sim = lambda o, p, z, **kw: 1.0  # noqa: E731
    torch.manual_seed(2)
    a = torchlime.Lime(net, interpretable_model=Ridge(), similarity_func=sim).attribute(x, target=0, n_samples=40)
    torch.manual_seed(2)
    b = CaptumLime(net, interpretable_model=SkLearnRidge(), similarity_func=sim).attribute(x, target=0, n_samples=40)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="need batched callables"):
        torchlime.Lime(net, similarity_func=sim).attribute(x, target=0, n_samples=40, differentiable=True)


@pytest.mark.parametrize("model", [lambda: SkLearnLasso(alpha=0.01), lambda: SGDLasso(), lambda: SkLearnLinearRegression()])
def test_captum_models_as_interpretable_model(model):
    net = make_net()
    x = torch.randn(2, 8)
    masks = TF.bernoulli_masks(100, 8, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
    attr = torchlime.Lime(net, interpretable_model=model()).attribute(x, target=1, masks=masks, perturbations_per_eval=50)
    assert attr.shape == (2, 8) and torch.isfinite(attr).all()


def test_torchlime_models_inside_stock_captum():
    net = make_net()
    x = torch.randn(1, 8)
    masks = TF.bernoulli_masks(200, 8, generator=torch.Generator().manual_seed(0))
    a = CaptumLime(net, interpretable_model=Lasso(alpha=0.01), perturb_func=replay(masks)).attribute(x, target=1, n_samples=200)
    b = CaptumLime(net, interpretable_model=SkLearnLasso(alpha=0.01), perturb_func=replay(masks)).attribute(x, target=1, n_samples=200)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_show_progress(capsys):
    net = make_net()
    torchlime.Lime(net).attribute(torch.randn(1, 8), target=0, n_samples=20, perturbations_per_eval=5, show_progress=True)
    assert "Lime attribution" in capsys.readouterr().err


def test_differentiable_coefficients_carry_gradients_to_the_model():
    net = make_net()
    x = torch.randn(2, 8)
    lime = torchlime.Lime(net, interpretable_model=Ridge(alpha=1.0))
    masks = TF.bernoulli_masks(64, 8, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
    coef = lime.attribute(x, target=0, masks=masks, perturbations_per_eval=32, differentiable=True, return_input_shape=False)
    assert coef.requires_grad
    coef[:, 3].sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    plain = lime.attribute(x, target=0, masks=masks, perturbations_per_eval=32, return_input_shape=False)
    assert not plain.requires_grad
    torch.testing.assert_close(plain, coef.detach())
    with pytest.raises(ValueError, match="differentiable=True needs .* got Lasso"):
        torchlime.Lime(net).attribute(x, target=0, masks=masks, differentiable=True)


def test_bad_inputs_raise_clear_errors():
    net = make_net()
    x = torch.randn(1, 8)
    lime = torchlime.Lime(net)
    with pytest.raises(ValueError, match="expected n_samples >= 2, got 1"):
        lime.attribute(x, target=0, n_samples=1)
    with pytest.raises(ValueError, match=r"expected feature_mask ids 0..3 with every id used, got 3 distinct ids; missing \[2\]"):
        lime.attribute(x, target=0, feature_mask=torch.tensor([[0, 0, 1, 1, 3, 3, 3, 0]]))
    with pytest.raises(ValueError, match=r"expected feature_mask\[0\] to broadcast to its input of shape \(1, 8\), got shape \(1, 3\)"):
        lime.attribute(x, target=0, feature_mask=torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match=r"expected feature_mask\[0\] to be an integer tensor, got torch.float32"):
        lime.attribute(x, target=0, feature_mask=torch.zeros(1, 8))
    with pytest.raises(ValueError, match="expected masks with 8 features"):
        lime.attribute(x, target=0, masks=torch.ones(10, 5))
    with pytest.raises(ValueError, match="expected binary masks"):
        lime.attribute(x, target=0, masks=torch.full((10, 8), 0.3))
    with pytest.raises(ValueError, match=r"target 3 is out of range for forward output with per-example shape \(3,\) \(3 classes\)"):
        lime.attribute(x, target=3)
    with pytest.raises(ValueError, match=r"expected forward_func to return one scalar per perturbed input \(5 values\) when no target is given, got shape \(5, 3\)"):
        lime.attribute(x, n_samples=10, perturbations_per_eval=5)
    with pytest.raises(ValueError, match=r"expected forward_func to return one output per perturbed input \(5 rows\), got shape \(4, 3\)"):
        torchlime.Lime(lambda z: net(z)[:4]).attribute(x, target=0, n_samples=10, perturbations_per_eval=5)
    with pytest.raises(ValueError, match=r"expected forward_func to return one output per example \(dim 0 of size 2\)"):
        torchlime.Lime(lambda z: net(z)[:1, :2]).attribute(torch.randn(2, 8), target=0)

    def nan_at_some(z):
        out = net(z)
        out[z[:, 0] == 0] = float("nan")
        return out

    masks = torch.ones(6, 8)
    masks[[2, 4], 0] = 0
    with pytest.raises(ValueError, match="forward_func returned NaN or inf for instance 0 sample 2, instance 0 sample 4"):
        torchlime.Lime(nan_at_some).attribute(x, target=0, masks=masks, perturbations_per_eval=3)
    tiny = torchlime.Lime(net, similarity_func=torchlime.get_exp_kernel_similarity_function("euclidean", 1e-3))
    zero_row = torch.ones(6, 8)
    zero_row[:, :4] = 0
    with pytest.raises(ValueError, match=r"all kernel weights are zero for instance 0"):
        tiny.attribute(x + 10, target=0, masks=zero_row)
    with pytest.raises(ValueError, match="expected a torch.Generator on cpu .* got one on cuda"):
        lime.attribute(x, target=0, generator=FakeGenerator("cuda"))
    with pytest.raises(ValueError, match="expected perturbations_per_eval >= 1, got 0"):
        lime.attribute(x, target=0, perturbations_per_eval=0)
    with pytest.raises(ValueError, match="expected one feature_mask per input"):
        lime.attribute(x, target=0, feature_mask=(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long)))
    with pytest.raises(ValueError, match="expected from_interp_rep_transform when perturb_interpretable_space=True, got None"):
        torchlime.LimeBase(net, Ridge(), lambda *a, **k: 1.0, lambda *a, **k: None, True, None, None)
    with pytest.raises(ValueError, match="expected 2 targets \\(one per instance\\), got 3"):
        torchlime.Lime(net).attribute(torch.randn(2, 8), target=[0, 1, 2])


def test_singular_kernel_shap_fit_warns_and_is_finite():
    forward = lambda z: z.sum(-1)  # noqa: E731
    masks = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        attr = torchlime.KernelShap(forward).attribute(torch.ones(1, 3), masks=masks)
    assert torch.isfinite(attr).all()


def test_segment_composition_equals_gather_composition():
    """The CPU fast path for long contiguous feature runs builds the same inputs."""
    from torchlime.attr._lime import _MaskTransform

    D, F = 6400, 8
    x = torch.randn(2, 1, D)
    base = torch.randn(1, 1, D)
    segments = (torch.arange(D) * F // D).reshape(1, 1, D)
    scattered = segments[..., torch.randperm(D)]  # same features, no long runs
    masks = TF.bernoulli_masks(16, F, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
    for fm in (segments, scattered):
        for b in (base, torch.zeros_like(base)):  # a zero baseline takes the x * mask path
            kw = dict(feature_mask=fm, baselines=b)
            fast = _MaskTransform().__torchlime_batched__(masks, x, **kw)
            keep = masks.bool().gather(2, fm.reshape(1, 1, D).expand(2, 16, D))
            expected = torch.where(keep, x.reshape(2, 1, D), b.reshape(1, 1, D)).reshape(32, 1, D)
            assert torch.equal(fast, expected)  # -0.0 == 0.0
    assert _MaskTransform()._contiguous_runs(segments, x, 2) is not None
    assert _MaskTransform()._contiguous_runs(scattered, x, 2) is None


def test_reused_input_buffers_do_not_leak_into_outputs():
    """A forward returning a view of its input still gets every sample's own value."""
    x = torch.arange(1.0, 9.0).reshape(1, 8)
    masks = TF.bernoulli_masks(40, 8, generator=torch.Generator().manual_seed(0))
    lime = torchlime.Lime(lambda z: z[:, 3], interpretable_model=LinearRegression())
    fit = lime.attribute(x, masks=masks, perturbations_per_eval=7, return_fit=True)
    expected = torch.zeros(1, 8)
    expected[0, 3] = 4.0
    torch.testing.assert_close(fit.coef, expected, atol=1e-5, rtol=0)
    assert lime.from_interp_rep_transform._buffers == {}


def test_limebase_with_per_sample_callables_equals_captum():
    net = torch.nn.Linear(5, 2)
    perturb = lambda x, **kw: torch.bernoulli(torch.full((1, 5), 0.5))  # noqa: E731
    to_input = lambda z, x, **kw: z * x  # noqa: E731
    sim = lambda x, p, z, **kw: 1.0  # noqa: E731
    x = torch.randn(1, 5)
    torch.manual_seed(0)
    a = torchlime.LimeBase(net, Ridge(), sim, perturb, True, to_input, None).attribute(x, target=1, n_samples=40)
    torch.manual_seed(0)
    b = CaptumLimeBase(net, SkLearnRidge(), sim, perturb, True, to_input, None).attribute(x, target=1, n_samples=40)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
