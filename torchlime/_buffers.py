"""One output buffer reused across the chunks of a call on CPU (fresh large allocations
cost page faults there; CUDA's caching allocator makes them cheap)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["chunk_buffer"]


def chunk_buffer(buffers: dict[Any, Tensor] | None, key: Any, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    """An uninitialised ``shape`` tensor: a view of ``buffers[key]`` (grown as needed) on CPU
    when ``buffers`` is given and no gradient is recorded, else a fresh one."""
    if buffers is None or device.type != "cpu" or torch.is_grad_enabled():
        return torch.empty(shape, dtype=dtype, device=device)
    numel = math.prod(shape)
    buf = buffers.get(key)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        buf = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel].view(shape)
