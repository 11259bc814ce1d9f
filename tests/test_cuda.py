"""The same engine on CUDA: equal to CPU on the same masks, no host sync on the fit."""

import pytest
import torch

import torchlime
from torchlime import functional as TF
from torchlime.models import Lasso, Ridge

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_lime_on_cuda_equals_cpu_on_same_masks():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    x = torch.randn(3, 8)
    masks = TF.bernoulli_masks(200, 8, batch_shape=(3,), generator=torch.Generator().manual_seed(0))
    for model in (Ridge(alpha=1.0), Lasso(alpha=0.01)):
        cpu = torchlime.Lime(net, interpretable_model=model).attribute(x, target=1, masks=masks, perturbations_per_eval=50)
        gpu = torchlime.Lime(net.cuda(), interpretable_model=model).attribute(
            x.cuda(), target=1, masks=masks.cuda(), perturbations_per_eval=50
        )
        net.cpu()
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-4)


def test_cuda_generator_draws_on_device_and_is_deterministic():
    g = lambda: torch.Generator(device="cuda").manual_seed(3)  # noqa: E731
    a = TF.bernoulli_masks(100, 5, batch_shape=(2,), device="cuda", generator=g())
    assert a.device.type == "cuda" and torch.equal(a, TF.bernoulli_masks(100, 5, batch_shape=(2,), device="cuda", generator=g()))
    with pytest.raises(ValueError, match="expected a torch.Generator on cpu"):
        TF.bernoulli_masks(10, 3, device="cpu", generator=g())


def test_batched_fits_make_no_host_sync():
    X = torch.bernoulli(torch.full((4, 500, 12), 0.5, device="cuda"))
    y = torch.randn(4, 500, 3, device="cuda")
    w = torch.rand(4, 500, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        TF.ridge(X, y, w)
        TF.linear_regression(X, y, w, sync_free=True)  # the default pinv syncs (its error check)
        TF.lasso(X, y, w, alpha=0.01, max_iter=100, sync_free=True)
        TF.bernoulli_masks(100, 12, batch_shape=(4,), device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode(0)
