"""The demo model as a ``torchlime explain --model`` factory.

``torchlime explain --model torchlime.music.demo.factory:factory ...`` explains any song
with the shipped demo classifier; ``torchlime demo`` uses it too.

The classifier was trained on 6 s songs at 8 kHz and its audio encoder reads at most 256
mel frames (about 8.2 s). For songs of any length the factory's ``forward`` is
:meth:`~torchlime.music.demo.DemoClassifier.forward_windows`: up to 8.2 s it is the model's
own forward; a longer song's frames are cut into ``ceil(frames / 256)`` consecutive windows
of near-equal length, each encoded on its own, and the audio vector is the mean over all
frames of all windows (the whole song counts, nothing is cut off).
"""

from __future__ import annotations

from typing import Any

import torch

from .model import DEMO_CLASSES, DEMO_MAX_LENGTH, DEMO_SAMPLE_RATE, load_demo


def factory(device: torch.device | str | None = None) -> dict[str, Any]:
    """The demo classifier in the ``--model`` contract (logits, so ``apply_softmax``), any song length.

    Example:
        >>> spec = factory("cpu")
        >>> ids = spec["tokenizer"](["hello"], return_tensors="pt")
        >>> spec["forward"](torch.zeros(1, 1, 8000 * 20), ids["input_ids"], ids["attention_mask"]).shape
        torch.Size([1, 2])
    """
    model, tokenizer = load_demo(device)
    return dict(
        forward=model.forward_windows, sample_rate=DEMO_SAMPLE_RATE, tokenizer=tokenizer,
        max_length=DEMO_MAX_LENGTH, labels=list(DEMO_CLASSES), apply_softmax=True, channels=1,
    )
