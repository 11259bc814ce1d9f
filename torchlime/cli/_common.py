"""What every subcommand shares: the model spec, song loading, options, the one explain call.

Nothing here imports :mod:`torchlime.music` at import time: the console script must start
(and print one clean line) where the audio extra does not load.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._checks import check_choice, check_int
from ..functional.sampling import LIME_SAMPLERS
from ._separation import (
    DEFAULT_SEPARATOR,
    NO_SEPARATION,
    build_separator,
    default_cache_dir,
    read_stems,
    resample_stems,
    stem_files,
)

__all__ = [
    "DEMO_FACTORY",
    "MODALITIES",
    "HelpFormatter",
    "ModelSpec",
    "SongFiles",
    "SongOptions",
    "load_model_spec",
    "read_audio",
    "read_lyrics",
    "prepare_song",
    "prepare_songs",
    "make_separator",
    "add_command",
    "add_run_args",
    "add_song_args",
    "add_target_args",
    "add_deprecated_alias",
    "check_run_args",
    "sampling_options",
    "describe_samples",
    "parse_targets",
    "song_options",
    "device_of",
    "target_spec",
    "choose_targets",
    "explain",
    "parse_bytes",
    "SETTINGS_THAT_COUNT",
    "SETTING_DEFAULTS",
    "cli_kernel",
    "explanation_settings",
    "settings_fingerprint",
    "settings_differences",
    "show_setting",
    "check_writable",
    "describe_os_error",
    "check_outputs",
    "write_outputs",
    "shorten",
    "print_top",
]

DEMO_FACTORY = "torchlime.music.demo.factory:factory"
DEFAULT_SEGMENTS = 10
DEFAULT_UNIT = "line"
MODALITIES = ("both", "audio", "lyrics")
#: ``MusicLime.explain``'s ``tol`` and ``max_samples`` (what ``--n-samples auto`` stops at);
#: written out because the console script imports torchlime.music only once it runs
#: (tests/test_cli.py checks that they agree).
DEFAULT_TOL = 0.05
DEFAULT_MAX_SAMPLES = 10_000


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What ``--model module:factory`` gives: the classifier and how to feed it.

    Attributes:
        forward: ``forward(audio (n, C, T), input_ids (n, Q), attention_mask (n, Q)) -> (n, classes)``.
        sample_rate: the rate ``forward`` expects its audio at (Hz).
        tokenizer: a Hugging Face tokenizer.
        max_length: the longest token sequence ``forward`` takes (None: no truncation).
        labels: class names by index, or None.
        apply_softmax: ``forward`` returns logits (softmax them before explaining).
        channels: 1 for mono models (the default), 2 for stereo.
        name: the ``module:factory`` it came from.

    Example:
        >>> spec = ModelSpec.from_factory(dict(forward=lambda a, i, m: a.mean((1, 2))[:, None],
        ...                                    sample_rate=8000, tokenizer=None, labels=["x"]))
        >>> spec.sample_rate, spec.label_names, spec.channels
        (8000, {0: 'x'}, 1)
    """

    forward: Callable[..., torch.Tensor]
    sample_rate: int
    tokenizer: Any
    max_length: int | None = None
    labels: tuple[str, ...] | None = None
    apply_softmax: bool = False
    channels: int = 1
    name: str = ""

    @classmethod
    def from_factory(cls, made: Any, name: str = "") -> ModelSpec:
        """A spec from what a factory returned: a dict, an object with those attributes, or a spec.

        Raises:
            ValueError: a missing field (forward, sample_rate, tokenizer) or a bad value.
        """
        if isinstance(made, ModelSpec):
            return made
        fields = made if isinstance(made, dict) else {k: getattr(made, k) for k in dir(made) if not k.startswith("_")}
        who = f"the factory {name!r}" if name else "the factory"
        missing = [k for k in ("forward", "sample_rate", "tokenizer") if k not in fields]
        if missing:
            raise ValueError(f"expected {who} to provide forward, sample_rate and tokenizer; missing {missing}")
        if not callable(fields["forward"]):
            raise ValueError(f"expected {who} to provide a callable forward, got {type(fields['forward']).__name__}")
        labels = fields.get("labels")
        max_length = fields.get("max_length")
        return cls(
            forward=fields["forward"],
            sample_rate=check_int(fields["sample_rate"], f"sample_rate of {who}", 1),
            tokenizer=fields["tokenizer"],
            max_length=None if max_length is None else check_int(max_length, f"max_length of {who}", 1),
            labels=None if labels is None else tuple(str(label) for label in labels),
            apply_softmax=bool(fields.get("apply_softmax", False)),
            channels=check_int(fields.get("channels", 1), f"channels of {who}", 1, 2),
            name=name,
        )

    @property
    def label_names(self) -> dict[int, str] | None:
        """Class index -> name, or None when the factory gave no names."""
        return dict(enumerate(self.labels)) if self.labels else None

    def explainer(self) -> Any:
        """The :class:`~torchlime.music.MusicLime` explainer of this model (built here only)."""
        from ..music import MusicLime

        return MusicLime(self.forward, apply_softmax=self.apply_softmax)

    def lyrics(self, text: str, unit: str, device: torch.device) -> Any:
        """The :class:`~torchlime.music.LyricsFactorization` of ``text`` for this model's tokenizer."""
        from ..music import LyricsFactorization

        return LyricsFactorization(text, self.tokenizer, unit=unit, max_length=self.max_length, device=device)

    def num_classes(self, device: torch.device) -> int:
        """The model's number of classes without a song: a silent second and one empty line."""
        with torch.no_grad():
            tok = self.tokenizer("", return_tensors="pt")
            audio = torch.zeros(1, self.channels, self.sample_rate, device=device)
            return int(self.forward(audio, tok["input_ids"].to(device), tok["attention_mask"].to(device)).shape[-1])


def load_model_spec(spec: str, device: torch.device) -> ModelSpec:
    """Import ``module:factory`` and call ``factory(device)``.

    The factory returns a dict (or an object with these attributes): ``forward``,
    ``sample_rate``, ``tokenizer`` and optionally ``max_length``, ``labels``,
    ``apply_softmax`` and ``channels`` (see :class:`ModelSpec`). The current folder is
    searched first, so ``my_model:factory`` finds ``./my_model.py``.

    Raises:
        ValueError: the spec is not ``module:factory``, the module or factory cannot be
            imported (says what was tried), or the factory's result lacks a field.
    """
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"expected --model as module:factory (e.g. {DEMO_FACTORY}), got {spec!r}")
    module_name, attr = spec.split(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - reported with what was tried
        raise ValueError(
            f"could not import module {module_name!r} for --model {spec!r} (tried sys.path with the "
            f"current folder first): {type(err).__name__}: {err}"
        ) from err
    finally:
        sys.path.pop(0)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {attr!r} (for --model {spec!r}; "
                         f"the demo model is {DEMO_FACTORY})")
    return ModelSpec.from_factory(factory(device), spec)


# -- a song's files -----------------------------------------------------------------------------


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """:func:`torchlime.music.read_audio`: ``(C, T)`` float32 in [-1, 1] and the rate (integer
    PCM scaled as soundfile does).

    Raises:
        ValueError: missing or unreadable file.
    """
    from ..music import read_audio as read

    return read(path)


def audio_format(path: str | Path) -> dict[str, int]:
    """The sample rate and channels of an audio file, from its header (nothing decoded)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - an unreadable file fails later, with its own message
        return {}
    return {"sample_rate": int(info.samplerate), "channels": int(info.channels)}


def read_lyrics(path: str | Path) -> str:
    """A lyrics text file as UTF-8 (a leading byte-order mark, as Windows editors write, is dropped).

    Raises:
        ValueError: a missing file, or one that is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected a lyrics text file, got {str(path)!r}, which does not exist")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"expected UTF-8 text in the lyrics file {str(path)!r}, got {err.reason} at byte "
                         f"{err.start} ({err.object[err.start:err.start + 1]!r}); save it as UTF-8") from None


@dataclass(frozen=True)
class SongFiles:
    """Where one song is: its lyrics and its audio file or stems folder (or both)."""

    lyrics: Path
    audio: Path | None = None
    stems: Path | None = None

    @property
    def name(self) -> str:
        """What its outputs are named after: the audio file's name without extension, else the stems folder's."""
        return self.audio.stem if self.audio is not None else self.stems.resolve().name

    @property
    def source(self) -> str:
        """The absolute path of its audio (or stems), as recorded in its explanation."""
        return str((self.audio if self.audio is not None else self.stems).resolve())

    def check(self) -> None:
        """Fail on a missing file now, before any slow work.

        Raises:
            ValueError: no audio and no stems, a missing audio or lyrics file, a missing stems folder.
        """
        if self.audio is None and self.stems is None:
            raise ValueError("expected --audio (a song file) or --stems (a folder of stem files), got neither")
        if self.audio is not None and not self.audio.is_file():
            raise ValueError(f"expected an audio file, got {str(self.audio)!r}, which does not exist")
        if self.stems is not None and not self.stems.is_dir():
            raise ValueError(f"expected --stems to be a folder of stem audio files, got {str(self.stems)!r}, which "
                             f"{'is a file' if self.stems.exists() else 'does not exist'}")
        if not self.lyrics.is_file():
            raise ValueError(f"expected a lyrics text file, got {str(self.lyrics)!r}, which does not exist")

    def info(self, options: SongOptions, model: str) -> dict[str, Any]:
        """What the explanation JSON records to redo it (``evaluate --explanation`` reads it),
        with the song's own sample rate and channels (the top-components WAV is written at them)."""
        source = self.audio if self.audio is not None else (stem_files(self.stems)[0] if self.stems is not None else None)
        return {
            **(audio_format(source) if source is not None else {}),
            "audio": str(self.audio.resolve()) if self.audio is not None else None,
            "lyrics": str(self.lyrics.resolve()),
            "stems": str(self.stems.resolve()) if self.stems is not None else None,
            "model": model,
            "separator": None if self.stems is not None else options.separator_name,
            "segments": options.segments,
            "unit": options.unit,
            "keep_residual": options.keep_residual,
        }


@dataclass(frozen=True)
class SongOptions:
    """How a song becomes features: the separator, segments, lyric unit, residual, stems cache."""

    separator: str = DEFAULT_SEPARATOR
    segments: int = DEFAULT_SEGMENTS
    unit: str = DEFAULT_UNIT
    keep_residual: bool = False
    cache_dir: Path | None = None

    @property
    def separator_name(self) -> str:
        """The separator as recorded: a published name, ``none``, or a folder's absolute path."""
        if self.separator == NO_SEPARATION or not Path(self.separator).expanduser().is_dir():
            return self.separator
        return str(Path(self.separator).expanduser().resolve())


def make_separator(options: SongOptions, device: torch.device, quiet: bool) -> Any:
    """The separator of ``options`` (an offline or missing-folder error comes now, before other work)."""
    log = None if quiet else (lambda message: print(message, file=sys.stderr))
    return build_separator(options.separator, device, cache_dir=options.cache_dir, show_progress=not quiet, log=log)


def prepare_song(spec: ModelSpec, separator: Any, song: SongFiles, options: SongOptions,
                 device: torch.device) -> tuple[Any, Any]:
    """Read, separate and factorize one song: its ``StemFactorization`` and ``LyricsFactorization``.

    With ``song.stems`` the stems are read from their files (names from the file names,
    one rate, length and channel count), resampled once to the model's rate; the mixture
    is ``song.audio`` when given, else their sum. Otherwise ``separator`` separates the
    mixture (mixed down to mono first for a mono model).

    Raises:
        ValueError: a missing or unreadable audio, stems or lyrics file, stems that do not
            agree, lyrics with no unit.
    """
    from ..music import StemFactorization

    text = read_lyrics(song.lyrics)
    kwargs = dict(num_segments=options.segments, keep_residual=options.keep_residual)
    if song.stems is not None:
        stems, rate, names = read_stems(song.stems, read_audio)
        mixture = None
        if song.audio is not None:
            mixture, mix_rate = read_audio(song.audio)
            if (mix_rate, mixture.shape[-1]) != (rate, stems.shape[-1]):
                raise ValueError(f"expected --audio {str(song.audio)!r} to be the mixture of the stems in "
                                 f"{str(song.stems)!r} ({stems.shape[-1]} samples at {rate} Hz), got "
                                 f"{mixture.shape[-1]} samples at {mix_rate} Hz")
        elif options.keep_residual:
            raise ValueError("expected --audio (the mixture) with --stems and --keep-residual: the residual is the "
                             "mixture minus the stems")
        if spec.channels == 1:
            stems = stems.mean(1, keepdim=True)
            mixture = None if mixture is None else mixture.mean(0, keepdim=True)
        stems = resample_stems(stems.to(device), rate, spec.sample_rate)
        if mixture is not None:
            mixture = resample_stems(mixture.to(device), rate, spec.sample_rate)
        audio = StemFactorization(stems, sample_rate=spec.sample_rate, stem_names=names, mixture=mixture, **kwargs)
    else:
        mixture, rate = read_audio(song.audio)
        if spec.channels == 1:
            mixture = mixture.mean(0, keepdim=True)
        separator.label = song.audio.name
        audio = StemFactorization.from_separator(separator, mixture.to(device), rate,
                                                 target_sample_rate=spec.sample_rate, **kwargs)
    return audio, spec.lyrics(text, options.unit, device)


def prepare_songs(spec: ModelSpec, separator: Any, songs: Sequence[SongFiles], options: SongOptions,
                  device: torch.device) -> list[tuple[Any, Any] | Exception]:
    """:func:`prepare_song` for several songs, separating those of one length together.

    Songs with ``--stems`` or a separator without ``separate_many`` are prepared one by one;
    the others are read, then separated in batched calls (cached songs come from disk).
    A song that fails gives its exception in its place, so the others go on.
    """
    from ..music import StemFactorization

    out: list[tuple[Any, Any] | Exception | None] = [None] * len(songs)
    batch: list[tuple[int, SongFiles, torch.Tensor, int, str]] = []
    for i, song in enumerate(songs):
        if song.stems is not None or not hasattr(separator, "separate_many"):
            try:
                out[i] = prepare_song(spec, separator, song, options, device)
            except Exception as err:  # noqa: BLE001 - reported for this song alone
                out[i] = err
            continue
        try:
            text = read_lyrics(song.lyrics)
            mixture, rate = read_audio(song.audio)
        except Exception as err:  # noqa: BLE001
            out[i] = err
            continue
        if spec.channels == 1:
            mixture = mixture.mean(0, keepdim=True)
        batch.append((i, song, mixture.to(device), rate, text))
    if batch:
        try:
            stems = separator.separate_many([b[2] for b in batch], [b[3] for b in batch], spec.sample_rate,
                                            labels=[b[1].audio.name for b in batch])
        except Exception as err:  # noqa: BLE001 - one batch failed: fall back to one song at a time
            stems = [None] * len(batch)
            for j, (i, song, *_rest) in enumerate(batch):
                try:
                    out[i] = prepare_song(spec, separator, song, options, device)
                except Exception as one:  # noqa: BLE001
                    out[i] = one
            batch = []
        kwargs = dict(num_segments=options.segments, keep_residual=options.keep_residual)
        for (i, song, mixture, rate, text), song_stems in zip(batch, stems):
            try:
                audio = StemFactorization.from_separator(_Separated(separator.targets, song_stems), mixture, rate,
                                                         target_sample_rate=spec.sample_rate, **kwargs)
                out[i] = (audio, spec.lyrics(text, options.unit, device))
            except Exception as err:  # noqa: BLE001
                out[i] = err
    return out  # type: ignore[return-value]


class _Separated:
    """Stems separated already (in a batch), handed to ``StemFactorization.from_separator``."""

    def __init__(self, targets: list[str], stems: torch.Tensor) -> None:
        self.targets = list(targets)
        self.stems = stems

    def separate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.stems


# -- options ------------------------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (written out where argparse's is None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default" in text or not action.option_strings or action.required
                or action.default is argparse.SUPPRESS):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub: Any, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser whose options all show their defaults."""
    return sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)


class _DeprecatedAlias(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        message = f"{option_string} is deprecated, use {self.new} (same meaning)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        print(f"torchlime: warning: {message}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: Any, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """``old`` still works as ``new`` (hidden from --help), saying it is deprecated."""
    p.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS, **kwargs)


def add_run_args(p: Any, *, device_help: str = "cuda when available, else cpu") -> None:
    """The options of every command that explains: output, sampling, seed, device, progress."""
    p.add_argument("--out", default="torchlime_out", metavar="DIR", help="output folder")
    p.add_argument("--n-samples", default=1000, metavar="N|auto",
                   help="perturbations per song (>= 2), or auto: draw them in rounds of --perturbations-per-eval "
                        "until each song's weights are precise enough (see --tol and --max-samples)")
    p.add_argument("--sampler", default="iid", choices=LIME_SAMPLERS,
                   help="how the perturbation masks are drawn: iid (every feature on with probability 1/2, as "
                        "MusicLIME), paired (each mask with its complement: smaller errors for as many model calls) "
                        "or sobol (scrambled quasi-random); whatever the sampler, the first mask is the song itself")
    p.add_argument("--tol", type=float, default=None, metavar="TOL",
                   help="with --n-samples auto: a song stops once every weight's standard error is at most TOL "
                        f"times the largest |weight| of its class (default: {DEFAULT_TOL})")
    p.add_argument("--max-samples", type=int, default=None, metavar="N",
                   help=f"with --n-samples auto: the most perturbations per song (default: {DEFAULT_MAX_SAMPLES})")
    p.add_argument("--num-features", type=int, default=20, metavar="K", help="features the surrogate keeps (lime's feature selection)")
    p.add_argument("--perturbations-per-eval", type=int, default=100, dest="perturbations_per_eval", metavar="N",
                   help="perturbations per forward call of the model (memory vs speed)")
    add_deprecated_alias(p, "--batch-size", "--perturbations-per-eval", "perturbations_per_eval", type=int)
    p.add_argument("--seed", type=int, default=0, metavar="INT", help="seed of the perturbation masks")
    p.add_argument("--memory-budget", type=parse_bytes, default=None, metavar="BYTES",
                   help="bytes the composed audio and tokens of one forward call may take, such as 2G or 500M; a "
                        "call gets fewer perturbations when they would not fit, which changes no result (default: a "
                        "quarter of the free memory of the device)")
    p.add_argument("--device", default=None, help=f"torch device (default: {device_help})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_target_args(p: Any, default: str = "the predicted class only") -> None:
    """``--target``: classes to explain besides the predicted one (``--targets`` still works)."""
    p.add_argument("--target", nargs="+", default=None, metavar="CLASS",
                   help=f"class indices to explain besides the predicted class, or all (default: {default})")
    add_deprecated_alias(p, "--targets", "--target", "target", nargs="+")


def add_song_args(p: Any, *, stems: bool = True) -> None:
    """How a song becomes features: separator (or stems), segments, lyric unit, residual, cache."""
    p.add_argument("--separator", default=None, metavar="NAME|DIR|none",
                   help="Open-Unmix model (umxl, umxhq, umx, umxse; downloaded once into the torch hub cache), a "
                        "local checkpoint folder (write one with `torchlime separator save`), or none (the mixture "
                        f"as one stem, no separation) (default: {DEFAULT_SEPARATOR})")
    if stems:
        p.add_argument("--stems", default=None, metavar="DIR",
                       help="a folder of precomputed stem files (one audio file per stem, named after it; one rate "
                            "and length) to use instead of separating (default: separate --audio)")
    p.add_argument("--segments", type=int, default=None, metavar="G",
                   help=f"temporal segments G per stem (features: stems x G) (default: {DEFAULT_SEGMENTS})")
    p.add_argument("--unit", default=None, choices=["line", "word"],
                   help=f"lyric unit: lines, or distinct words as the original MusicLIME (default: {DEFAULT_UNIT})")
    p.add_argument("--keep-residual", action="store_true", default=None,
                   help="add the mixture minus the stems to every perturbed song, so all stems on is the song "
                        "(default: off)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help=f"stems cache folder (default: {default_cache_dir()}; the TORCHLIME_CACHE environment "
                        "variable moves it to $TORCHLIME_CACHE/stems)")
    p.add_argument("--no-cache", action="store_true", help="separate again, neither read nor write the stems cache")


def check_run_args(args: argparse.Namespace) -> None:
    """The options of a command that explains, checked before any work.

    Raises:
        ValueError: "expected --num-features >= 1, got 0" and the like; see also
            :func:`sampling_options`.
    """
    sampling_options(args)
    check_int(args.num_features, "--num-features", 1)
    check_int(args.perturbations_per_eval, "--perturbations-per-eval", 1)
    check_int(args.seed, "--seed", 0)
    if getattr(args, "segments", None) is not None:
        check_int(args.segments, "--segments", 1)


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """How many perturbations a song gets and how they are drawn, as ``MusicLime.explain``
    takes them: ``n_samples`` (an int, or ``"auto"``) and ``sampler``, with ``tol`` and
    ``max_samples`` (their defaults filled in) only under ``--n-samples auto``.

    Example:
        >>> import argparse
        >>> sampling_options(argparse.Namespace(n_samples="64", sampler="paired", tol=None, max_samples=None))
        {'n_samples': 64, 'sampler': 'paired'}
        >>> sampling_options(argparse.Namespace(n_samples="auto", sampler="iid", tol=None, max_samples=5000))
        {'n_samples': 'auto', 'sampler': 'iid', 'tol': 0.05, 'max_samples': 5000}

    Raises:
        ValueError: "expected --n-samples to be an integer >= 2 or 'auto', got 'x'", a bad
            --sampler, --tol <= 0, --max-samples < 2, or --tol or --max-samples without
            --n-samples auto.
    """
    n_samples = args.n_samples
    if n_samples != "auto":
        try:
            n_samples = check_int(int(n_samples) if isinstance(n_samples, str) else n_samples, "--n-samples", 2)
        except ValueError:
            raise ValueError(f"expected --n-samples to be an integer >= 2 or 'auto', got {args.n_samples!r}") from None
    out: dict[str, Any] = {"n_samples": n_samples,
                           "sampler": check_choice(getattr(args, "sampler", "iid"), "--sampler", LIME_SAMPLERS)}
    tol, max_samples = getattr(args, "tol", None), getattr(args, "max_samples", None)
    if n_samples != "auto":
        given = [f"{flag} {value}" for flag, value in (("--tol", tol), ("--max-samples", max_samples))
                 if value is not None]
        if given:
            raise ValueError(f"expected --tol and --max-samples only with --n-samples auto (they say when its rounds "
                             f"stop), got {' and '.join(given)} with --n-samples {n_samples}")
        return out
    tol = DEFAULT_TOL if tol is None else tol
    if not tol > 0:  # a float: check_int does not apply; NaN fails here too
        raise ValueError(f"expected --tol > 0, got {tol}")
    out["tol"] = float(tol)
    out["max_samples"] = check_int(DEFAULT_MAX_SAMPLES if max_samples is None else max_samples, "--max-samples", 2)
    return out


def describe_samples(exp: Any) -> str:
    """How many perturbations an explanation used, for a one-line summary: ``"1000 samples"``,
    or under ``n_samples="auto"`` ``"auto: 3000 of at most 10000 samples"``, with the
    sampler where it is not iid.

    Example:
        >>> from types import SimpleNamespace
        >>> describe_samples(SimpleNamespace(metadata=dict(n_samples=3000, n_samples_rule="auto", tol=0.05,
        ...                                                max_samples=10000, sampler="paired")))
        'auto: 3000 of at most 10000 samples, paired sampler'
        >>> describe_samples(SimpleNamespace(metadata=dict(n_samples=64, sampler="iid")))
        '64 samples'
    """
    meta = exp.metadata
    text = f"{meta.get('n_samples')} samples"
    if meta.get("n_samples_rule") == "auto":
        text = f"auto: {meta.get('n_samples')} of at most {meta.get('max_samples')} samples"
    sampler = meta.get("sampler", "iid")
    return text if sampler == "iid" else f"{text}, {sampler} sampler"


def parse_targets(values: Sequence[str] | None) -> list[int] | str | None:
    """``--target`` as class indices, ``"all"``, or None (the predicted class only).

    Raises:
        ValueError: a value that is not a non-negative integer, or ``all`` with others.
    """
    if values is None:
        return None
    if "all" in values:
        if len(values) > 1:
            raise ValueError(f"expected --target all alone or class indices, got {list(values)}")
        return "all"
    out = []
    for value in values:
        try:
            index = int(value)
        except (TypeError, ValueError):
            index = -1
        if index < 0:
            raise ValueError(f"expected --target as class indices (0, 1, ...) or all, got {value!r}")
        out.append(index)
    return out


def song_options(args: argparse.Namespace, recorded: dict[str, Any] | None = None) -> SongOptions:
    """The song options of ``args``; what was not given comes from ``recorded`` (a saved
    explanation's song info), else the defaults.

    Raises:
        ValueError: a bad --segments.
    """
    recorded = recorded or {}

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        return recorded[name] if recorded.get(name) is not None else default

    segments = check_int(pick("segments", DEFAULT_SEGMENTS), "--segments", 1)
    cache_dir = None if args.no_cache else Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    return SongOptions(separator=str(pick("separator", DEFAULT_SEPARATOR)), segments=segments,
                       unit=pick("unit", DEFAULT_UNIT), keep_residual=bool(pick("keep_residual", False)),
                       cache_dir=cache_dir)


def device_of(args: argparse.Namespace) -> torch.device:
    """``--device``, else CUDA when available, else the CPU.

    Raises:
        ValueError: not a torch device.
    """
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"expected --device as a torch device such as cpu, cuda or cuda:1, got {name!r}") from None


# -- explaining ---------------------------------------------------------------------------------


def target_spec(asked: list[int] | str | None) -> list[Any] | str:
    """``MusicLime.explain``'s target for ``--target``: the predicted class, then those asked
    for (``"all"``: every class). MusicLime resolves "predicted" from row 0 of its own
    samples (the unperturbed song), so no extra forward call is made.

    Example:
        >>> target_spec([2, 0])
        ['predicted', 2, 0]
    """
    if asked == "all":
        return "all"
    return ["predicted", *(asked or [])]


def choose_targets(prediction: torch.Tensor, asked: list[int] | str | None) -> list[int]:
    """The classes to explain: the predicted one, then those asked for (``"all"``: every class).

    Raises:
        ValueError: a class the model does not have.
    """
    classes = int(prediction.numel())
    if asked == "all":
        return list(range(classes))
    out = [int(prediction.argmax())]
    for target in asked or []:
        if not 0 <= target < classes:
            raise ValueError(f"expected --target between 0 and {classes - 1} (the model has {classes} classes), "
                             f"got {target}")
        if target not in out:
            out.append(target)
    return out


def explain(explainer: Any, audio: Any, lyrics: Any, target: Sequence[int | str] | str, *, n_samples: int | str,
            num_features: int, generator: Any, perturbations_per_eval: int, modality: str = "both",
            feature_selection: str = "auto", show_progress: bool = False, song_info: Any = None,
            songs_per_batch: int = 1, memory_budget: int | None = None, sampler: str = "iid",
            tol: float = DEFAULT_TOL, max_samples: int = DEFAULT_MAX_SAMPLES) -> Any:
    """The one call of ``MusicLime.explain`` in the CLI (one song, or lists of songs);
    ``n_samples``, ``sampler``, ``tol`` and ``max_samples`` as :func:`sampling_options` gives them."""
    return explainer.explain(
        audio, lyrics, target=target, n_samples=n_samples, modality=modality, num_features=num_features,
        feature_selection=feature_selection, generator=generator, perturbations_per_eval=perturbations_per_eval,
        show_progress=show_progress, song_info=song_info, songs_per_batch=songs_per_batch,
        memory_budget=memory_budget, sampler=sampler, tol=tol, max_samples=max_samples,
    )


_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """``--memory-budget``: bytes, or with a K, M, G or T suffix (powers of 1024).

    Example:
        >>> parse_bytes("2G"), parse_bytes("500m"), parse_bytes("4096")
        (2147483648, 524288000, 4096)

    Raises:
        argparse.ArgumentTypeError: anything else (argparse prints it as a usage error).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), flags=re.IGNORECASE)
    value = int(float(match[1]) * _BYTES[match[2].lower()]) if match else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of bytes such as 2G, 500M or 1000000 (> 0), got {text!r}")
    return value


# -- the settings of an explanation -------------------------------------------------------------

#: The settings that change an explanation, recorded in each one (``song_info.settings``)
#: and compared when a run resumes into a folder or explanations are aggregated.
#: ``tol`` and ``max_samples`` are recorded only with ``n_samples="auto"``.
SETTINGS_THAT_COUNT = ("model", "separator", "segments", "unit", "keep_residual", "modality", "n_samples",
                       "sampler", "tol", "max_samples", "num_features", "feature_selection", "seed", "target",
                       "kernel")

#: Settings recorded since a later release, at the one value the runs before it used: an
#: explanation that records no ``sampler`` was drawn iid. Comparisons read a missing key
#: as this value, and the fingerprint leaves a setting out at this value, so a folder
#: written before the key existed resumes, and keeps its fingerprint.
SETTING_DEFAULTS: dict[str, Any] = {"sampler": "iid"}

#: Settings that apply only with ``n_samples="auto"`` (otherwise absent: ``n_samples`` differs then).
_AUTO_ONLY = ("tol", "max_samples")


def cli_kernel() -> dict[str, Any]:
    """The kernel of the CLI's explainer: :class:`~torchlime.music.MusicLime`'s defaults (the
    CLI sets none), known without loading the model."""
    from ..music import MusicLime

    return dict(MusicLime(lambda *inputs: None).kernel_parameters)


def explanation_settings(args: argparse.Namespace, options: SongOptions, *, stems: bool = False) -> dict[str, Any]:
    """What a run's explanations are made with, as JSON types: :data:`SETTINGS_THAT_COUNT`.

    These change an explanation's numbers or meaning: the model; the features (separator,
    segments, lyric unit, residual, modality); the surrogate (``n_samples`` perturbations,
    or ``"auto"`` with its ``tol`` and ``max_samples``, the ``num_features`` kept, the
    feature selection, the kernel); the masks (the ``sampler``, and ``--seed``, from which
    each song's seed is derived); which classes are explained (``--target``).
    What does not change them is left out: the device, ``--perturbations-per-eval``,
    ``--songs-per-batch`` and ``--memory-budget`` (how perturbations are grouped into
    forward calls: the same masks give the same explanation, up to float rounding), the
    stems cache, progress bars, the number of processes, and the aggregation options (the
    aggregate is recomputed from the songs on every run). Under ``n_samples="auto"`` the
    samples per forward call are also the rounds after which a song may stop, so those
    options can change how many samples a song uses (its explanation records the count);
    they are still left out: every song meets the same ``tol`` and ``max_samples``, and
    the default memory budget follows the device's free memory. ``separator`` is None
    where the run separates nothing (``explain --stems``); a song of a manifest given as
    stem files records its run's separator, which is not compared for it.

    Example:
        >>> import argparse
        >>> args = argparse.Namespace(model="m:f", modality="both", n_samples="64", sampler="paired", tol=None,
        ...                           max_samples=None, num_features=20, seed=0, target=None)
        >>> settings = explanation_settings(args, SongOptions(separator="none", segments=4))
        >>> settings["segments"], settings["n_samples"], settings["sampler"], settings["target"]
        (4, 64, 'paired', ['predicted'])
        >>> settings["kernel"]["kernel_width"], "tol" in settings
        (25.0, False)
    """
    return {
        "model": args.model,
        "separator": None if stems else options.separator_name,
        "segments": options.segments,
        "unit": options.unit,
        "keep_residual": options.keep_residual,
        "modality": args.modality,
        **sampling_options(args),
        "num_features": args.num_features,
        "feature_selection": "auto",
        "seed": args.seed,
        "target": target_spec(parse_targets(args.target)),
        "kernel": cli_kernel(),
    }


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of ``settings`` (16 hex digits): equal settings, equal fingerprints. A
    setting at its :data:`SETTING_DEFAULTS` value is left out, so settings recorded before
    it existed keep their fingerprint.

    Example:
        >>> a = settings_fingerprint({"n_samples": 64, "segments": 4})
        >>> a == settings_fingerprint({"segments": 4, "n_samples": 64, "sampler": "iid"}), len(a)
        (True, 16)
    """
    kept = {k: v for k, v in settings.items() if not (k in SETTING_DEFAULTS and v == SETTING_DEFAULTS[k])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def settings_differences(recorded: Any, current: dict[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """The settings that differ, as ``"segments 4 (now 2)"``; one line saying so when
    nothing is recorded. Keys in ``ignore`` are not compared; a key missing from
    ``recorded`` is its :data:`SETTING_DEFAULTS` value (``sampler`` iid), else "unrecorded";
    ``tol`` and ``max_samples`` are compared only when both sides have ``n_samples`` auto
    (otherwise ``n_samples`` differs).

    Example:
        >>> settings_differences({"segments": 4, "n_samples": 64, "seed": 0},
        ...                      {"segments": 2, "n_samples": 32, "sampler": "paired", "seed": 0})
        ['segments 4 (now 2)', 'n_samples 64 (now 32)', 'sampler iid (now paired)']
    """
    if not isinstance(recorded, dict):
        return ["no recorded settings (written by an older torchlime or another command)"]
    recorded = {**SETTING_DEFAULTS, **recorded}
    both_auto = recorded.get("n_samples") == "auto" == current.get("n_samples")
    return [f"{key} {show_setting(recorded.get(key, 'unrecorded'))} (now {show_setting(value)})"
            for key, value in current.items()
            if key not in ignore and not (key in _AUTO_ONLY and not both_auto)
            and recorded.get(key, "unrecorded") != value]


def show_setting(value: Any) -> str:
    """A setting's value in a message: a dict (the kernel) as ``key=value, ...``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def check_writable(out: Path) -> None:
    """Fail now, not after the first explanation, where the ``--out`` folder cannot be written
    (created if missing; a temporary file is made and removed in it).

    Raises:
        WriteError: naming the folder (read-only, a file, no space for a file).
    """
    from .._atomic import TEMPORARY_MARK, WriteError

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=TEMPORARY_MARK, dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise WriteError(err.errno, f"{err.strerror or err} (the --out folder)", str(out)) from err


def describe_os_error(err: OSError) -> str:
    """One line for a failed read or write: the file and why, without Python's ``[Errno n]``.

    Example:
        >>> describe_os_error(PermissionError(13, "Permission denied", "out/song.json"))
        'out/song.json: Permission denied'
    """
    from .._atomic import WriteError

    if isinstance(err, WriteError):
        return str(err)
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename else reason


# -- outputs ------------------------------------------------------------------------------------


def _recorded_source(path: Path, *keys: str) -> str | None:
    """The song a JSON output records (``metadata.song_info`` or ``settings.song_info``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in keys:
            data = data[key]
        return data.get("audio") or data.get("stems") or (
            f"demo song {data['demo_song_seed']}" if "demo_song_seed" in data else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_outputs(path: Path, source: str, *keys: str) -> None:
    """Refuse to overwrite ``path`` when it holds another song's output (``song.wav`` and
    ``song.mp3`` both write ``song.json``); the same song's earlier output is replaced.

    Raises:
        ValueError: ``path`` exists and was not written for ``source``.
    """
    if not path.exists():
        return
    other = _recorded_source(path, *keys)
    if other != source:
        was = f"was written for {other}" if other else "is not a torchlime output of this song"
        raise ValueError(f"expected --out to hold no other song's outputs, got {str(path)!r}, which {was}, not "
                         f"{source} (outputs are named after the file name without extension); pass another --out")


def write_outputs(exp: Any, out: Path, stem: str, labels: list[int], label_names: dict[int, str] | None) -> list[Path]:
    """The JSON of an explanation, and per label its PNG (and the WAV of its top audio)."""
    written = [exp.save_json(out / f"{stem}.json", num_features=20, label_names=label_names)]
    for label in labels:
        written.append(exp.save_figure(out / f"{stem}_label{label}.png", label, label_names=label_names))
        if exp.audio_factorization is not None and exp.feature_types.count("audio"):
            written.append(exp.save_audio(out / f"{stem}_label{label}_top_audio.wav", label))
    return written


def shorten(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters with "...", keeping a repeated line's `` (2)`` suffix.

    Example:
        >>> shorten("Down in the castle the candles burn (2)", 24)
        'Down in the castl... (2)'
    """
    if len(name) <= width:
        return name
    match = re.search(r" \(\d+\)$", name)
    tail = match.group(0) if match else ""
    return name[: width - 3 - len(tail)].rstrip() + "..." + tail


def print_top(exp: Any, labels: list[int], label_names: dict[int, str] | None, k: int = 10) -> None:
    """The top features of each label, one line each."""
    for label in labels:
        name = (label_names or {}).get(label, str(label))
        predicted = " (predicted)" if label == int(exp.prediction.argmax()) else ""
        print(f"\nlabel {label} ({name}){predicted}: model {float(exp.prediction[label]):.3f}, surrogate "
              f"{exp.local_pred[label]:.3f}, R^2 {exp.score[label]:.3f}")
        items = exp.get_explanation(label, k)
        for rank, item in enumerate(items, 1):
            print(f"  {rank:>2}. {item['type']:<6} {shorten(item['feature'], 50):<50} {item['weight']:+.3g}")
        if items and max(abs(item["weight"]) for item in items) < 1e-3:
            print("  note: every weight is below 0.001: removing features barely changes the model's output for "
                  "this class (is it saturated?), so this ranking says little")
