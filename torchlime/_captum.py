"""Every Captum name torchlime relies on, imported and checked in one place.

torchlime subclasses Captum's ``LimeBase``/``Lime``/``KernelShap`` and reuses a few of
Captum's private helpers, whose names can move between Captum's minor releases. This
module imports all of them at ``import torchlime`` time, so a Captum whose internals moved
fails at once with one clear error (the Captum version, what is missing, and the range
torchlime is tested with) instead of deep inside an ``attribute()`` call.
"""

from __future__ import annotations

from typing import Any

from ._deps import installed_version

__all__ = [
    "CAPTUM_RANGE",
    "CaptumLimeBase",
    "CaptumLime",
    "CaptumKernelShap",
    "CaptumModel",
    "PerturbationAttribution",
    "format_tensor_into_tuples",
    "is_tuple",
    "construct_default_feature_mask",
    "format_input_baseline",
    "lime_base_attribute",
    "lime_attribute_kwargs",
    "select_example",
]

#: The Captum releases the tests run against (pyproject.toml bounds captum to the same range).
CAPTUM_RANGE = ">=0.9,<0.10"


def _missing(what: str, err: BaseException | None = None) -> ImportError:
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return ImportError(
        f"torchlime needs Captum's {what}, which the installed captum {installed_version('captum')} does not "
        f"have{detail}; torchlime is tested with captum{CAPTUM_RANGE}: pip install 'captum{CAPTUM_RANGE}'"
    )


try:
    from captum._utils.common import _format_tensor_into_tuples as format_tensor_into_tuples
    from captum._utils.common import _is_tuple as is_tuple
    from captum._utils.models.model import Model as CaptumModel
    from captum.attr import KernelShap as CaptumKernelShap
    from captum.attr import Lime as CaptumLime
    from captum.attr import LimeBase as CaptumLimeBase
    from captum.attr._utils.attribution import PerturbationAttribution
    from captum.attr._utils.batching import _select_example as select_example
    from captum.attr._utils.common import _construct_default_feature_mask as construct_default_feature_mask
    from captum.attr._utils.common import _format_input_baseline as format_input_baseline
except ImportError as _err:
    raise _missing("internal helpers (captum._utils.common, captum.attr._utils)", _err) from _err


def _unlogged(method: Any, name: str) -> Any:
    """A Captum method without its usage-logging decorator (``__wrapped__``)."""
    inner = getattr(method, "__wrapped__", None)
    if not callable(inner):
        raise _missing(f"{name}.__wrapped__ (the attribute method under its logging decorator)")
    return inner


#: ``captum.attr.LimeBase.attribute`` without Captum's usage logging.
lime_base_attribute = _unlogged(CaptumLimeBase.attribute, "LimeBase.attribute")

lime_attribute_kwargs = getattr(CaptumLime, "_attribute_kwargs", None)
if not callable(lime_attribute_kwargs):
    raise _missing("Lime._attribute_kwargs")
