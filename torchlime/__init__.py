"""torchlime: PyTorch-native, fully tensorized LIME.

Drop-ins for Captum's ``LimeBase``, ``Lime`` and ``KernelShap`` and for
``lime.lime_base.LimeBase`` (``torchlime.compat``), built on pure tensor functions
(``torchlime.functional``) that run batched on the input's device.
"""

from . import functional, models
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
]
