"""A self-contained demo for the music explainer: synthetic songs with a planted cause and
a small trained audio + lyrics classifier whose weights ship with the package.

- :mod:`.data`: ``make_song`` / ``make_dataset`` synthesise songs (four stems, 12 lyric
  lines) whose class is decided by a planted cause: dense drums in segments 2-4 AND two
  trigger lines (see :mod:`torchlime.music.demo.data`).
- :mod:`.model`: ``DemoClassifier`` (``transformers`` BERT encoders over log-mel frames
  and tokens) and ``load_demo`` for the shipped weights and tokenizer.
- :mod:`.training`: ``train`` writes new weights (``scripts/train_demo.py`` is its CLI).

Names resolve lazily, so ``make_song`` needs torch only.

Example:
    >>> from torchlime.music.demo import collate, load_demo, make_song
    >>> model, tokenizer = load_demo()
    >>> song = make_song(1, seed=0)
    >>> probs = model(*collate([song], tokenizer)).softmax(-1)  # (1, 2)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "STEM_NAMES": ".data",
    "NUM_SEGMENTS": ".data",
    "CAUSE_SEGMENTS": ".data",
    "DECOY_BLOCKS": ".data",
    "TRIGGER_WORDS": ".data",
    "NEGATIVE_KINDS": ".data",
    "NUM_LINES": ".data",
    "DemoSong": ".data",
    "make_song": ".data",
    "make_dataset": ".data",
    "lyric_pool": ".data",
    "trigger_pool": ".data",
    "segment_edges": ".data",
    "DEMO_SAMPLE_RATE": ".model",
    "DEMO_MAX_LENGTH": ".model",
    "DEMO_CLASSES": ".model",
    "DemoConfig": ".model",
    "DemoClassifier": ".model",
    "load_demo": ".model",
    "encode_lyrics": ".model",
    "collate": ".model",
    "train": ".training",
    "build_tokenizer": ".training",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
