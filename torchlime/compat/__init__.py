"""Drop-ins for other LIME implementations (``lime``)."""

from ._lime_base import LimeBase

__all__ = ["LimeBase"]
