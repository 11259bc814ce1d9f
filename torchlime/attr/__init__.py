"""Captum-compatible attribution classes on the batched engine."""

from ._batched import batched
from ._lime import KernelShap, Lime, get_exp_kernel_similarity_function
from ._lime_base import LimeBase

__all__ = ["LimeBase", "Lime", "KernelShap", "get_exp_kernel_similarity_function", "batched"]
