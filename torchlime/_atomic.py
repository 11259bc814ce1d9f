"""Atomic file writes: nothing a user wrote is lost to a crash half-way through a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any], mode: str | None = "w") -> Path:
    """Write ``path`` through a temporary file in the same folder, then ``os.replace`` it.

    The file gets the permissions a plain ``open`` would give it (``0o666`` minus the
    umask), not ``mkstemp``'s owner-only ``0o600``.

    Args:
        path: the destination (its folder is created).
        write: called with the open temporary file, or with its path when ``mode`` is None.
        mode: the open mode, or None to hand over the temporary path.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if mode is None:
            write(Path(tmp))
        else:
            with open(tmp, mode) as f:
                write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
