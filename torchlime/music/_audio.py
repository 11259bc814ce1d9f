"""Reading songs from audio files: ``(C, T)`` float32 in [-1, 1] and the sample rate.

Shape glossary: C channels, T audio samples.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..functional.audio import pcm_to_float

__all__ = ["read_audio"]

# Integer PCM subtypes soundfile reads as integers without loss (8-bit PCM arrives as the
# top byte of an int16, 24-bit as the top three bytes of an int32), scaled by pcm_to_float:
# the one place integer samples become floats, for files and for tensors alike.
_INTEGER_READS = {"PCM_S8": "int16", "PCM_U8": "int16", "PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32"}


def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """Read an audio file with soundfile as ``(C, T)`` float32 in [-1, 1] and its sample rate.

    Integer PCM is read as integers and scaled by :func:`torchlime.functional.pcm_to_float`
    (the same numbers as ``soundfile.read(path, dtype="float32")``); other encodings (float,
    compressed) are read as float32 by soundfile.

    Args:
        path: any file soundfile (libsndfile) reads: WAV, FLAC, OGG, AIFF, ...

    Returns:
        ``(waveform (C, T) float32, sample_rate)``.

    Raises:
        ValueError: a missing file or one soundfile cannot read, naming the file.

    Example:
        >>> import os, tempfile, numpy as np, soundfile
        >>> path = os.path.join(tempfile.mkdtemp(), "song.wav")
        >>> soundfile.write(path, np.array([[0, 16384], [-32768, 0]], dtype=np.int16), 8000, subtype="PCM_16")
        >>> read_audio(path)
        (tensor([[ 0.0000, -1.0000],
                [ 0.5000,  0.0000]]), 8000)
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected an audio file, got {str(path)!r}, which does not exist")
    try:
        subtype = sf.info(str(path)).subtype
        data, rate = sf.read(str(path), dtype=_INTEGER_READS.get(subtype, "float32"), always_2d=True)
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
        raise ValueError(f"could not read audio file {str(path)!r}: {err}") from err
    return pcm_to_float(torch.from_numpy(data.T.copy())), int(rate)
