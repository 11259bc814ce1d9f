"""With no generator, torchlime's Lime, KernelShap and LimeBase draw from torch's global random
stream as Captum 0.9 does, example by example: same seed, same attributions as Captum itself,
for any batch size, targets, baselines, tuple inputs and perturbations_per_eval, and the
stream is left where Captum leaves it (so a second call without reseeding agrees too)."""

import warnings

import pytest
import torch
from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Lime as CaptumLime
from captum.attr import LimeBase as CaptumLimeBase
from captum.attr._core.lime import default_perturb_func
from captum.testing.helpers.basic_models import BasicLinearModel, BasicModel_MultiLayer

import torchlime
from torchlime.models import Ridge

METHODS = {"lime": (torchlime.Lime, CaptumLime), "kernel_shap": (torchlime.KernelShap, CaptumKernelShap)}
# Captum fits with scikit-learn on float32 data (Lasso by coordinate descent), torchlime in
# float64 with its own solver: coefficients agree to about 1e-6 of the largest one.
RTOL = 2e-5


def make_net(seed=0, d_in=6, classes=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, classes))


def both(method, forward, seed, call, **init):
    """Run ``call(explainer)`` for torchlime's and Captum's class after the same seed.

    Returns the two results and whether the global stream ended in the same state.
    """
    ours_cls, ref_cls = METHODS[method]
    results, states = [], []
    for cls in (ours_cls, ref_cls):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Captum: "You are providing multiple inputs ..."
            results.append(call(cls(forward, **init)))
        states.append(torch.get_rng_state())
    return results[0], results[1], torch.equal(*states)


def assert_same(a, b):
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            assert_same(u, v)
        return
    assert a.shape == b.shape
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    torch.testing.assert_close(a, b.to(a.dtype), atol=RTOL * scale, rtol=0)


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
@pytest.mark.parametrize("B", [1, 2, 4])
@pytest.mark.parametrize("ppe", [1, 3])
def test_default_stream_equals_captum_for_any_batch(method, B, ppe):
    net = make_net()
    x = torch.randn(B, 6)
    targets = [b % 3 for b in range(B)]

    def call(explainer):
        first = explainer.attribute(x, target=targets, n_samples=30, perturbations_per_eval=ppe)
        second = explainer.attribute(x, target=1, n_samples=20, perturbations_per_eval=ppe)  # the stream goes on
        return first, second

    ours, ref, same_state = both(method, net, 7, call)
    assert_same(ours, ref)
    assert same_state


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
@pytest.mark.parametrize(
    "target", [0, torch.tensor([2, 0, 1]), [(1,), (0,), (2,)]], ids=["int", "tensor", "list"]
)
def test_targets_and_baselines_like_captum(method, target):
    net = make_net()
    x = torch.randn(3, 6)
    if isinstance(target, list):  # a tuple per example: Captum's form for outputs of several dims
        forward = lambda z: net(z).unsqueeze(1)  # noqa: E731 - (B, 1, 3)
        target = [(0, t[0]) for t in target]
    else:
        forward = net
    baselines = torch.randn(3, 6)  # one baseline per example
    mask = torch.tensor([[0, 0, 1, 1, 2, 3]])

    def call(explainer):
        return explainer.attribute(
            x, baselines=baselines, target=target, feature_mask=mask, n_samples=40, perturbations_per_eval=8
        )

    ours, ref, same_state = both(method, forward, 3, call)
    assert_same(ours, ref)
    assert same_state


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
@pytest.mark.parametrize("B", [1, 2])
def test_tuple_inputs_with_an_empty_member_like_captum(method, B):
    net = BasicLinearModel()  # Captum's own test model: cat((x1, x2)) -> Linear(7, 1)
    x1 = torch.tensor([[23.0, 0.0, 0.0, 23.0, 0.0, 0.0, 23.0]]).repeat(B, 1) * torch.arange(1, B + 1).reshape(B, 1)
    x2 = torch.zeros(B, 0)
    masks = (torch.arange(7).reshape(1, 7), torch.zeros(1, 0, dtype=torch.long))

    def call(explainer):
        return explainer.attribute((x1, x2), feature_mask=masks, n_samples=60, perturbations_per_eval=7)

    ours, ref, same_state = both(method, net, 0, call)
    assert ours[1].shape == (B, 0)
    assert_same(ours, ref)
    assert same_state


@pytest.mark.parametrize("ppe", [1, 2, 3])
def test_kernel_shap_per_example_feature_masks_like_captum(ppe):
    """Captum's test_simple_batch_kernel_shap_with_mask setting: one mask row per example."""
    net = BasicModel_MultiLayer()
    x = torch.tensor([[20.0, 50.0, 30.0], [0.0, 100.0, 0.0]])
    mask = torch.tensor([[0, 0, 1], [1, 1, 0]])

    def call(explainer):
        return explainer.attribute(x, target=0, feature_mask=mask, n_samples=100, perturbations_per_eval=ppe)

    ours, ref, same_state = both("kernel_shap", net, 1234, call)
    assert_same(ours, ref)
    assert same_state
    assert torch.equal(ours[1, 0], ours[1, 1])  # the second example's feature 1 covers its first two inputs


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_per_example_masks_and_tuple_baselines_in_one_batch(method):
    net = make_net(d_in=6)
    forward = lambda a, b: net(torch.cat([a, b], 1))  # noqa: E731
    x = (torch.randn(2, 4), torch.randn(2, 2))
    baselines = (torch.randn(2, 4), 0.5)
    mask = (torch.tensor([[0, 0, 1, 2], [2, 1, 1, 0]]), torch.tensor([[3, 3], [3, 0]]))

    def call(explainer):
        return explainer.attribute(x, baselines, target=[2, 1], feature_mask=mask, n_samples=50, perturbations_per_eval=9)

    ours, ref, same_state = both(method, forward, 5, call)
    assert_same(ours, ref)
    assert same_state


def test_lime_with_a_captum_model_between_examples():
    """SkLearnLasso's fits draw from the stream between examples: they are fitted in Captum's order."""
    net = make_net()
    x = torch.randn(3, 6)

    def call(explainer):
        return explainer.attribute(x, target=[0, 1, 2], n_samples=40, perturbations_per_eval=5, return_input_shape=False)

    ours, ref, same_state = both("lime", net, 2, call, interpretable_model=SkLearnLasso(alpha=0.01))
    assert_same(ours, ref)
    assert same_state


def test_lime_with_a_per_sample_perturb_func_gets_one_example_at_a_time():
    net = make_net()
    x = torch.randn(2, 6)
    seen = []

    def perturb(original, **kwargs):
        seen.append(tuple(original.shape))
        return default_perturb_func(original, **kwargs)

    def call(explainer):
        return explainer.attribute(x, target=[1, 2], n_samples=30, perturbations_per_eval=10)

    ours, ref, same_state = both("lime", net, 4, call, perturb_func=perturb)
    assert_same(ours, ref)
    assert same_state
    assert set(seen) == {(1, 6)}


def test_forward_returning_one_scalar_per_batch_keeps_the_stream():
    net = make_net()
    x = torch.randn(3, 6)

    def call(explainer):
        return explainer.attribute(x, n_samples=30), explainer.attribute(x, n_samples=30)

    ours, ref, same_state = both("kernel_shap", lambda z: net(z).sum(), 9, call)
    assert_same(ours, ref)
    assert same_state


def test_limebase_consumes_the_stream_as_captum():
    net = torch.nn.Linear(5, 2)
    perturb = lambda x, **kw: torch.bernoulli(torch.full((1, 5), 0.5))  # noqa: E731
    sim = torchlime.get_exp_kernel_similarity_function("euclidean", 2.0)
    transform = torchlime.batched(lambda z, x, **kw: z * x)
    x = torch.randn(1, 5)
    results = []
    for cls, model in ((torchlime.LimeBase, Ridge), (CaptumLimeBase, SkLearnRidge)):
        torch.manual_seed(0)
        lb = cls(net, model(), sim, perturb, True, transform, None)
        results.append([lb.attribute(x, target=t, n_samples=40, perturbations_per_eval=6) for t in (1, 0, 1)])
        results[-1].append(torch.rand(3))  # where the stream was left
    for a, b in zip(*results):
        assert_same(a, b)


def test_generator_leaves_the_global_stream_alone():
    net = make_net()
    x = torch.randn(2, 6)
    for cls in (torchlime.Lime, torchlime.KernelShap):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        cls(net).attribute(x, target=0, n_samples=20, generator=torch.Generator().manual_seed(1))
        assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("cls,ref", [(torchlime.Lime, CaptumLime), (torchlime.KernelShap, CaptumKernelShap)])
def test_progress_bar_labels_are_captums(cls, ref, monkeypatch):
    import captum._utils.progress as captum_progress
    import tqdm.auto

    labels = {"ours": [], "ref": []}

    class Recorder:
        who = "ours"

        def __init__(self, *args, desc=None, **kwargs):
            labels[Recorder.who].append(desc)

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    monkeypatch.setattr(captum_progress, "progress", Recorder)
    import captum.attr._core.lime as captum_lime

    monkeypatch.setattr(captum_lime, "progress", Recorder)
    net = make_net()
    x = torch.randn(1, 6)
    cls(net).attribute(x, target=0, n_samples=10, show_progress=True)
    Recorder.who = "ref"
    ref(net).attribute(x, target=0, n_samples=10, show_progress=True)
    assert labels["ours"] == labels["ref"] == [f"{ref.get_name()} attribution"]
    lb = torchlime.LimeBase(net, Ridge(), torchlime.batched(lambda *a, **k: torch.ones(a[2].shape[:-1]).reshape(-1)),
                            lambda x, **kw: torch.ones(1, 6), True, torchlime.batched(lambda z, x, **kw: z * x), None)
    Recorder.who = "ours"
    lb.attribute(x, target=0, n_samples=4, show_progress=True)
    assert labels["ours"][-1] == "Lime Base attribution" == f"{CaptumLimeBase.get_name()} attribution"


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_default_stream_on_the_device_equals_captum(method, device):
    """Captum draws on the CPU and moves the masks; so does torchlime's default path."""
    net = make_net().to(device)
    x = torch.randn(2, 6, device=device)

    def call(explainer):
        return explainer.attribute(x, target=[0, 2], n_samples=30, perturbations_per_eval=10)

    ours, ref, same_state = both(method, net, 8, call)
    assert ours.device.type == device.type
    assert_same(ours.cpu(), ref.cpu())
    assert same_state
