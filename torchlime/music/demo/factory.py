"""The demo model as a ``torchlime explain --model`` factory.

``torchlime explain --model torchlime.music.demo.factory:factory ...`` explains any song
with the shipped demo classifier; ``torchlime demo`` uses it too.
"""

from __future__ import annotations

from typing import Any

import torch

from .model import DEMO_CLASSES, DEMO_MAX_LENGTH, DEMO_SAMPLE_RATE, load_demo


def factory(device: torch.device | str | None = None) -> dict[str, Any]:
    """The demo classifier in the ``--model`` contract (logits, so ``apply_softmax``)."""
    model, tokenizer = load_demo(device)
    return dict(
        forward=model, sample_rate=DEMO_SAMPLE_RATE, tokenizer=tokenizer, max_length=DEMO_MAX_LENGTH,
        labels=list(DEMO_CLASSES), apply_softmax=True, channels=1,
    )
