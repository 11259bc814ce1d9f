"""The engine's one input check per explain call (``check_explained``) and its messages."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import torchlime
from torchlime.functional import engine, surrogate
from torchlime.functional.engine import check_explained
from torchlime.models import LinearRegression, Ridge


def test_check_explained_messages():
    ok_y, ok_w, ok_z = torch.zeros(2, 4, 1), torch.ones(2, 4), torch.ones(2, 4, 3)
    check_explained(ok_y, ok_w, ok_z)  # nothing to say
    bad_y = ok_y.clone()
    bad_y[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"forward_func returned NaN or inf for song b sample 2$"):
        check_explained(bad_y, ok_w, ok_z, names=["song a", "song b"])
    bad_w = ok_w.clone()
    bad_w[0, 1], bad_w[1, 3] = -1.0, float("nan")
    with pytest.raises(ValueError, match=r"expected finite, non-negative kernel weights, got bad ones at "
                                         r"\(instance, sample\) \[\[0, 1\], \[1, 3\]\]"):
        check_explained(ok_y, bad_w, ok_z)
    with pytest.raises(ValueError, match=r"all kernel weights are zero for instance 1: the kernel width is too small"):
        check_explained(ok_y, torch.stack([ok_w[0], torch.zeros(4)]), ok_z)
    bad_z = ok_z.clone()
    bad_z[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"expected finite masks, got NaN or inf at \(instance, sample\) \[\[1, 0\]\]"):
        check_explained(ok_y, ok_w, bad_z)
    # in the order outputs, weights, masks; the thin wrappers say the same
    with pytest.raises(ValueError, match="forward_func returned NaN or inf"):
        check_explained(bad_y, bad_w, bad_z)
    with pytest.raises(ValueError, match="forward_func returned NaN or inf for instance 1 sample 2"):
        engine.check_outputs(bad_y)
    with pytest.raises(ValueError, match="expected finite, non-negative kernel weights"):
        engine.check_sample_weight(bad_w)


def _batched_lime_base(sim_value: float, mask_value: float | None = None) -> torchlime.LimeBase:
    @torchlime.batched
    def perturb(x, *, n_samples, generator=None, **kw):
        z = torch.bernoulli(torch.full((n_samples, 3), 0.5), generator=generator)
        if mask_value is not None:
            z[1, 0] = mask_value
        return z

    @torchlime.batched
    def to_input(z, x, **kw):
        return torch.nan_to_num(z) * x  # finite model outputs whatever the masks

    @torchlime.batched
    def sim(x, xp, z, **kw):
        return torch.full(z.shape[:-1], sim_value).reshape(-1)

    return torchlime.LimeBase(lambda v: v.sum(-1), Ridge(alpha=0.0), sim, perturb, True, to_input, None)


def test_explainer_reports_bad_weights_and_masks_from_the_engine():
    """Weights and masks from user callables are named by the engine's check, not the fit's."""
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"expected finite, non-negative kernel weights, got bad ones at "
                                         r"\(instance, sample\) \[\[0, 0\], \[0, 1\]"):
        _batched_lime_base(-1.0).attribute(torch.ones(1, 3), n_samples=8, generator=gen)
    with pytest.raises(ValueError, match=r"expected finite masks, got NaN or inf at \(instance, sample\) \[\[0, 1\]\]"):
        _batched_lime_base(1.0, mask_value=float("nan")).attribute(torch.ones(1, 3), n_samples=8, generator=gen)
    # validate=False: the engine checks nothing, the fit still checks what it can use
    with pytest.raises(ValueError, match="expected finite, non-negative sample_weight"):
        _batched_lime_base(-1.0).attribute(torch.ones(1, 3), n_samples=8, generator=gen, validate=False)


def _count_checks(monkeypatch) -> dict:
    calls = {"engine": 0, "fit": 0}
    engine_check, fit_check = engine.check_explained, surrogate._check_problem

    def counted_engine(*args, **kwargs):
        calls["engine"] += 1
        return engine_check(*args, **kwargs)

    def counted_fit(*args, **kwargs):
        calls["fit"] += 1
        return fit_check(*args, **kwargs)

    monkeypatch.setattr(engine, "check_explained", counted_engine)
    monkeypatch.setattr(surrogate, "_check_problem", counted_fit)
    return calls


@pytest.mark.parametrize("make", [
    lambda f: torchlime.Lime(f),  # the default lasso
    lambda f: torchlime.Lime(f, interpretable_model=Ridge(alpha=1.0)),
    lambda f: torchlime.Lime(f, interpretable_model=LinearRegression()),
    lambda f: torchlime.KernelShap(f),
])
def test_one_input_check_per_explain_call(monkeypatch, make):
    net = torch.nn.Linear(6, 3)
    explainer = make(net)
    calls = _count_checks(monkeypatch)
    x = torch.randn(2, 6)
    with torch.no_grad():
        explainer.attribute(x, target=1, n_samples=50, generator=torch.Generator().manual_seed(0))
    # Exactly one: the engine checks outputs, weights and masks once after the forwards and
    # tells the fit so (checked=True); the fit's own check (_check_problem) must not run again.
    assert calls == {"engine": 1, "fit": 0}
    with torch.no_grad():
        explainer.attribute(x, target=1, n_samples=50, generator=torch.Generator().manual_seed(0), validate=False)
    # validate=False: the engine checks nothing, so the fit keeps its own check (once).
    assert calls == {"engine": 1, "fit": 1}


def test_auto_budget_checks_once_per_round_never_in_the_fit(monkeypatch):
    net = torch.nn.Linear(5, 2)
    calls = _count_checks(monkeypatch)
    forwards = [0]

    def forward(v):
        forwards[0] += 1
        return net(v)

    with torch.no_grad():
        torchlime.KernelShap(forward).attribute(torch.randn(1, 5), target=0, n_samples="auto", perturbations_per_eval=40,
                                                generator=torch.Generator().manual_seed(0))
    # one round per forward call (perturbations_per_eval samples each), one engine check per round
    assert calls == {"engine": forwards[0], "fit": 0}


def test_one_scalar_read_outside_the_fit():
    """The engine's check reads one flag on the host; the fit's reads are the solver's own."""
    net = torch.nn.Linear(8, 3)
    lime = torchlime.Lime(net, interpretable_model=Ridge(alpha=1.0))
    x = torch.randn(1, 8)
    with torch.no_grad():
        lime.attribute(x, target=0, n_samples=64, generator=torch.Generator().manual_seed(0))  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            lime.attribute(x, target=0, n_samples=64, generator=torch.Generator().manual_seed(0))

    def in_fit(event) -> bool:
        while event is not None:
            if event.name == "torchlime.fit":
                return True
            event = event.cpu_parent
        return False

    reads = [e for e in prof.events() if e.name == "aten::_local_scalar_dense" and not in_fit(e)]
    # Exactly one: check_explained's single bool() of all its flags (outputs, weights, masks);
    # it was three before the checks were merged (one for the outputs, two for the weights).
    assert len(reads) == 1
