"""Repository-wide pytest settings: doctest collection of optional-extra modules."""

import importlib.util

# Modules whose optional extra is not installed cannot be imported for their doctests.
collect_ignore = []
if importlib.util.find_spec("lightning") is None:
    collect_ignore.append("torchlime/training/_lightning.py")
