"""Source separation with Open-Unmix: a song in, its stems out, at the rate you ask for.

Shape glossary: B songs, S stems, C channels, T audio samples.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import finite_range

__all__ = ["OpenUnmixSeparator", "PUBLISHED_MODELS", "save_separator"]

#: The published Open-Unmix models and the targets each one was trained for.
PUBLISHED_MODELS: dict[str, tuple[str, ...]] = {
    "umxl": ("vocals", "drums", "bass", "other"),
    "umxhq": ("vocals", "drums", "bass", "other"),
    "umx": ("vocals", "drums", "bass", "other"),
    "umxse": ("speech", "noise"),
}

DEFAULT_TARGETS = ("vocals", "drums", "bass", "other")

# Keys openunmix's loader reads from a checkpoint folder (openunmix.utils.load_separator and
# load_target_models; both files are written by openunmix's scripts/train.py).
_SEPARATOR_KEYS = ("nfft", "nhop", "sample_rate", "nb_channels")
_TARGET_ARGS_KEYS = ("nfft", "nb_channels", "hidden_size")


def _check_rate(value: Any, name: str) -> int:
    """A sample rate as a positive int (integral floats such as 44100.0 are accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars too
        raise TypeError(f"expected {name} to be a positive integer, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected {name} > 0, got {value!r}")
    if value != int(value):
        raise ValueError(f"expected an integer {name} (Hz), got {value!r}")
    return int(value)


def _read_json(path: Path, keys: Sequence[str], what: str, sub: str | None = None) -> dict:
    """Read a checkpoint JSON file and check it holds ``keys`` (under ``sub`` if given)."""
    try:
        with open(path) as stream:
            content = json.load(stream)
    except json.JSONDecodeError as err:
        raise ValueError(f"expected {path} to be valid JSON ({what}), got: {err}") from err
    section = content.get(sub) if (isinstance(content, dict) and sub is not None) else content
    missing = [k for k in keys if not isinstance(section, dict) or k not in section]
    if missing:
        where = f'"{sub}" with keys' if sub is not None else "keys"
        raise ValueError(f"expected {path} ({what}) to hold {where} {list(keys)}, missing {missing}")
    return section


class OpenUnmixSeparator:
    """Separates songs into stems with an Open-Unmix model, in one batched call.

    Audio at any rate goes in; it is resampled to the model's rate (44100 Hz for the
    published music models), separated by ``openunmix.model.Separator`` (spectrogram
    models + multichannel Wiener filter) under ``torch.no_grad()`` in eval mode, and the
    stems are resampled to ``output_sample_rate`` and padded/trimmed to exactly
    ``round(T * output_sample_rate / sample_rate)`` samples.

    Channels: a stereo model separates mono input ``(T,)`` or ``(1, T)`` as two identical
    channels and returns mono stems (the mean over channels); stereo input gives stereo
    stems. A mono model (``umxse``) takes mono input only.

    Args:
        model: a published model name (``"umxl"``, ``"umxhq"``, ``"umx"``, ``"umxse"``;
            loaded through openunmix, which downloads the weights once into
            ``torch.hub.get_dir()``), or the path of a local checkpoint folder (a folder
            named like a published model, ``./umx``, is taken as the folder) in
            openunmix's format: ``separator.json`` (keys ``nfft``, ``nhop``,
            ``sample_rate``, ``nb_channels``) plus ``<target>.json`` (with ``"args"``
            holding ``nfft``, ``nb_channels``, ``hidden_size``) and ``<target>.pth`` (the
            ``OpenUnmix`` state dict; ``<target>-<hash>.pth`` also matches) per target, as
            openunmix's ``train.py`` writes them. A string naming a published model is
            taken as that model; pass ``Path("umxl")`` for a folder of that name.
        targets: the stems to separate, in output order. Default: the published model's
            targets (``umxse``: speech, noise), or vocals, drums, bass, other for a folder.
        pretrained: load the weights. ``False`` builds the architecture with random
            weights (no download; for tests).
        niter: Wiener-filter EM iterations (0: plain ratio masks, faster).
        residual: add a ``"residual"`` stem (the mixture minus the other targets), last.
        wiener_win_len: frames per independent Wiener-filter window (None: whole song,
            which needs much more memory).
        device: where the model runs and the stems are returned. Default: CUDA when
            available, else CPU.

    Attributes:
        sample_rate: the model's rate in Hz (float).
        targets: stem names in output order (``"residual"`` last when ``residual``).
        nb_channels: channels the model separates (2 for the published music models).
        device: the model's device.
        module: the underlying ``openunmix.model.Separator``.

    Raises:
        TypeError: ``model``, ``targets`` or an option of the wrong type.
        ValueError: an unknown target of a published model, a bad option, a malformed
            checkpoint file.
        FileNotFoundError: no such checkpoint folder, or a file missing in it.
        RuntimeError: the published weights could not be downloaded (offline).

    Offline use: :meth:`save` (or ``torchlime separator save umxl ./umxl`` on a machine with
    network access) writes the loaded model as a checkpoint folder, which
    ``OpenUnmixSeparator("./umxl")`` then loads with no network.

    Example:
        The published weights download on first use (skipped in the doctests, which run
        offline); ``pretrained=False`` builds the same network with random weights:

        >>> sep = OpenUnmixSeparator("umxl")  # doctest: +SKIP
        >>> sep = OpenUnmixSeparator("umxl", pretrained=False)
        >>> stems = sep(torch.randn(2, 44100), sample_rate=44100)
        >>> sep.targets, stems.shape
        (['vocals', 'drums', 'bass', 'other'], torch.Size([4, 2, 44100]))
        >>> sep(torch.randn(3, 2, 22050), sample_rate=22050, output_sample_rate=16000).shape
        torch.Size([3, 4, 2, 16000])
    """

    def __init__(
        self,
        model: str | os.PathLike = "umxl",
        *,
        targets: Sequence[str] | None = None,
        pretrained: bool = True,
        niter: int = 1,
        residual: bool = False,
        wiener_win_len: int | None = 300,
        device: str | torch.device | None = None,
    ) -> None:
        # torchlime.music checked at import that both load (torchlime._deps.require_audio_stack).
        import openunmix.model
        import openunmix.utils
        from torchaudio.functional import resample

        self._resample = resample

        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(
                f"expected model to be a published model name or a folder path, got {type(model).__name__}"
            )
        if not isinstance(pretrained, bool):
            raise TypeError(f"expected pretrained to be a bool, got {type(pretrained).__name__}")
        if not isinstance(residual, bool):
            raise TypeError(f"expected residual to be a bool, got {type(residual).__name__}")
        if isinstance(niter, bool) or not isinstance(niter, int):
            raise TypeError(f"expected niter to be an int, got {type(niter).__name__}")
        if niter < 0:
            raise ValueError(f"expected niter >= 0, got {niter}")
        if wiener_win_len is not None:
            if isinstance(wiener_win_len, bool) or not isinstance(wiener_win_len, int):
                raise TypeError(f"expected wiener_win_len to be an int or None, got {type(wiener_win_len).__name__}")
            if wiener_win_len < 1:
                raise ValueError(f"expected wiener_win_len >= 1 or None, got {wiener_win_len}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"expected a torch device such as 'cpu' or 'cuda', got {device!r}") from err

        # A local folder wins over a published name it happens to share ("./umx").
        published = isinstance(model, str) and model in PUBLISHED_MODELS and not Path(model).is_dir()
        if targets is None:
            target_list = list(PUBLISHED_MODELS[model]) if published else list(DEFAULT_TARGETS)
        else:
            if isinstance(targets, str) or not isinstance(targets, Sequence):
                raise TypeError(
                    f"expected targets to be a sequence of stem names such as ['vocals'], got {targets!r}"
                )
            target_list = list(targets)
            bad = [t for t in target_list if not isinstance(t, str) or not t]
            if bad:
                raise TypeError(f"expected target names to be non-empty strings, got {bad!r}")
            if not target_list:
                raise ValueError("expected at least one target, got an empty sequence")
            if len(set(target_list)) != len(target_list):
                raise ValueError(f"expected distinct targets, got {target_list}")
        if published:
            unknown = [t for t in target_list if t not in PUBLISHED_MODELS[model]]
            if unknown:
                raise ValueError(f"expected targets of {model!r} among {list(PUBLISHED_MODELS[model])}, got {unknown}")
        if residual and "residual" in target_list:
            raise ValueError('expected no target named "residual" with residual=True (the residual stem takes that name)')
        if len(target_list) == 1 and niter > 0 and not residual:
            # openunmix raises a bare Exception for this inside forward(); say it up front.
            raise ValueError(
                f"expected niter=0 or residual=True with a single target (the Wiener EM needs "
                f"two or more sources), got niter={niter} for targets {target_list}"
            )

        options = dict(niter=niter, residual=residual, wiener_win_len=wiener_win_len, device=device)
        if published:
            module = self._load_published(openunmix, model, target_list, pretrained, options)
        else:
            module = self._load_folder(openunmix, Path(model).expanduser(), target_list, pretrained, options)

        module.eval()  # BatchNorm running statistics, no LSTM dropout
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        self.device = device
        self.model_name = str(model)
        self._options = dict(niter=niter, residual=residual, wiener_win_len=wiener_win_len)
        self._weights_sha256: str | None = None
        self.targets: list[str] = target_list + (["residual"] if residual else [])
        self.sample_rate = float(module.sample_rate)
        self._model_rate = _check_rate(self.sample_rate, "model sample_rate")
        channels = {
            m.fc1.in_features // m.nb_bins for m in module.target_models.values()
        }
        if len(channels) != 1:
            raise ValueError(f"expected all target models to take the same number of channels, got {sorted(channels)}")
        self.nb_channels: int = channels.pop()
        self._n_fft: int = module.stft.n_fft

    @staticmethod
    def _load_published(openunmix: Any, name: str, targets: list[str], pretrained: bool, options: dict) -> Any:
        loader = getattr(openunmix, name)
        try:
            # openunmix.utils.load_separator always asks for pretrained weights on this path,
            # so the hub entry point is called directly to honour pretrained=False.
            return loader(targets=targets, pretrained=pretrained, filterbank="torch", **options)
        except (OSError, http.client.HTTPException) as err:
            # urllib.error.URLError, socket errors and timeouts are all OSErrors.
            raise RuntimeError(
                f"could not fetch the pretrained weights of the Open-Unmix model {name!r} "
                f"({type(err).__name__}: {err}). Connect to the internet once (the weights are "
                f"then cached under {_hub_dir()}), or pass the path of a local checkpoint folder "
                f"instead: separator.json plus <target>.json and <target>.pth for each of {targets}, as "
                f"`torchlime separator save {name} DIR` writes them where the network is."
            ) from err

    @staticmethod
    def _load_folder(openunmix: Any, folder: Path, targets: list[str], pretrained: bool, options: dict) -> Any:
        expected = ", ".join(["separator.json"] + [f"{t}.json, {t}.pth" for t in targets])
        if not folder.exists():
            raise FileNotFoundError(
                f"expected a published Open-Unmix model name ({', '.join(map(repr, PUBLISHED_MODELS))}) "
                f"or a checkpoint folder holding {expected}, got {str(folder)!r}, which does not exist"
            )
        if not folder.is_dir():
            raise NotADirectoryError(f"expected a checkpoint folder holding {expected}, got the file {str(folder)!r}")
        missing = [name for name in ["separator.json"] + [f"{t}.json" for t in targets] if not (folder / name).is_file()]
        # openunmix globs "<target>*.pth" (hub files are named like vocals-bccbd9aa.pth).
        missing += [f"{t}.pth" for t in targets if next(folder.glob(f"{t}*.pth"), None) is None]
        if missing:
            raise FileNotFoundError(f"expected {expected} in the checkpoint folder {str(folder)!r}, missing {missing}")
        _read_json(folder / "separator.json", _SEPARATOR_KEYS, "the separator config")
        for t in targets:
            _read_json(folder / f"{t}.json", _TARGET_ARGS_KEYS, f"the config of target {t!r}", sub="args")
        try:
            return openunmix.utils.load_separator(
                model_str_or_path=str(folder), targets=targets, pretrained=pretrained, filterbank="torch", **options
            )
        except KeyError as err:
            raise ValueError(
                f"expected <target>.pth files in {str(folder)!r} to hold an OpenUnmix state dict, "
                f"missing key {err}"
            ) from err
        except RuntimeError as err:
            lines = str(err).splitlines()
            detail = "\n".join(lines[:3] + ([f"\t... ({len(lines) - 3} more lines)"] if len(lines) > 3 else []))
            raise ValueError(
                f"could not load the Open-Unmix checkpoint folder {str(folder)!r} for targets {targets} "
                f"(do the <target>.json args match the .pth weights?): {detail}"
            ) from err

    @property
    def identity(self) -> dict[str, Any]:
        """What decides the stems this separator gives, as a JSON-able dict (a cache key).

        The SHA-256 of the models' weights (computed once, on first use: about a second for
        umxl), the STFT and rate, the targets and the separation options, and openunmix's
        version; not the device and not where the weights came from (a published model and
        a saved copy of it have one identity).
        """
        if self._weights_sha256 is None:
            digest = hashlib.sha256()
            for target, net in self.module.target_models.items():
                for key, value in sorted(net.state_dict().items()):
                    digest.update(f"{target}.{key}:{tuple(value.shape)}:{value.dtype}".encode())
                    digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
            self._weights_sha256 = digest.hexdigest()
        try:
            from importlib.metadata import version

            openunmix_version = version("openunmix")
        except Exception:  # noqa: BLE001 - a source checkout without metadata
            openunmix_version = "unknown"
        return {"weights_sha256": self._weights_sha256, "targets": list(self.targets), "nfft": self._n_fft,
                "nhop": int(self.module.stft.n_hop), "sample_rate": self.sample_rate,
                "nb_channels": self.nb_channels, **self._options, "openunmix": openunmix_version}

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write this separator's models as a checkpoint folder that ``OpenUnmixSeparator(folder)`` loads.

        See :func:`save_separator`.
        """
        return save_separator(self, folder)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model_name!r}, targets={self.targets}, "
            f"sample_rate={self.sample_rate:g}, nb_channels={self.nb_channels}, device={str(self.device)!r})"
        )

    def separate(
        self,
        audio: Tensor,
        sample_rate: int,
        output_sample_rate: int | None = None,
        *,
        show_progress: bool = False,
        desc: str = "separating",
    ) -> Tensor:
        """Separates one song or a batch of songs into stems.

        Args:
            audio: ``(T,)`` or ``(C, T)`` one song, or ``(B, C, T)`` a batch of songs of equal
                length, floating point, at ``sample_rate``. C is 1 or the model's
                ``nb_channels``.
            sample_rate: the rate of ``audio`` in Hz.
            output_sample_rate: the rate of the stems (default: ``sample_rate``).
            show_progress: a tqdm bar (on stderr) with one step per target model and one
                for the Wiener filter and inverse STFT.
            desc: the bar's label.

        Returns:
            ``(S, C', T')`` for one song, ``(B, S, C', T')`` for a batch: float32 on the
            separator's device, stems in the order of :attr:`targets`, C' = 1 for mono
            input (``(T,)`` or C = 1) else C, and ``T' = round(T * output_sample_rate /
            sample_rate)``.

        Raises:
            TypeError: audio is not a floating-point tensor; a rate is not a number.
            ValueError: wrong number of dims, an unsupported channel count, empty audio,
                NaN/inf in audio, a rate <= 0, audio too short for the model's STFT.
        """
        if not isinstance(audio, Tensor):
            raise TypeError(f"expected audio to be a torch.Tensor, got {type(audio).__name__}")
        if not audio.dtype.is_floating_point:
            raise TypeError(
                f"expected floating-point audio, got {audio.dtype} (scale integer PCM to [-1, 1] first)"
            )
        in_rate = _check_rate(sample_rate, "sample_rate")
        out_rate = in_rate if output_sample_rate is None else _check_rate(output_sample_rate, "output_sample_rate")
        if audio.dim() not in (1, 2, 3):
            raise ValueError(
                f"expected audio of shape (T,), (C, T) or (B, C, T), got {audio.dim()} dims: shape {tuple(audio.shape)}"
            )
        single = audio.dim() < 3
        batch = audio.reshape(1, 1, -1) if audio.dim() == 1 else (audio.unsqueeze(0) if single else audio)
        B, C, T = batch.shape
        if batch.numel() == 0:
            raise ValueError(f"expected non-empty audio, got shape {tuple(audio.shape)}")
        supported = sorted({1, self.nb_channels})
        if C not in supported:
            allowed = " or ".join(map(str, supported))
            raise ValueError(
                f"expected audio with {allowed} channel(s) (the model separates {self.nb_channels}; "
                f"channels come first: (C, T) or (B, C, T)), got {C} channels in shape {tuple(audio.shape)}"
            )
        model_rate = self._model_rate
        model_len = -(-T * model_rate // in_rate)  # what torchaudio's resample returns: ceil
        min_len = self._n_fft // 2 + 1  # torch.stft(center=True) reflect-pads n_fft // 2 samples
        if model_len < min_len:
            raise ValueError(
                f"expected audio of at least {math.ceil(min_len * in_rate / model_rate)} samples at "
                f"{in_rate} Hz ({min_len} at the model's {model_rate} Hz, its n_fft // 2 + 1), got {T}"
            )

        x = batch.to(device=self.device, dtype=torch.float32)
        if finite_range(x) is None:
            raise ValueError("expected finite audio, got NaN or inf")
        with torch.no_grad(), _progress(self.module, show_progress, desc):
            if in_rate != model_rate:
                x = self._resample(x, in_rate, model_rate)
            if C == 1 and self.nb_channels > 1:  # after resampling: one channel to resample, not two
                x = x.expand(B, self.nb_channels, x.shape[-1])
            stems = self.module(x.contiguous())  # (B, S, C_model, T_model)
            if C == 1:
                stems = stems.mean(dim=2, keepdim=True)
            if out_rate != model_rate:
                stems = self._resample(stems, model_rate, out_rate)
            out_len = (2 * T * out_rate + in_rate) // (2 * in_rate)  # round half up, exactly
            if stems.shape[-1] > out_len:
                stems = stems[..., :out_len]
            elif stems.shape[-1] < out_len:
                stems = torch.nn.functional.pad(stems, (0, out_len - stems.shape[-1]))
        stems = stems.to(torch.float32).contiguous()
        return stems[0] if single else stems

    def __call__(self, audio: Tensor, sample_rate: int, output_sample_rate: int | None = None, **kwargs: Any) -> Tensor:
        """Same as :meth:`separate`."""
        return self.separate(audio, sample_rate, output_sample_rate, **kwargs)


class _progress:
    """A tqdm bar over a separation: a step per target model (forward hooks), one for the rest."""

    def __init__(self, module: Any, enabled: bool, desc: str) -> None:
        self.module, self.enabled, self.desc = module, enabled, desc
        self.bar: Any = None
        self.hooks: list[Any] = []

    def __enter__(self) -> _progress:
        if self.enabled:
            from tqdm.auto import tqdm

            models = list(self.module.target_models.values())
            self.bar = tqdm(total=len(models) + 1, desc=self.desc, unit="step", leave=False)
            self.hooks = [m.register_forward_hook(self._step) for m in models]
        return self

    def _step(self, *_: Any) -> None:  # a forward hook: returning a value would replace the model's output
        self.bar.update(1)

    def __exit__(self, kind: Any, *rest: Any) -> None:
        for hook in self.hooks:
            hook.remove()
        if self.bar is not None:
            if kind is None:
                self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def save_separator(separator: Any, folder: str | os.PathLike) -> list[Path]:
    """Write Open-Unmix models as a checkpoint folder in openunmix's own format.

    The folder holds what openunmix's ``train.py`` writes and
    :class:`OpenUnmixSeparator` (``openunmix.utils.load_separator``) loads:
    ``separator.json`` (``nfft``, ``nhop``, ``sample_rate``, ``nb_channels``), and per target
    ``<target>.json`` (``{"args": {"target", "nfft", "nhop", "nb_channels", "hidden_size",
    "max_bin"}}``) and ``<target>.pth`` (the ``OpenUnmix`` state dict). Every file is written
    atomically. Use it to keep the published weights for machines without network access
    (``OpenUnmixSeparator("umxl").save("umxl_local")`` where the network is), or to save
    models of a published architecture with random weights (``pretrained=False``).

    Args:
        separator: an :class:`OpenUnmixSeparator` or an ``openunmix.model.Separator``.
        folder: where to write (created; must not already hold a checkpoint).

    Returns:
        The files written.

    Raises:
        TypeError: not a separator.
        FileExistsError: the folder already holds ``separator.json`` or a target's files.
        ValueError: a target model openunmix's loader cannot rebuild (it always builds
            three bidirectional LSTM layers).

    Example:
        >>> import tempfile
        >>> sep = OpenUnmixSeparator("umxse", pretrained=False)  # random weights, no download
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     files = save_separator(sep, folder)  # same as sep.save(folder)
        ...     again = OpenUnmixSeparator(folder, targets=["speech", "noise"])
        ...     same = torch.equal(again.module.target_models["noise"].fc1.weight,
        ...                        sep.module.target_models["noise"].fc1.weight)
        >>> sorted(f.name for f in files), same
        (['noise.json', 'noise.pth', 'separator.json', 'speech.json', 'speech.pth'], True)
    """
    import openunmix.model
    from .._atomic import atomic_write

    module = separator.module if isinstance(separator, OpenUnmixSeparator) else separator
    if not isinstance(module, openunmix.model.Separator):
        raise TypeError(
            f"expected an OpenUnmixSeparator or an openunmix.model.Separator, got {type(separator).__name__}"
        )
    folder = Path(folder).expanduser()
    models = dict(module.target_models.items())
    names = ["separator.json"] + [f"{t}{ext}" for t in models for ext in (".json", ".pth")]
    taken = [n for n in names if (folder / n).exists()]
    if taken:
        raise FileExistsError(
            f"expected a folder without a checkpoint to write into, got {str(folder)!r}, which already holds "
            f"{taken[:4]}; remove them or pick another folder"
        )
    nfft, nhop = int(module.stft.n_fft), int(module.stft.n_hop)
    channels = set()
    for target, net in models.items():
        if net.lstm.num_layers != 3 or not net.lstm.bidirectional:
            raise ValueError(
                f"expected target {target!r} with 3 bidirectional LSTM layers (what openunmix's loader "
                f"rebuilds), got {net.lstm.num_layers} layer(s), bidirectional={net.lstm.bidirectional}"
            )
        channels.add(int(net.fc1.in_features // net.nb_bins))
    if len(channels) != 1:
        raise ValueError(f"expected all target models to take the same number of channels, got {sorted(channels)}")
    nb_channels = channels.pop()
    written = [atomic_write(folder / "separator.json", lambda f: json.dump(
        {"nfft": nfft, "nhop": nhop, "sample_rate": float(module.sample_rate), "nb_channels": nb_channels}, f))]
    for target, net in models.items():
        args = {"target": target, "nfft": nfft, "nhop": nhop, "nb_channels": nb_channels,
                "hidden_size": int(net.hidden_size), "max_bin": int(net.nb_bins)}
        written.append(atomic_write(folder / f"{target}.json", lambda f, a=args: json.dump({"args": a}, f, indent=2)))
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        written.append(atomic_write(folder / f"{target}.pth", lambda tmp, st=state: torch.save(st, tmp), mode=None))
    return written


def _hub_dir() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")
