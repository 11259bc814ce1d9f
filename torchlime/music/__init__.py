"""The multimodal music explainer (MusicLIME on torchlime's engine).

Audio is perturbed as source-separated stems x temporal segments, lyrics as lines or
words. Names resolve lazily so that the audio and text extras are imported only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StemFactorization": "._stems",
    "LyricsFactorization": "._lyrics",
    "OpenUnmixSeparator": "._separator",
    "MusicLime": "._explainer",
    "Explanation": "._explanation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
