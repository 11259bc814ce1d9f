"""The multimodal music explainer (MusicLIME on torchlime's engine).

Audio is perturbed as source-separated stems x temporal segments, lyrics as lines or
words. It needs the ``audio`` extra (torchaudio, openunmix): importing this package checks
that they load and otherwise raises one :class:`torchlime.AudioStackError` naming the
installed versions and the pip command for the matching pair. Names resolve lazily so that
the text extra is imported only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._deps import require_audio_stack

require_audio_stack("torchlime.music")

_EXPORTS = {
    "StemFactorization": "._stems",
    "LyricsFactorization": "._lyrics",
    "OpenUnmixSeparator": "._separator",
    "save_separator": "._separator",
    "MusicLime": "._explainer",
    "Explanation": "._explanation",
    "read_audio": "._audio",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
