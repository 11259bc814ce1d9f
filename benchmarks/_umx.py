"""Random-initialised Open-Unmix checkpoints of the published architectures, for timing.

The published weights cannot be downloaded on the build machines, and separation time
depends on the architecture, not on the weights: :func:`write_checkpoint` saves a folder
in openunmix's format with :func:`torchlime.music.save_separator` (what
``torchlime separator save`` writes and :class:`torchlime.music.OpenUnmixSeparator` loads)
holding randomly initialised models of the ``umxhq`` or ``umxl`` architecture (``tiny`` is
a small stand-in for the test suite).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TARGETS = ("vocals", "drums", "bass", "other")

#: openunmix's hub definitions (openunmix/__init__.py: umxhq_spec, umxl_spec): STFT 4096/1024
#: at 44.1 kHz, stereo, 16 kHz bandwidth; umxhq has hidden size 512, umxl 1024.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "umxhq": {"nfft": 4096, "nhop": 1024, "hidden_size": 512, "bandwidth": 16000, "sample_rate": 44100},
    "umxl": {"nfft": 4096, "nhop": 1024, "hidden_size": 1024, "bandwidth": 16000, "sample_rate": 44100},
    "tiny": {"nfft": 1024, "nhop": 512, "hidden_size": 16, "bandwidth": 16000, "sample_rate": 44100},
}


def write_checkpoint(folder: Path, arch: str = "umxhq", seed: int = 0) -> dict[str, Any]:
    """Write a random-init stereo Open-Unmix checkpoint folder of architecture ``arch``.

    Returns:
        What the JSON records about it (architecture, parameters, bytes on disk).
    """
    from openunmix.model import OpenUnmix, Separator
    from openunmix.utils import bandwidth_to_max_bin

    from torchlime.music import OpenUnmixSeparator, save_separator

    spec = ARCHITECTURES[arch]
    max_bin = int(bandwidth_to_max_bin(rate=spec["sample_rate"], n_fft=spec["nfft"], bandwidth=spec["bandwidth"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch in ("umxhq", "umxl"):  # the published architecture, built by openunmix's hub code
            module = OpenUnmixSeparator(arch, targets=list(TARGETS), pretrained=False, device="cpu").module
        else:
            nets = {t: OpenUnmix(nb_bins=spec["nfft"] // 2 + 1, nb_channels=2, hidden_size=spec["hidden_size"],
                                 max_bin=max_bin) for t in TARGETS}
            module = Separator(nets, sample_rate=spec["sample_rate"], n_fft=spec["nfft"], n_hop=spec["nhop"],
                               nb_channels=2)
    save_separator(module, folder)
    params = sum(p.numel() for net in module.target_models.values() for p in net.parameters())
    return {
        "architecture": arch,
        "weights": "random initialisation (seed %d), saved as a local checkpoint folder: the published "
        "weights cannot be downloaded here; separation time depends on the architecture only" % seed,
        **spec,
        "max_bin": max_bin,
        "targets": list(TARGETS),
        "parameters": params,
    }
