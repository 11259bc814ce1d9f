"""Bad inputs to the Captum drop-ins fail at the boundary with a message that names them (issue 15)."""

import pytest
import torch

from torchlime import KernelShap, Lime

NET = torch.nn.Linear(8, 3)


@pytest.mark.parametrize("cls", [Lime, KernelShap])
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(inputs=torch.zeros(0, 8)), ValueError, r"expected at least one example in inputs \(dim 0\), got shape \(0, 8\)"),
        (dict(inputs=torch.tensor(1.0)), ValueError, r"expected inputs with a batch dim, shape \(B, \.\.\.\), got a 0-dim tensor"),
        (dict(inputs=torch.zeros(2, 0)), ValueError, r"expected at least one value per example to perturb, got inputs of shape \[\(2, 0\)\]"),
        (dict(inputs=torch.zeros(2, 8), feature_mask=list(range(8))), TypeError, "expected feature_mask as a tensor or a tuple of tensors .* got list"),
        (dict(inputs=torch.zeros(2, 8), baselines=torch.zeros(3, 5)), ValueError, r"expected baselines to broadcast to its input of shape \(2, 8\), got shape \(3, 5\)"),
        (dict(inputs=torch.zeros(2, 8, device="meta")), ValueError, "expected inputs on a device with data .* got it on meta"),
        (dict(inputs=torch.zeros(2, 8, dtype=torch.complex64)), TypeError, "expected real inputs, got torch.complex64"),
        (dict(inputs=torch.zeros(2, 8), target=torch.tensor([0.7, 1.2])), ValueError, "expected integer class indices as target, got a torch.float32 tensor"),
        (dict(inputs=[torch.zeros(2, 8)]), TypeError, "expected inputs as a tensor or a tuple of tensors, got list"),
    ],
)
def test_bad_inputs(cls, kwargs, error, match):
    kwargs.setdefault("target", 0)
    with pytest.raises(error, match=match):
        cls(NET).attribute(n_samples=10, **kwargs)


@pytest.mark.parametrize("cls", [Lime, KernelShap])
@pytest.mark.parametrize(
    "forward, error, match",
    [
        (lambda x: (NET(x),), TypeError, "expected forward_func to return a tensor.* got tuple"),
        (lambda x: None, TypeError, "expected forward_func to return a tensor.* got None"),
        (lambda x: NET(x).to(torch.complex64), TypeError, "expected forward_func to return real values, got a torch.complex64 tensor"),
    ],
)
@pytest.mark.parametrize("batch", [1, 2])
def test_bad_forward_outputs(cls, forward, error, match, batch):
    with pytest.raises(error, match=match):
        cls(forward).attribute(torch.zeros(batch, 8), target=0, n_samples=10)


def test_integer_tensor_targets_still_work():
    x = torch.randn(2, 8)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = Lime(NET).attribute(x, target=torch.tensor([0, 2]), n_samples=20, generator=g())
    b = Lime(NET).attribute(x, target=[0, 2], n_samples=20, generator=g())
    torch.testing.assert_close(a, b)
