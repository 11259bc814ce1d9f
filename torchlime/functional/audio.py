"""Audio samples as numbers: integer PCM scaled to [-1, 1] the way soundfile and torchaudio read it.

Shape glossary: C channels, T audio samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pcm_to_float"]

# dtype: (offset, full scale). libsndfile (soundfile) and torchaudio read integer PCM as
# float by dividing by the full scale, 2^(bits - 1): an int16 sample x reads as x / 32768,
# so -32768 is -1 and 32767 is 1 - 2^-15; unsigned 8-bit PCM is offset by 128 first.
_PCM = {
    torch.uint8: (128, 2.0**7),
    torch.int8: (0, 2.0**7),
    torch.int16: (0, 2.0**15),
    torch.int32: (0, 2.0**31),
}


def pcm_to_float(waveform: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Integer PCM samples as floats in [-1, 1); floating-point audio is returned as it is.

    The scaling soundfile (``sf.read(..., dtype="float32")``) and torchaudio apply when they
    read a PCM file: ``x / 2^(bits - 1)`` for int8, int16 and int32, ``(x - 128) / 128``
    for unsigned 8-bit. The scale is a power of two, so an int16 or int8 sample converts
    exactly, and an int32 one rounds as libsndfile rounds it.

    Args:
        waveform: ``(..., T)`` integer PCM (uint8, int8, int16, int32) or floating point.
        dtype: the floating-point dtype of scaled integer PCM (float32, as soundfile reads).

    Returns:
        ``waveform`` itself when it is floating point, else ``(..., T)`` in ``dtype``.

    Raises:
        TypeError: not a tensor, another integer dtype (int64, bool) or complex samples,
            a ``dtype`` that is not floating point.

    Example:
        >>> pcm_to_float(torch.tensor([-32768, 0, 16384], dtype=torch.int16))
        tensor([-1.0000,  0.0000,  0.5000])
        >>> pcm_to_float(torch.tensor([0, 128, 255], dtype=torch.uint8))
        tensor([-1.0000,  0.0000,  0.9922])
    """
    if not isinstance(waveform, Tensor):
        raise TypeError(f"expected audio as a torch.Tensor, got {type(waveform).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"expected a floating-point dtype to scale PCM to, got {dtype}")
    if waveform.dtype.is_floating_point:
        return waveform
    if waveform.dtype not in _PCM:
        raise TypeError(
            f"expected floating-point audio or integer PCM ({', '.join(str(d).split('.')[-1] for d in _PCM)}), "
            f"got {waveform.dtype}"
        )
    offset, scale = _PCM[waveform.dtype]
    x = waveform.to(dtype)
    if offset:
        x = x - offset
    return x / scale
