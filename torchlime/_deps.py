"""Optional dependencies: one place that imports them and says clearly what to install.

The core (``torchlime.Lime``, ``LimeBase``, ``KernelShap``, ``compat``, ``functional``,
``models``) needs torch, captum, numpy and tqdm only. The music explainer, the CLI and the
demo need the ``audio`` extra, whose torchaudio wheels load only with the exact torch build
they were compiled against (a mismatched pair fails with an undefined symbol in
``libtorchaudio.so``), so a failure there is reported with the installed versions and the
command that installs the pair torchlime is tested with.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

__all__ = ["AUDIO_PINS", "AudioStackError", "require_audio_stack", "installed_version", "require"]

#: The torch / torchaudio pair pinned by the ``audio`` extra in pyproject.toml (a test keeps
#: the two equal). torchaudio 2.11.1 does not load with torch 2.11.0, and no torch 2.11.1 is
#: published, so both are pinned exactly.
AUDIO_PINS = {"torch": "2.11.0", "torchaudio": "2.11.0"}


class AudioStackError(ImportError):
    """torchaudio or openunmix is missing or does not load with the installed torch."""


def installed_version(distribution: str) -> str:
    """The installed version of a distribution, or ``"not installed"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _pip_pair() -> str:
    return " ".join(f'"{name}=={version}"' for name, version in AUDIO_PINS.items())


def require_audio_stack(what: str = "torchlime.music") -> None:
    """Import torchaudio and openunmix, or raise one clear :class:`AudioStackError`.

    Args:
        what: the feature that needs them, named in the message.

    Raises:
        AudioStackError: naming the installed torch, torchaudio and openunmix versions,
            the error, and the pip command that installs the matching pair.
    """
    failed = []
    for module in ("torchaudio", "torchaudio.functional", "openunmix"):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - a broken wheel raises OSError, not ImportError
            failed.append((module, err))
            break
    if not failed:
        return
    module, err = failed[0]
    versions = ", ".join(f"{name} {installed_version(name)}" for name in ("torch", "torchaudio", "openunmix"))
    detail = str(err).strip().splitlines()[-1] if str(err).strip() else ""
    raise AudioStackError(
        f"{what} needs torchaudio and openunmix, but importing {module} failed "
        f"({type(err).__name__}: {detail}). Installed: {versions}. torchaudio's wheels load only "
        f"with the torch release they were built for; install the pair torchlime is tested with: "
        f"pip install {_pip_pair()} openunmix soundfile  (or: pip install 'torchlime[audio]')"
    ) from err


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional module, or raise ``ModuleNotFoundError`` naming the extra.

    Args:
        module: the module to import.
        extra: the torchlime extra that installs it.
        what: the feature that needs it, named in the message.

    Returns:
        The module.

    Raises:
        ModuleNotFoundError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"{what} needs {module.split('.')[0]}, which is not installed: pip install 'torchlime[{extra}]'"
        ) from err
