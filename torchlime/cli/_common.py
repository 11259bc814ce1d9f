"""What every subcommand shares: the model spec, song loading, options, the one explain call.

Nothing here imports :mod:`torchlime.music` at import time: the console script must start
(and print one clean line) where the audio extra does not load.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._checks import check_int

__all__ = [
    "ModelSpec",
    "load_model_spec",
    "read_audio",
    "prepare_song",
    "add_run_args",
    "add_song_args",
    "explain",
    "write_outputs",
    "print_top",
]

DEMO_FACTORY = "torchlime.music.demo.factory:factory"


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
        missing = [k for k in ("forward", "sample_rate", "tokenizer") if k not in fields]
        if missing:
            raise ValueError(
                f"expected the factory {name!r} to provide forward, sample_rate and tokenizer; missing {missing}"
            )
        if not callable(fields["forward"]):
            raise ValueError(f"expected the factory {name!r} to provide a callable forward, got "
                             f"{type(fields['forward']).__name__}")
        labels = fields.get("labels")
        max_length = fields.get("max_length")
        return cls(
            forward=fields["forward"],
            sample_rate=check_int(fields["sample_rate"], f"sample_rate of {name or 'the model'}", 1),
            tokenizer=fields["tokenizer"],
            max_length=None if max_length is None else check_int(max_length, f"max_length of {name or 'the model'}", 1),
            labels=None if labels is None else tuple(str(label) for label in labels),
            apply_softmax=bool(fields.get("apply_softmax", False)),
            channels=check_int(fields.get("channels", 1), f"channels of {name or 'the model'}", 1, 2),
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
    ``apply_softmax`` and ``channels`` (see :class:`ModelSpec`).

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
        raise ValueError(f"module {module_name!r} has no callable {attr!r} (for --model {spec!r})")
    return ModelSpec.from_factory(factory(device), spec)


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file with soundfile as ``(C, T)`` float32 and its rate.

    Raises:
        ValueError: missing or unreadable file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected an audio file, got {str(path)!r}, which does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
        raise ValueError(f"could not read audio file {str(path)!r}: {err}") from err
    return torch.from_numpy(data.T.copy()), int(rate)


def prepare_song(spec: ModelSpec, separator: Any, audio_path: str | Path, lyrics_path: str | Path,
                 args: argparse.Namespace, device: torch.device) -> tuple[Any, Any]:
    """Read, separate and factorize one song: its ``StemFactorization`` and ``LyricsFactorization``.

    Raises:
        ValueError: a missing or unreadable audio or lyrics file, lyrics with no unit.
    """
    from ..music import StemFactorization

    mixture, rate = read_audio(audio_path)
    lyrics_path = Path(lyrics_path)
    if not lyrics_path.is_file():
        raise ValueError(f"expected a lyrics text file, got {str(lyrics_path)!r}, which does not exist")
    text = lyrics_path.read_text(encoding="utf-8")
    if spec.channels == 1:
        mixture = mixture.mean(0, keepdim=True)
    audio = StemFactorization.from_separator(
        separator, mixture.to(device), rate, target_sample_rate=spec.sample_rate,
        num_segments=args.segments, keep_residual=args.keep_residual,
    )
    return audio, spec.lyrics(text, args.unit, device)


# -- options ----------------------------------------------------------------------------------


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The options of every command that explains: output, sampling, seed, device, progress."""
    p.add_argument("--out", default="torchlime_out", help="output folder (default: torchlime_out)")
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--num-features", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100, help="perturbations per forward call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_song_args(p: Any) -> None:
    """The options :func:`prepare_song` reads: separator, segments, lyric unit, residual."""
    p.add_argument("--separator", default="umxl", help="Open-Unmix model name or local checkpoint folder")
    p.add_argument("--segments", type=int, default=10)
    p.add_argument("--unit", default="line", choices=["line", "word"])
    p.add_argument("--keep-residual", action="store_true")


# -- explaining and writing -------------------------------------------------------------------


def explain(explainer: Any, audio: Any, lyrics: Any, targets: Sequence[int] | str, *, n_samples: int,
            num_features: int, generator: Any, perturbations_per_eval: int, modality: str = "both",
            feature_selection: str = "auto", show_progress: bool = False, song_info: Any = None,
            songs_per_batch: int = 1) -> Any:
    """The one call of ``MusicLime.explain`` in the CLI (one song, or lists of songs)."""
    return explainer.explain(
        audio, lyrics, targets=targets, n_samples=n_samples, modality=modality, num_features=num_features,
        feature_selection=feature_selection, generator=generator, batch_size=perturbations_per_eval,
        show_progress=show_progress, song_info=song_info, songs_per_batch=songs_per_batch,
    )


def write_outputs(exp: Any, out: Path, stem: str, labels: list[int], label_names: dict[int, str] | None) -> list[Path]:
    """The JSON of an explanation, and per label its PNG (and the WAV of its top audio)."""
    written = [exp.save_json(out / f"{stem}.json", num_features=20, label_names=label_names)]
    for label in labels:
        written.append(exp.save_figure(out / f"{stem}_label{label}.png", label))
        if exp.audio_factorization is not None and exp.feature_types.count("audio"):
            written.append(exp.save_audio(out / f"{stem}_label{label}_top_audio.wav", label))
    return written


def print_top(exp: Any, labels: list[int], label_names: dict[int, str] | None, k: int = 10) -> None:
    """The top features of each label, one line each."""
    for label in labels:
        name = (label_names or {}).get(label, str(label))
        print(f"\nlabel {label} ({name}): model {float(exp.prediction[label]):.3f}, surrogate "
              f"{exp.local_pred[label]:.3f}, R^2 {exp.score[label]:.3f}")
        for rank, item in enumerate(exp.get_explanation(label, k), 1):
            feature = item["feature"] if len(item["feature"]) <= 50 else item["feature"][:47] + "..."
            print(f"  {rank:>2}. {item['type']:<6} {feature:<50} {item['weight']:+.4f}")
