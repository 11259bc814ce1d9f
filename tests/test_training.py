"""torchlime.training: the sync-free, compilable, differentiable explain step, the explanation
penalty and the monitor (issue 6)."""

import sys

import pytest
import torch

import torchlime
from torchlime import functional as TF
from torchlime.models import Lasso, LimeSurrogate, LinearRegression, Ridge
from torchlime.music import StemFactorization
from torchlime.training import (
    ExplainStep,
    ExplanationMonitor,
    MonitorReport,
    StemsTransform,
    check_differentiable,
    explanation_penalty,
    lime_penalty,
    stem_features,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def masked(z, x):
    """The transform of a tabular model: keep the features a mask switches on, zero the rest."""
    return (z * x.unsqueeze(1)).flatten(0, 1)


def small_net(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


# -- the pure functions ---------------------------------------------------------------------


def test_compose_segments_equals_stem_factorization_per_song():
    g = torch.Generator().manual_seed(0)
    stems = torch.randn(3, 4, 2, 103, generator=g)
    masks = torch.bernoulli(torch.full((3, 7, 12), 0.5), generator=g)
    bounds = [(0, 30), (40, 70), (70, 101)]  # gaps at 30-40 and 101-103
    mixture = torch.randn(3, 2, 103, generator=g)
    out = TF.compose_segments(stems, masks, bounds, residual=mixture - stems.sum(1))
    for b in range(3):
        f = StemFactorization(stems[b], sample_rate=8000, boundaries=bounds, mixture=mixture[b], keep_residual=True)
        torch.testing.assert_close(out[b], f.compose(masks[b]), atol=1e-5, rtol=1e-5)
    even = TF.compose_segments(stems, masks, TF.even_boundaries(103, 3))
    for b in range(3):
        f = StemFactorization(stems[b], sample_rate=8000, num_segments=3)
        torch.testing.assert_close(even[b], f.compose(masks[b]), atol=1e-5, rtol=1e-5)


def test_compose_segments_errors():
    with pytest.raises(ValueError, match=r"expected masks of shape \(\.\.\., n, 8\) for 4 stems x 2 segments"):
        TF.compose_segments(torch.zeros(4, 1, 10), torch.ones(3, 6), [(0, 5), (5, 10)])
    with pytest.raises(ValueError, match="expected segment 1 as 5 <= start < end <= 10"):
        TF.compose_segments(torch.zeros(4, 1, 10), torch.ones(3, 8), [(0, 5), (3, 10)])
    with pytest.raises(ValueError, match="expected num_segments >= 1, got 0"):
        TF.even_boundaries(10, 0)


def test_mask_kernel_weights_is_lime_kernel_on_cosine_to_all_ones():
    z = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    d = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(TF.mask_kernel_weights(z, 0.5), torch.sqrt(torch.exp(-(d**2) / 0.25)))


# -- ExplainStep: equal to the engine, targets, chunks, seeds --------------------------------


def test_explain_step_equals_limebase_on_same_masks():
    net = small_net()
    x = torch.randn(4, 6)
    step = ExplainStep(net, masked, num_features=6, n_samples=80)
    masks = step.draw(4, generator=torch.Generator().manual_seed(1))

    @torchlime.batched
    def transform(z, original, **kw):
        return masked(z, original)

    @torchlime.batched
    def similarity(original, perturbed, z, **kw):
        return TF.mask_kernel_weights(z, 0.25).reshape(-1)

    engine = torchlime.LimeBase(net, Ridge(alpha=1.0), similarity, None, True, transform, None)
    target = torch.tensor([[0, 1, 2]] * 4)
    ref = engine.attribute(x, target=target, masks=masks, perturbations_per_eval=80, return_fit=True)
    fit = step(x, masks)
    for a, b in zip(fit[:4], ref[:4]):  # coef, intercept, score, local_pred (the step computes no stderr)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_targets_chunks_and_models():
    net = small_net()
    x = torch.randn(5, 6)
    step = ExplainStep(net, masked, num_features=6, n_samples=40)
    masks = step.draw(5, generator=torch.Generator().manual_seed(2))
    full = step(x, masks).coef  # (B, K, F)
    assert full.shape == (5, 3, 6)
    torch.testing.assert_close(step(x, masks, target=1).coef, full[:, 1])
    labels = torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(step(x, masks, target=labels).coef, full[torch.arange(5), labels])
    pairs = torch.tensor([[2, 0]] * 5)
    torch.testing.assert_close(step(x, masks, target=pairs).coef, full[:, [2, 0]])
    chunked = ExplainStep(net, masked, num_features=6, n_samples=40, perturbations_per_eval=7)
    torch.testing.assert_close(chunked(x, masks).coef, full, atol=1e-6, rtol=1e-5)
    y = step.outputs(x, masks)
    for model, fn, kw in (
        (Ridge(alpha=2.0), TF.ridge, {"alpha": 2.0}),
        (Ridge(alpha=0.0), TF.ridge, {"alpha": 0.0}),
        (LinearRegression(), TF.linear_regression, {}),
        (Lasso(alpha=0.01), TF.lasso, {"alpha": 0.01, "sync_free": True}),
    ):
        other = ExplainStep(net, masked, num_features=6, n_samples=40, interpretable_model=model)
        for target in (None, 2):
            ref = fn(masks, y if target is None else y[..., target], step.sample_weight(masks), **kw)
            for a, b in zip(other(x, masks, target=target), ref):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_seeded_generator_reproduces_masks_and_fit():
    net = small_net()
    x = torch.randn(3, 6)
    step = ExplainStep(net, masked, num_features=6, n_samples=50)
    a = step(x, generator=torch.Generator().manual_seed(7))
    b = step(x, generator=torch.Generator().manual_seed(7))
    c = step(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.coef, b.coef) and not torch.equal(a.coef, c.coef)
    m = step.draw(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(m, step.draw(3, generator=torch.Generator().manual_seed(7)))
    assert bool((m[:, 0] == 1).all())  # row 0 is the instance itself


def test_stems_transform_composes_songs_and_holds_extra_inputs():
    t = StemsTransform(["vocals", "drums", "bass", "other"], num_segments=5)
    assert t.num_features == 20 and t.feature_names[:5] == ["vocals_T0", "drums_T0", "bass_T0", "other_T0", "vocals_T1"]
    stems = torch.randn(2, 4, 1, 500)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    z = torch.bernoulli(torch.full((2, 3, 20), 0.5), generator=torch.Generator().manual_seed(0))
    audio, rep = t(z, (stems, ids))
    assert audio.shape == (6, 1, 500) and torch.equal(rep, ids.repeat_interleave(3, 0))
    f = StemFactorization(stems[1], sample_rate=8000, num_segments=5)
    torch.testing.assert_close(audio[3:], f.compose(z[1]))
    with pytest.raises(ValueError, match=r"expected stems of shape \(B, 4, C, T\)"):
        t(z, (stems[:, :3], ids))


# -- compile, CUDA, sync-free -----------------------------------------------------------------


def test_compiles_fullgraph_without_graph_breaks():
    """Dynamo traces the whole step into one graph (the eager backend: no code generation)."""
    torch._dynamo.reset()
    net = small_net()
    x = torch.randn(4, 6)
    step = ExplainStep(net, masked, num_features=6, n_samples=32, perturbations_per_eval=16, differentiable=True)
    masks = step.draw(4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 0])
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    eager = step(x, masks, target=target)
    out = compiled(x, masks, target=target)
    for a, b in zip(out, eager):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # gradients through the compiled step equal the eager ones
    g_eager = torch.autograd.grad(eager.coef.square().sum(), list(net.parameters()))
    g_comp = torch.autograd.grad(out.coef.square().sum(), list(net.parameters()))
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_inductor_compiled_step_equals_eager_on_cpu():
    torch._dynamo.reset()
    net = small_net()
    x = torch.randn(4, 6)
    step = ExplainStep(net, masked, num_features=6, n_samples=64, perturbations_per_eval=32)
    compiled = torch.compile(step, fullgraph=True)
    for seed in (0, 1):  # a second call with new masks reuses the graph
        masks = step.draw(4, generator=torch.Generator().manual_seed(seed))
        eager = step(x, masks)
        out = compiled(x, masks)
        for a, b in zip(out, eager):
            # inductor fuses the float32 forward differently: rounding-level differences
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _music_setup(device, differentiable=False):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 9, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2)).to(device)
    transform = StemsTransform(["vocals", "drums", "bass", "other"], num_segments=5)
    step = ExplainStep(lambda audio: net(audio), transform, num_features=20, n_samples=64, differentiable=differentiable)
    stems = torch.randn(3, 4, 1, 400, device=device)
    return net, transform, step, stems


@cuda
def test_cuda_step_makes_no_host_sync():
    net, transform, step, stems = _music_setup("cuda", differentiable=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    labels = torch.tensor([0, 1, 1], device="cuda")
    cue = stem_features(transform.feature_names, "other", device="cuda")
    step((stems,), target=labels, generator=g)  # warm-up: lazy CUDA initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        masks = step.draw(3, generator=g)
        fit = step((stems,), masks, target=labels)
        loss = explanation_penalty(fit.coef, cue) + lime_penalty(step, (stems,), cue, target=labels, generator=g)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert fit.coef.device.type == "cuda" and net[0].weight.grad is not None


@cuda
def test_cuda_graph_capture_replays_the_step():
    net, transform, step, stems = _music_setup("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    static_masks = step.draw(3, generator=g)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step((stems,), static_masks)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_fit = step((stems,), static_masks)
    for _ in range(2):
        static_masks.copy_(step.draw(3, generator=g))
        graph.replay()
        eager = step((stems,), static_masks)
        torch.testing.assert_close(static_fit.coef, eager.coef, atol=1e-5, rtol=1e-4)


@cuda
@pytest.mark.slow
def test_cuda_compiled_with_cuda_graphs_equals_eager():
    """torch.compile(mode="reduce-overhead"): inductor's kernels replayed as CUDA graphs."""
    torch._dynamo.reset()
    net, transform, step, stems = _music_setup("cuda")
    compiled = torch.compile(step, fullgraph=True, mode="reduce-overhead")
    g = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(3):
        masks = step.draw(3, generator=g)
        out = compiled((stems,), masks).coef.clone()  # the graph's output buffer is reused
        torch.testing.assert_close(out, step((stems,), masks).coef, atol=1e-4, rtol=1e-4)


@cuda
def test_cuda_equals_cpu_on_same_masks():
    net, _, step, stems = _music_setup("cpu")
    masks = step.draw(3, generator=torch.Generator().manual_seed(0))
    cpu = step((stems,), masks).coef
    net.cuda()
    gpu = step((stems.cuda(),), masks.cuda()).coef
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


# -- differentiable -----------------------------------------------------------------------------


def test_gradcheck_through_coefficients_wrt_parameters_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 5, dtype=torch.float64)
    masks = TF.bernoulli_masks(24, 5, batch_shape=(2,), first_row_ones=True, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
    W = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def coef(W, b):
        step = ExplainStep(lambda inp: torch.tanh(inp @ W.T + b), masked, num_features=5, n_samples=24,
                           differentiable=True)
        return step(x, masks).coef

    assert torch.autograd.gradcheck(coef, (W, b), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_through_coefficients_wrt_outputs_float64():
    step = ExplainStep(lambda inp: inp, masked, num_features=4, n_samples=16, differentiable=True,
                       interpretable_model=LinearRegression())
    masks = step.draw(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Y = torch.randn(2, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda Y: step.fit(masks, Y).coef, (Y,), eps=1e-6, atol=1e-6, rtol=1e-5)
    for alpha in (0.0, 2.0):  # ridge is linear in the outputs: coef(Y1 + Y2) = coef(Y1) + coef(Y2)
        ridge = ExplainStep(lambda inp: inp, masked, num_features=4, n_samples=16, interpretable_model=Ridge(alpha))
        Y1, Y2 = torch.randn(2, 2, 16, 3, dtype=torch.float64)
        torch.testing.assert_close(ridge.fit(masks, Y1 + Y2).coef, ridge.fit(masks, Y1).coef + ridge.fit(masks, Y2).coef)


def test_not_differentiable_keeps_no_graph():
    net = small_net()
    step = ExplainStep(net, masked, num_features=6, n_samples=20)
    fit = step(torch.randn(2, 6), generator=torch.Generator().manual_seed(0))
    assert not fit.coef.requires_grad
    diff = ExplainStep(net, masked, num_features=6, n_samples=20, differentiable=True)
    with torch.no_grad():  # as LimeBase: differentiable=True turns grad mode on
        assert diff(torch.randn(2, 6), generator=torch.Generator().manual_seed(0)).coef.requires_grad


def test_penalty_gradient_reduces_the_penalised_weight():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 2.0, -1.5, 0.5]]))
    x = torch.ones(16, 4)
    step = ExplainStep(lambda inp: net(inp), masked, num_features=4, n_samples=64, differentiable=True)
    masks = step.draw(16, generator=torch.Generator().manual_seed(0))
    before = step(x, masks).coef.detach()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(40):
        opt.zero_grad()
        lime_penalty(step, x, [1], masks=masks, p=2).backward()
        opt.step()
    after = step(x, masks).coef.detach()
    assert after[:, 1].abs().mean() < 0.01 * before[:, 1].abs().mean()
    assert net.weight[0, 1].abs() < 0.01
    # the others barely move (on finite samples the ridge solution couples the features a little)
    moved = (after[:, [0, 2, 3]] - before[:, [0, 2, 3]]).abs().mean()
    assert moved < 0.05 * before[:, 1].abs().mean()


def test_explanation_penalty_values_and_forms():
    coef = torch.tensor([[[0.5, -2.0, 1.0]], [[0.0, 1.0, -1.0]]])  # (B=2, K=1, F=3)
    assert explanation_penalty(coef, [1, 2]).item() == pytest.approx(2.5)
    assert explanation_penalty(coef, torch.tensor([False, True, True]), reduction="sum").item() == pytest.approx(5.0)
    assert explanation_penalty(coef, torch.tensor([1]), p=2, reduction="none").flatten().tolist() == [4.0, 1.0]
    assert explanation_penalty(coef, [True, False, False]).item() == pytest.approx(0.25)
    assert explanation_penalty(coef, [-1]).item() == pytest.approx(1.0)


def test_stem_features():
    names = StemsTransform(["vocals", "drums", "bass", "other"], num_segments=3).feature_names
    mask = stem_features(names, ["drums", "other"])
    assert [n for n, m in zip(names, mask.tolist()) if m] == ["drums_T0", "other_T0", "drums_T1", "other_T1",
                                                               "drums_T2", "other_T2"]
    with pytest.raises(ValueError, match=r"expected stems among those of the feature names \['bass', 'drums', 'other', 'vocals'\], got \['piano'\]"):
        stem_features(names, "piano")


# -- errors ----------------------------------------------------------------------------------------


def test_differentiable_with_a_model_that_cannot_says_which_and_why():
    from captum._utils.models.linear_model import SkLearnLasso

    net = small_net()
    for model, why in (
        (Lasso(alpha=0.1), "got Lasso: its coefficients come from an iterative soft-thresholding"),
        (LimeSurrogate(num_features=3), "got LimeSurrogate: its feature selection"),
        (SkLearnLasso(alpha=0.1), "got SkLearnLasso: it fits in scikit-learn, outside autograd"),
    ):
        with pytest.raises(ValueError, match=f"differentiable=True needs an interpretable model whose solution is differentiable .*{why}"):
            ExplainStep(net, masked, num_features=6, n_samples=8, interpretable_model=model, differentiable=True)
        with pytest.raises(ValueError, match=why):
            check_differentiable(model)
    check_differentiable(Ridge())
    check_differentiable(LinearRegression())
    with pytest.raises(ValueError, match="expected an interpretable model that fits without host synchronisation .* got LimeSurrogate"):
        ExplainStep(net, masked, num_features=6, n_samples=8, interpretable_model=LimeSurrogate())
    # the engine's own differentiable path names the model and the reason too
    lime = torchlime.Lime(net, interpretable_model=SkLearnLasso(alpha=0.1))
    with pytest.raises(ValueError, match="got SkLearnLasso: it fits in scikit-learn, outside autograd"):
        lime.attribute(torch.randn(1, 6), target=0, n_samples=10, differentiable=True)


def test_step_errors():
    net = small_net()
    with pytest.raises(ValueError, match="expected n_samples >= 2, got 1"):
        ExplainStep(net, masked, num_features=6, n_samples=1)
    with pytest.raises(ValueError, match="expected num_features >= 1, got 0"):
        ExplainStep(net, masked, num_features=0, n_samples=4)
    with pytest.raises(ValueError, match="expected perturbations_per_eval >= 1, got 0"):
        ExplainStep(net, masked, num_features=6, n_samples=4, perturbations_per_eval=0)
    with pytest.warns(DeprecationWarning, match=r"chunk_size=...\) is deprecated; use perturbations_per_eval="):
        assert ExplainStep(net, masked, num_features=6, n_samples=4, chunk_size=2).perturbations_per_eval == 2
    with pytest.raises(ValueError, match="expected kernel_width > 0, got 0"):
        ExplainStep(net, masked, num_features=6, n_samples=4, kernel_width=0)
    with pytest.raises(TypeError, match="expected forward to be callable, got int"):
        ExplainStep(3, masked, num_features=6, n_samples=4)
    step = ExplainStep(net, masked, num_features=6, n_samples=4)
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match=r"expected masks of shape \(B, 4, 6\), got shape \(2, 5, 6\)"):
        step(x, torch.ones(2, 5, 6))
    with pytest.raises(ValueError, match=r"target 3 is out of range for forward output with per-example shape \(3,\) \(3 classes\)"):
        step(x, torch.ones(2, 4, 6), target=3)
    with pytest.raises(ValueError, match="expected integer class indices as target, got a torch.float32 tensor"):
        step(x, torch.ones(2, 4, 6), target=torch.zeros(2))
    with pytest.raises(ValueError, match=r"expected 2 targets \(one per instance\), got 3"):
        step(x, torch.ones(2, 4, 6), target=torch.zeros(3, dtype=torch.long))
    bad = ExplainStep(lambda inp: net(inp)[:3], masked, num_features=6, n_samples=4)
    with pytest.raises(ValueError, match=r"expected forward_func to return one output per perturbed input \(8 rows\), got shape \(3, 3\)"):
        bad(x, torch.ones(2, 4, 6))
    with pytest.raises(ValueError, match="expected an ExplainStep built with differentiable=True"):
        lime_penalty(step, x, [0], masks=torch.ones(2, 4, 6))
    with pytest.raises(ValueError, match=r"expected p in \(1, 2\), got 3"):
        explanation_penalty(torch.ones(2, 6), [0], p=3)
    with pytest.raises(ValueError, match="expected reduction in"):
        explanation_penalty(torch.ones(2, 6), [0], reduction="max")
    with pytest.raises(ValueError, match=r"expected a feature mask of shape \(6,\), got shape \(5,\)"):
        explanation_penalty(torch.ones(2, 6), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected feature indices in \[-6, 6\), got \[6\]"):
        explanation_penalty(torch.ones(2, 6), [0, 6])


# -- the monitor ------------------------------------------------------------------------------------


def _linear_monitor(**kw):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 0.1, 0.0, 0.0], [-3.0, 0.0, 0.0, 2.0]]))
        net.bias.zero_()
    step = ExplainStep(net, masked, num_features=4, n_samples=64)
    probe = torch.rand(12, 4) + 0.5
    names = ["drums_T0", "other_T0", "drums_T1", "other_T1"]
    options = dict(feature_names=names, num_classes=2, class_names=["neg", "pos"], every=3, top_k=2)
    options.update(kw)
    return net, step, probe, ExplanationMonitor(step, probe, **options)


def test_monitor_reports_every_k_steps_with_top_features_and_drift():
    seen = []
    net, step, probe, monitor = _linear_monitor(callback=seen.append, groups="stems", label="explained")
    reports = [monitor.on_step() for _ in range(7)]
    assert [r is not None for r in reports] == [False, False, True, False, False, True, False]
    first, second = reports[2], reports[5]
    assert seen == [first, second] and monitor.last is second and isinstance(first, MonitorReport)
    assert first.step == 3 and second.step == 6 and first.rows == 12 * 64 and first.seconds > 0
    assert [n for n, _ in first.top["pos"]] == ["drums_T0", "other_T1"]
    assert first.top["neg"][0][0] == "drums_T0"
    assert first.drift == {"neg": None, "pos": None}
    assert second.drift["pos"] == pytest.approx(0.0, abs=1e-12)  # same model, same masks: no drift
    assert sum(first.group_share["pos"].values()) == pytest.approx(1.0)
    assert first.counts == {"neg": 12, "pos": 12}
    with torch.no_grad():  # the model now relies on other_T0 for "pos"
        net.weight[1] = torch.tensor([0.0, 5.0, 0.0, 0.0])
    third = monitor.report(global_step=100)
    assert third.step == 100 and third.top["pos"][0][0] == "other_T0"
    assert third.drift["pos"] > 0.5 and third.entered["pos"] == ["other_T0"] and len(third.left["pos"]) == 1
    assert third.group_share["pos"]["other"] > 0.9
    scalars = third.scalars("expl")
    assert scalars["expl/drift/pos"] == third.drift["pos"] and "expl/share/pos/other" in scalars
    assert "expl/top/pos/other_T0" in scalars and scalars["expl/seconds"] == third.seconds
    assert "pos [12]: other_T0" in third.text()
    assert third.as_dict()["top"]["pos"][0][0] == "other_T0"


def test_monitor_predicted_label_counts_each_instance_once_and_restores_train_mode():
    net, step, probe, monitor = _linear_monitor()
    net.train()
    report = monitor.report()
    predicted = net(probe).argmax(-1)
    assert report.counts == {"neg": int((predicted == 0).sum()), "pos": int((predicted == 1).sum())}
    assert net.training
    assert monitor.aggregator.compute().counts.sum() > 0


def test_monitor_logs_to_a_summary_writer():
    class Writer:
        def __init__(self):
            self.scalars, self.texts = [], []

        def add_scalar(self, name, value, step):
            self.scalars.append((name, value, step))

        def add_text(self, name, text, step):
            self.texts.append((name, text, step))

    writer = Writer()
    _, _, _, monitor = _linear_monitor(tensorboard=writer, every=1)
    monitor.on_step(global_step=42)
    assert ("explanations/seconds", monitor.last.seconds, 42) in writer.scalars
    assert writer.texts[0][0] == "explanations/report" and writer.texts[0][2] == 42


def test_monitor_tensorboard_dir(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ModuleNotFoundError, match=r"pip install 'torchlime\[tensorboard\]'"):
            _linear_monitor(tensorboard=tmp_path)
        return
    _, _, _, monitor = _linear_monitor(tensorboard=tmp_path, every=1)
    monitor.on_step()
    monitor.writer.flush()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


def test_monitor_errors():
    net, step, probe, _ = _linear_monitor()
    options = dict(feature_names=list("abcd"), num_classes=2)
    for k in (0, -1):
        with pytest.raises(ValueError, match=f"expected every >= 1 \\(report every k steps\\), got {k}"):
            ExplanationMonitor(step, probe, every=k, **options)
    with pytest.raises(ValueError, match=r"expected the probe set on the model's device \(cpu\), got probe on meta"):
        ExplanationMonitor(step, probe.to("meta"), **options)
    with pytest.raises(ValueError, match=r"expected the probe set on the model's device \(cpu\), got probe\[1\] on meta"):
        ExplanationMonitor(ExplainStep(net, lambda z, o: masked(z, o[0]), num_features=4, n_samples=8),
                           (probe, probe.to("meta")), **options)
    with pytest.raises(ValueError, match=r"expected 4 feature names \(the step's features\), got 3"):
        ExplanationMonitor(step, probe, feature_names=list("abc"), num_classes=2)
    with pytest.raises(ValueError, match="expected label in"):
        ExplanationMonitor(step, probe, label="true", **options)
    with pytest.raises(ValueError, match="expected top_k >= 1, got 0"):
        ExplanationMonitor(step, probe, top_k=0, **options)
    with pytest.raises(ValueError, match="expected feature names like 'drums_T3' for groups='stems'"):
        ExplanationMonitor(step, probe, groups="stems", **options)
    monitor = ExplanationMonitor(step, probe, feature_names=list("abcd"), num_classes=3)
    with pytest.raises(ValueError, match="expected the model to return num_classes=3 outputs per row, got 2"):
        monitor.report()
    monitor = ExplanationMonitor(step, probe, **options)
    net.to("meta")  # the model moved away from its probe set after the monitor was built
    with pytest.raises(ValueError, match=r"expected the probe set on the model's device \(meta\), got probe on cpu"):
        monitor.report()


@cuda
def test_monitor_probe_on_cpu_with_model_on_cuda_is_an_error():
    net, step, probe, _ = _linear_monitor()
    net.cuda()
    with pytest.raises(ValueError, match=r"expected the probe set on the model's device \(cuda:0\), got probe on cpu"):
        ExplanationMonitor(step, probe, feature_names=list("abcd"), num_classes=2)


# -- Lightning ---------------------------------------------------------------------------------------


def test_lightning_callback_missing_names_the_extra(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "torchlime.training._lightning", raising=False)
    import torchlime.training as training

    with pytest.raises(ModuleNotFoundError, match=r"pip install 'torchlime\[lightning\]'"):
        training.ExplanationMonitorCallback


def test_lightning_callback_reports_to_the_trainers_loggers():
    lightning = pytest.importorskip("lightning")
    from torchlime.training import ExplanationMonitorCallback

    net, step, probe, monitor = _linear_monitor(every=2)

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return self.net(x).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Logger(lightning.pytorch.loggers.Logger):
        name, version = "memory", 0
        logged = []

        def log_metrics(self, metrics, step=None):
            self.logged.append((step, dict(metrics)))

        def log_hyperparams(self, *args, **kwargs):
            pass

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=2)
    logger = Logger()
    trainer = lightning.Trainer(max_steps=6, logger=logger, callbacks=[ExplanationMonitorCallback(monitor)],
                                enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                                accelerator="cpu")
    trainer.fit(Module(), data)
    assert len(monitor.reports) == 3 and [r.step for r in monitor.reports] == [2, 4, 6]
    assert [s for s, m in logger.logged if "explanations/seconds" in m] == [2, 4, 6]
    with pytest.raises(TypeError, match="expected an ExplanationMonitor, got int"):
        ExplanationMonitorCallback(3)


def test_weights_is_a_deprecated_name_of_sample_weight():
    step = ExplainStep(small_net(), masked, num_features=6, n_samples=4)
    masks = torch.ones(2, 4, 6)
    with pytest.warns(DeprecationWarning, match="ExplainStep.weights is deprecated; use sample_weight"):
        old = step.weights(masks)
    torch.testing.assert_close(old, step.sample_weight(masks))
