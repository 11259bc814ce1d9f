"""Atomic file writes: nothing a user wrote is lost to a crash half-way through a file.

A file is written as a hidden temporary file next to it, ``.<name>.<8 random
characters>.torchlime-tmp<suffix>`` (``.song.json.k2j3h4g5.torchlime-tmp.json``), then
renamed over it. A crash (SIGKILL, power loss) between the two leaves that temporary file
behind: :func:`remove_stale_temporary_files` removes ours, by that name, at the start of
the next run.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "WriteError", "TEMPORARY_MARK", "is_temporary_file", "remove_stale_temporary_files"]

#: What the name of every temporary file of :func:`atomic_write` holds before the suffix.
TEMPORARY_MARK = ".torchlime-tmp"
# ours: .<name>.<mkstemp's 8 characters>.torchlime-tmp<suffix>; and the name before the
# mark was added, .<name>.<8 characters><suffix of name>
_OURS = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}" + re.escape(TEMPORARY_MARK) + r"(?P<suffix>\.[^.]*)?$")
_OLD = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$")
#: A temporary file modified this long (seconds) before a run started is a crash's leftover;
#: a newer one may be another run's write in progress (runs may share a folder).
STALE_AFTER_S = 60.0


class WriteError(OSError):
    """A write that failed (a read-only folder, a full disk): ``filename`` is the file that
    was being written, ``strerror`` why. What was at ``filename`` before is unchanged.

    Example:
        >>> str(WriteError(28, "No space left on device", "out/song.json"))
        'could not write out/song.json: No space left on device'
    """

    def __str__(self) -> str:
        return f"could not write {self.filename}: {self.strerror}"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any], mode: str | None = "w") -> Path:
    """Write ``path`` through a temporary file in the same folder, then ``os.replace`` it.

    The file gets the permissions a plain ``open`` would give it (``0o666`` minus the
    umask), not ``mkstemp``'s owner-only ``0o600``. The temporary file keeps ``path``'s
    suffix (for writers that go by it) and is removed on any error.

    Args:
        path: the destination (its folder is created).
        write: called with the open temporary file, or with its path when ``mode`` is None.
        mode: the open mode, or None to hand over the temporary path.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        WriteError: the folder or the file could not be written (an :class:`OSError`
            naming ``path``, not the temporary file).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_MARK + path.suffix, dir=path.parent)
        os.close(fd)
        if mode is None:
            write(Path(tmp))
        else:
            with open(tmp, mode) as f:
                write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:  # the folder turned read-only: nothing more to do
                pass
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    return path


def is_temporary_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as a temporary file of :func:`atomic_write` (also the
    names of torchlime versions before :data:`TEMPORARY_MARK`: ``.<name>.<8 characters><suffix>``).

    Example:
        >>> is_temporary_file(".song.json.k2j3h4g5.torchlime-tmp.json"), is_temporary_file("song.json")
        (True, False)
        >>> is_temporary_file(".song.json.k2j3h4g5.json"), is_temporary_file(".song.json.k2j3h4g5.wav")
        (True, False)
        >>> is_temporary_file(".config.abcdefgh")  # a hidden file of someone else's
        False
    """
    name = Path(path).name
    match = _OURS.match(name)
    if match and Path(match["name"]).suffix == (match["suffix"] or ""):
        return True
    match = _OLD.match(name)  # without the mark, only names with a suffix repeated at the end
    return bool(match and match["suffix"] and Path(match["name"]).suffix == match["suffix"])


def remove_stale_temporary_files(folder: str | os.PathLike, started: float | None = None) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` an interrupted run left in ``folder``.

    Only files named as ours (:func:`is_temporary_file`) and last modified more than
    :data:`STALE_AFTER_S` seconds before ``started`` are removed: a newer one may be a
    concurrent run's write in progress. Files that cannot be removed are left.

    Args:
        folder: the folder (a missing one has nothing to remove).
        started: when this run started (``time.time()``; None: now).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = (time.time() if started is None else started) - STALE_AFTER_S
    removed = []
    for path in folder.glob(".*"):
        try:
            if is_temporary_file(path) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return sorted(removed)
