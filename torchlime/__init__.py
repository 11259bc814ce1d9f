"""torchlime: PyTorch-native, fully tensorized LIME.

Drop-ins for Captum's ``LimeBase``, ``Lime`` and ``KernelShap`` and for
``lime.lime_base.LimeBase`` (``torchlime.compat``), built on pure tensor functions
(``torchlime.functional``) that run batched on the input's device.
"""

import importlib.util

from . import functional, models
from ._deps import AudioStackError
from .aggregation import GlobalImportance
from .attr import KernelShap, Lime, LimeBase, batched, get_exp_kernel_similarity_function

__version__ = "0.1.0"

__all__ = [
    "LimeBase",
    "Lime",
    "KernelShap",
    "get_exp_kernel_similarity_function",
    "batched",
    "functional",
    "models",
    "GlobalImportance",
    "AudioStackError",
]
# GlobalAggregator needs torchmetrics (the "metrics" extra) and is imported on first use;
# `from torchlime import *` lists it only where torchmetrics is installed, so that the star
# import works without the extras.
if importlib.util.find_spec("torchmetrics") is not None:
    __all__.append("GlobalAggregator")


def __getattr__(name: str):
    if name == "GlobalAggregator":  # needs torchmetrics (the "metrics" extra): import on first use
        from ._deps import require

        require("torchmetrics", "metrics", "torchlime.GlobalAggregator")
        from . import aggregation

        return aggregation.GlobalAggregator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
