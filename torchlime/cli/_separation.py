"""Where a song's stems come from: Open-Unmix (cached), no separation, or stem files you have.

- ``--separator NAME|DIR`` (default ``umxl``): Open-Unmix separates the song, with a
  progress bar; the stems are cached on disk, keyed by the song's samples and the
  separator's identity, so explaining the same song again does not separate it again.
- ``--separator none``: the mixture is the only stem (``mixture``), so the audio features
  are the G segments.
- ``--stems DIR``: precomputed stems, one audio file per stem, named after the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_SEPARATOR",
    "NO_SEPARATION",
    "AUDIO_SUFFIXES",
    "default_cache_dir",
    "MixtureAsStem",
    "CachedSeparator",
    "build_separator",
    "read_stems",
]

DEFAULT_SEPARATOR = "umxl"
NO_SEPARATION = "none"
#: Files of a ``--stems`` folder taken as stems (what soundfile reads); others are ignored.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".opus", ".w64", ".caf")
#: Bumped when what a cache file holds changes.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$TORCHLIME_CACHE/stems``, else ``$XDG_CACHE_HOME/torchlime/stems``, else ``~/.cache/torchlime/stems``."""
    if os.environ.get("TORCHLIME_CACHE"):
        return Path(os.environ["TORCHLIME_CACHE"]).expanduser() / "stems"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "torchlime" / "stems"


def _out_length(T: int, in_rate: int, out_rate: int) -> int:
    """``round(T * out_rate / in_rate)``, half up, exactly (the separator's rule)."""
    return (2 * T * out_rate + in_rate) // (2 * in_rate)


def _resample(x: Tensor, in_rate: int, out_rate: int) -> Tensor:
    """``x (..., T)`` at ``out_rate``, padded or trimmed to :func:`_out_length` samples."""
    if in_rate == out_rate:
        return x
    import torchaudio.functional as AF

    length = _out_length(x.shape[-1], in_rate, out_rate)
    y = AF.resample(x.to(torch.float32), in_rate, out_rate)
    return torch.nn.functional.pad(y, (0, max(0, length - y.shape[-1])))[..., :length]


class MixtureAsStem:
    """``--separator none``: the song itself as the only stem, named ``mixture``."""

    targets = ["mixture"]
    identity = {"model": NO_SEPARATION}

    def separate_many(self, audios: list[Tensor], sample_rates: list[int], output_sample_rate: int,
                      labels: list[str] | None = None) -> list[Tensor]:
        """One ``(1, C, T')`` per song."""
        return [self.separate(a, r, output_sample_rate)[..., :, :, :] for a, r in zip(audios, sample_rates)]

    def separate(self, audio: Tensor, sample_rate: int, output_sample_rate: int | None = None, **_: Any) -> Tensor:
        """``(1, C, T')`` for ``(C, T)`` (``(B, 1, C, T')`` for ``(B, C, T)``), resampled once."""
        out_rate = output_sample_rate or sample_rate
        x = audio.reshape(1, -1) if audio.dim() == 1 else audio
        return _resample(x.to(torch.float32), sample_rate, out_rate).unsqueeze(-3)


class CachedSeparator:
    """A separator whose stems are kept on disk, keyed by the song's samples and the separator.

    The key is the SHA-256 of the separator's :attr:`identity` (model name or checkpoint
    hash, targets, options, openunmix version), the input and output rates and the
    mixture's samples as separated (after the mono mix-down for mono models). Files are
    written atomically (``<cache_dir>/<key>.pt``); an unreadable or mismatched file is
    separated again and replaced. The device is not part of the key.

    Args:
        separator: an :class:`~torchlime.music.OpenUnmixSeparator` (anything with
            ``targets``, ``identity`` and ``separate(audio, rate, output_sample_rate, show_progress=)``).
        cache_dir: the folder, or None for no cache (separation with progress only).
        show_progress: the separator's progress bar.
        log: where to say that stems came from the cache (None: silent).
    """

    def __init__(self, separator: Any, cache_dir: Path | None, *, show_progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.separator = separator
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self.log = log
        self.label = "song"

    @property
    def targets(self) -> list[str]:
        return list(self.separator.targets)

    @property
    def identity(self) -> dict[str, Any]:
        return self.separator.identity

    def key(self, audio: Tensor, sample_rate: int, output_sample_rate: int) -> str:
        digest = hashlib.sha256()
        head = {"format": CACHE_FORMAT, "separator": self.identity, "sample_rate": int(sample_rate),
                "output_sample_rate": int(output_sample_rate), "shape": list(audio.shape)}
        digest.update(json.dumps(head, sort_keys=True).encode())
        digest.update(audio.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def separate(self, audio: Tensor, sample_rate: int, output_sample_rate: int | None = None, **_: Any) -> Tensor:
        out_rate = output_sample_rate or sample_rate
        if self.cache_dir is None:
            return self._separate(audio, sample_rate, out_rate)
        path = self.cache_dir / f"{self.key(audio, sample_rate, out_rate)}.pt"
        stems = self._load(path, audio, sample_rate, out_rate)
        if stems is not None:
            if self.log is not None:
                self.log(f"stems of {self.label} from the cache ({path})")
            return stems.to(audio.device)
        stems = self._separate(audio, sample_rate, out_rate)
        self._save(path, stems)
        return stems

    def separate_many(self, audios: list[Tensor], sample_rates: list[int], output_sample_rate: int,
                      labels: list[str] | None = None) -> list[Tensor]:
        """Stems of several songs: cached ones from disk, the others separated together.

        Songs of one shape and rate go through the separator in one batched call (Open-Unmix
        takes ``(B, C, T)``), which keeps a GPU busy where one song at a time would not;
        each song's stems are then cached on their own, as :meth:`separate` does.

        Returns:
            One ``(S, C, T')`` tensor per song, in order.
        """
        labels = labels or [f"song {i}" for i in range(len(audios))]
        out: list[Tensor | None] = [None] * len(audios)
        todo: dict[tuple, list[int]] = {}
        for i, (audio, rate) in enumerate(zip(audios, sample_rates)):
            path = self.cache_dir / f"{self.key(audio, rate, output_sample_rate)}.pt" if self.cache_dir else None
            cached = self._load(path, audio, rate, output_sample_rate) if path is not None else None
            if cached is not None:
                if self.log is not None:
                    self.log(f"stems of {labels[i]} from the cache ({path})")
                out[i] = cached.to(audio.device)
            else:
                todo.setdefault((tuple(audio.shape), int(rate), str(audio.device)), []).append(i)
        for (_, rate, _), members in todo.items():
            self.label = ", ".join(labels[i] for i in members) if len(members) <= 3 else f"{len(members)} songs"
            batch = torch.stack([audios[i].reshape(-1, audios[i].shape[-1]) for i in members])
            stems = self._separate(batch, rate, output_sample_rate)  # (B, S, C, T')
            for i, song_stems in zip(members, stems):
                out[i] = song_stems
                if self.cache_dir is not None:
                    self._save(self.cache_dir / f"{self.key(audios[i], rate, output_sample_rate)}.pt", song_stems)
        return out  # type: ignore[return-value]

    def _save(self, path: Path, stems: Tensor) -> None:
        from .._atomic import atomic_write

        data = {"stems": stems.detach().cpu(), "targets": self.targets, "identity": self.identity}
        try:
            atomic_write(path, lambda tmp: torch.save(data, tmp), mode=None)
        except OSError as err:  # a full or read-only cache costs a separation next time, nothing else
            if self.log is not None:
                self.log(f"warning: could not write the stems cache {path}: {err}")

    def _separate(self, audio: Tensor, sample_rate: int, out_rate: int) -> Tensor:
        return self.separator.separate(audio, sample_rate, output_sample_rate=out_rate,
                                       show_progress=self.show_progress, desc=f"separating {self.label}")

    def _load(self, path: Path, audio: Tensor, sample_rate: int, out_rate: int) -> Tensor | None:
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            stems = data["stems"]
        except Exception:  # noqa: BLE001 - a damaged cache file is separated again
            return None
        channels = 1 if audio.dim() == 1 else audio.shape[-2]
        expected = (len(self.targets), channels, _out_length(audio.shape[-1], sample_rate, out_rate))
        if not isinstance(stems, Tensor) or tuple(stems.shape[-3:]) != expected or data.get("targets") != self.targets:
            return None
        return stems


def build_separator(name: str, device: torch.device, *, cache_dir: Path | None, show_progress: bool,
                    log: Callable[[str], None] | None = None) -> Any:
    """The separator ``--separator name`` asks for (built now: an offline error comes first).

    Raises:
        RuntimeError: a published model whose weights cannot be downloaded.
        FileNotFoundError: a checkpoint folder that does not exist or lacks a file.
        ValueError: a malformed checkpoint folder.
    """
    if name == NO_SEPARATION:
        return MixtureAsStem()
    from ..music import OpenUnmixSeparator

    return CachedSeparator(OpenUnmixSeparator(name, device=device), cache_dir, show_progress=show_progress, log=log)


def stem_files(folder: Path) -> list[Path]:
    """The stem files of a ``--stems`` folder, in file-name order.

    Raises:
        ValueError: not a folder, no audio file in it, two files with one stem name.
    """
    if not folder.is_dir():
        raise ValueError(f"expected --stems to be a folder of stem audio files, got {str(folder)!r}, which "
                         f"{'is a file' if folder.exists() else 'does not exist'}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"expected stem audio files ({', '.join(AUDIO_SUFFIXES[:4])}, ...) in {str(folder)!r}, "
                         f"got none")
    names = [p.stem for p in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"expected one file per stem name in {str(folder)!r}, got several for {dup}")
    return files


def read_stems(folder: Path, read_audio: Callable[[Path], tuple[Tensor, int]]) -> tuple[Tensor, int, list[str]]:
    """Stems ``(S, C, T)`` from a ``--stems`` folder, their rate and names (the file names).

    Raises:
        ValueError: see :func:`stem_files`; stems of different rates, lengths or channels.
    """
    files = stem_files(folder)
    loaded = [(p, *read_audio(p)) for p in files]
    first, wave0, rate0 = loaded[0]
    for path, wave, rate in loaded[1:]:
        if rate != rate0:
            raise ValueError(f"expected every stem at one sample rate, got {rate0} Hz for {first.name} and "
                             f"{rate} Hz for {path.name} (in {str(folder)!r})")
        if wave.shape[-1] != wave0.shape[-1]:
            raise ValueError(f"expected stems of equal length, got {wave0.shape[-1]} samples for {first.name} and "
                             f"{wave.shape[-1]} for {path.name} (in {str(folder)!r})")
        if wave.shape[0] != wave0.shape[0]:
            raise ValueError(f"expected stems with one channel count, got {wave0.shape[0]} for {first.name} and "
                             f"{wave.shape[0]} for {path.name} (in {str(folder)!r})")
    return torch.stack([wave for _, wave, _ in loaded]), rate0, [p.stem for p in files]


def resample_stems(stems: Tensor, rate: int, out_rate: int) -> Tensor:
    """``(S, C, T)`` stems at ``out_rate``, in one call (resampling is linear: the sum follows)."""
    return _resample(stems, rate, out_rate)
