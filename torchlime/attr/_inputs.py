"""What Captum's ``Lime``/``KernelShap`` accept, checked once at the boundary with clear messages.

Captum lets a bad input run until something deep inside torch fails (an IndexError for an
empty batch, a shape error in the model for zero features, an AssertionError for a list
feature mask); these checks name the argument, what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_inputs", "check_broadcasts_to", "check_forward_output"]


def check_inputs(inputs: tuple[Tensor, ...], baselines: tuple[Any, ...], feature_mask: Any) -> None:
    """Raise on inputs ``Lime.attribute`` cannot explain.

    Args:
        inputs: the formatted input tensors, each ``(B, ...)``.
        baselines: the formatted baselines (one per input; tensors or scalars).
        feature_mask: what the user passed as ``feature_mask``.

    Raises:
        TypeError: a non-tensor input or feature mask, complex inputs or baselines.
        ValueError: a 0-dim input, an empty batch, no value to perturb, inputs on the
            meta device or on several devices, baselines that do not broadcast.
    """
    for j, x in enumerate(inputs):
        name = f"inputs[{j}]" if len(inputs) > 1 else "inputs"
        if not isinstance(x, Tensor):
            raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError(f"expected {name} with a batch dim, shape (B, ...), got a 0-dim tensor")
        if x.shape[0] == 0:
            raise ValueError(f"expected at least one example in {name} (dim 0), got shape {tuple(x.shape)}")
        if x.is_complex():
            raise TypeError(
                f"expected real {name}, got {x.dtype} (perturb its real and imaginary parts, or magnitude and "
                f"phase, as separate real inputs)"
            )
        if x.device.type == "meta":
            raise ValueError(f"expected {name} on a device with data (cpu, cuda, ...), got it on meta")
    if len({x.device for x in inputs}) > 1:
        raise ValueError(f"expected every input on one device, got {[str(x.device) for x in inputs]}")
    if len({x.shape[0] for x in inputs if x.numel()}) > 1:
        raise ValueError(f"expected every input with the same number of examples (dim 0), got {[tuple(x.shape) for x in inputs]}")
    if all(x[0].numel() == 0 for x in inputs):
        raise ValueError(
            f"expected at least one value per example to perturb, got inputs of shape "
            f"{[tuple(x.shape) for x in inputs]}"
        )
    for j, (x, b) in enumerate(zip(inputs, baselines)):
        name = f"baselines[{j}]" if len(inputs) > 1 else "baselines"
        if isinstance(b, Tensor):
            if b.is_complex():
                raise TypeError(f"expected real {name}, got {b.dtype}")
            check_broadcasts_to(b, x, name)
        elif not isinstance(b, (int, float)) or isinstance(b, bool):
            raise TypeError(f"expected {name} as a tensor or a number, got {type(b).__name__}")
    if feature_mask is not None and not isinstance(feature_mask, (Tensor, tuple)):
        raise TypeError(f"expected feature_mask as a tensor or a tuple of tensors (one per input), got {type(feature_mask).__name__}")


def check_broadcasts_to(t: Tensor, x: Tensor, name: str) -> None:
    """Raise unless ``t`` broadcasts to ``x``'s shape exactly (a baseline or a feature mask to its input).

    Raises:
        ValueError: naming ``name``, the input's shape and ``t``'s.
    """
    try:
        shape = torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"expected {name} to broadcast to its input of shape {tuple(x.shape)}, got shape {tuple(t.shape)}"
        )


def check_forward_output(out: Any) -> Tensor:
    """The model's output on the unperturbed inputs as a real tensor, or a clear error."""
    if out is None or isinstance(out, (tuple, list, dict)):
        raise TypeError(f"expected forward_func to return a tensor, got {'None' if out is None else type(out).__name__}")
    out = torch.as_tensor(out)
    if out.is_complex():
        raise TypeError(f"expected forward_func to return real values, got a {out.dtype} tensor")
    return out
