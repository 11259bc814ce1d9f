"""``torchlime.LimeBase.attribute``: Captum's public signature, extras only as documented."""

import inspect

import torch
from captum.attr import LimeBase as CaptumLimeBase

import torchlime
from torchlime.models import Ridge, TorchLinearModel


def test_attribute_signature_is_captums():
    ours = inspect.signature(torchlime.LimeBase.attribute).parameters
    theirs = inspect.signature(CaptumLimeBase.attribute).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_private_keywords_are_not_extras(monkeypatch):
    """Standard errors follow ``return_fit`` alone; a keyword the class docstring does not list
    (such as the former private ``_stderr``) goes to the callables, as in Captum."""

    @torchlime.batched
    def perturb(x, *, n_samples, generator=None, **kw):
        return torch.bernoulli(torch.full((n_samples, 3), 0.5), generator=generator)

    @torchlime.batched
    def to_input(z, x, **kw):
        return z * x

    seen = []

    @torchlime.batched
    def sim(x, xp, z, **kw):
        seen.append(sorted(kw))
        return torch.ones(z.shape[:-1]).reshape(-1)

    calls = []
    original = TorchLinearModel.stderr
    monkeypatch.setattr(TorchLinearModel, "stderr", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    lb = torchlime.LimeBase(lambda v: v @ torch.tensor([1.0, -2.0, 0.5]), Ridge(alpha=0.0), sim, perturb, True,
                            to_input, None)
    gen = torch.Generator().manual_seed(0)
    coef = lb.attribute(torch.ones(1, 3), n_samples=32, generator=gen, _stderr=True)
    assert calls == [] and {tuple(k) for k in seen} == {("_stderr",)} and coef.shape == (1, 3)
    fit = lb.attribute(torch.ones(1, 3), n_samples=32, generator=gen, return_fit=True)
    assert calls == [1] and fit.stderr.shape == (1, 3)
