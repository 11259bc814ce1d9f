"""``Explanation``: one song's multimodal explanation, MusicLIME's interface and files.

Shape glossary: K explained labels, F interpretable features, S stems, G segments,
C channels, T audio samples.
"""

from __future__ import annotations

import functools
import json
import math
import os
import textwrap
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._atomic import atomic_write
from .._checks import check_int
from ..functional.engine import stable_top_k

__all__ = ["Explanation", "TopAudio"]

#: A label is "saturated" when every |coef| is below this fraction of the model's output
#: scale (the largest |output| on the song): the model barely moves under any perturbation.
SATURATION_RATIO = 1e-3
#: Below this weighted R^2 the figure says the surrogate explains little of the model.
LOW_SCORE = 0.05
#: The top-components WAV's peak after normalisation (fraction of full scale).
PEAK = 0.99
#: Half-width of the intervals drawn and of the stable top-k test, in standard errors (95%).
Z = 1.96
#: The k of the "stable top-k" flag unless an explanation says otherwise.
TOP_K = 5
#: Fonts tried in order for text drawn from lyrics and class names (matplotlib falls back
#: along the list glyph by glyph); DejaVu Sans ships with matplotlib, the others are used
#: where installed. Characters none of them has are replaced, never drawn as empty boxes.
FONT_FAMILIES = ("DejaVu Sans", "Noto Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans Symbols",
                 "Noto Sans Symbols 2", "Noto Emoji", "Arial Unicode MS", "STIXGeneral")
# Metadata keys with their own place in the JSON (not repeated under explanation_params).
_OWN_KEYS = ("song_info", "label_names", "feature_space", "segment_times", "duration_s", "top_audio")


class TopAudio(NamedTuple):
    """The audio of an explanation's top components, ready to write or play.

    Attributes:
        audio: ``(C, T)`` float32 on the CPU, at ``sample_rate``, peak <= 0.99.
        sample_rate: its rate (the song's own rate where recorded).
        components: the audio feature names it sums, by |weight| descending.
        weights: their coefficients.
        gain: the factor the sum was scaled by to stay within 0.99 of full scale
            (1.0 when it already did: quiet audio is never scaled up).
        source_sample_rate: the rate of the factorization's stems (the model's rate).
    """

    audio: Tensor
    sample_rate: int
    components: list[str]
    weights: list[float]
    gain: float
    source_sample_rate: int


class Explanation:
    """The surrogate of one song for each explained label.

    Attributes:
        labels: the explained class indices.
        feature_names: F names (``vocals_T3``, lyric lines or words).
        feature_types: F entries "audio" or "lyrics".
        coef: ``(K, F)`` surrogate coefficients (0 for features the feature selection
            dropped); ``weights`` is the same tensor under MusicLIME's name.
        stderr: ``(K, F)`` standard errors of ``coef`` where the fit gave them, else None.
        n_samples: the perturbations the fit used (an automatic budget decides), or None.
        top_k: the k of :attr:`stable_top_k`.
        intercept, score, local_pred: dicts label -> float (``score`` is the surrogate's
            weighted R^2).
        local_exp: dict label -> [(feature index, weight)] of the selected features,
            sorted by |weight| descending (lime's ``local_exp``).
        prediction: the model's output for the unperturbed song, ``(classes,)``.
        metadata: how it was computed (n_samples, kernel, seed, song_info, label_names, ...).

    Example:
        >>> import torch
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> stems = torch.randn(4, 1, 800, generator=torch.Generator().manual_seed(0))
        >>> audio = StemFactorization(stems, sample_rate=8000, num_segments=2)
        >>> loud_start = lambda a: torch.stack([a[:, 0, :400].pow(2).mean(-1), a[:, 0, 400:].pow(2).mean(-1)], 1)
        >>> exp = MusicLime(loud_start).explain(audio, modality="audio", target=[0], n_samples=300,
        ...                                     generator=torch.Generator().manual_seed(0))
        >>> exp.coef.shape, exp.segment_times
        (torch.Size([1, 8]), [(0.0, 0.05), (0.05, 0.1)])
        >>> sorted(item["feature"] for item in exp.get_explanation(0, num_features=4))
        ['bass_T0', 'drums_T0', 'other_T0', 'vocals_T0']
        >>> fig, axes = exp.plot(0, label_names={0: "loud start"})
        >>> fig.axes[0].texts[0].get_text()
        "Explanation of 'loud start' (class 0)"
        >>> top = exp.to_dict(audio_components=4)["explanations"]["label_0"]["top_audio"]
        >>> sorted({(c["start_s"], c["end_s"]) for c in top["components"]}), top["gain"] <= 1.0
        ([(0.0, 0.05)], True)
    """

    def __init__(
        self,
        labels: list[int],
        feature_names: list[str],
        feature_types: list[str],
        coef: Tensor,
        intercept: dict[int, float],
        score: dict[int, float],
        local_pred: dict[int, float],
        local_exp: dict[int, list[tuple[int, float]]],
        prediction: Tensor,
        metadata: dict[str, Any],
        audio_factorization: Any = None,
        lyrics_factorization: Any = None,
        *,
        stderr: Tensor | None = None,
        n_samples: int | None = None,
        top_k: int = TOP_K,
    ) -> None:
        if stderr is not None and tuple(stderr.shape) != tuple(coef.shape):
            raise ValueError(f"expected stderr of the shape of coef {tuple(coef.shape)}, got {tuple(stderr.shape)}")
        self.labels = labels
        self.feature_names = feature_names
        self.feature_types = feature_types
        self.coef = coef
        self.stderr = stderr
        self.n_samples = n_samples
        self.top_k = check_int(top_k, "top_k", 1)
        self.intercept = intercept
        self.score = score
        self.local_pred = local_pred
        self.local_exp = local_exp
        self.prediction = prediction
        self.metadata = metadata
        self.audio_factorization = audio_factorization
        self.lyrics_factorization = lyrics_factorization

    @property
    def weights(self) -> Tensor:
        """``(K, F)``: :attr:`coef` under MusicLIME's name (the JSON field keeps it)."""
        return self.coef

    @weights.setter
    def weights(self, value: Tensor) -> None:
        self.coef = value

    @classmethod
    def from_fit(cls, fit, selection, labels, names, types, prediction, *, audio_factorization=None,
                 lyrics_factorization=None, metadata=None, top_k: int = TOP_K,
                 label_names: dict[int, str] | None = None) -> Explanation:
        """Build from a :class:`~torchlime.functional.SurrogateFit` of one song (``(1, K, F)``).

        Args:
            fit: its ``coef``, ``intercept``, ``score``, ``local_pred`` and, where present,
                ``stderr`` (same shape as ``coef``) and ``n_samples`` (one value).
            selection: the fit's :class:`~torchlime.functional.FeatureSelection` (``order``
                ``(1, K, F)``, ``count`` ``(1, K)``).
            labels: the K class indices.
            names, types: the F feature names and types ("audio" or "lyrics").
            prediction: ``(classes,)`` the model's output on the song.
            audio_factorization, lyrics_factorization: the song's factorizations.
            metadata: settings to record (``song_info`` may hold the song's own
                ``sample_rate`` and ``channels``, used by :meth:`top_audio`).
            top_k: the k of :attr:`stable_top_k`.
            label_names: class index -> name, for titles (stored in ``metadata``).
        """
        K = len(labels)
        coef = fit.coef.reshape(K, -1).detach().cpu()
        stderr = getattr(fit, "stderr", None)
        stderr = None if stderr is None else stderr.reshape(K, -1).detach().cpu()
        used = getattr(fit, "n_samples", None)
        if isinstance(used, Tensor):
            if used.numel() != 1:
                raise ValueError(f"expected the fit of one song (one n_samples), got n_samples of shape {tuple(used.shape)}")
            used = int(used.reshape(()))
        order = selection.order.reshape(K, -1).cpu()
        count = selection.count.reshape(K).cpu()
        local_exp = {}
        for k, label in enumerate(labels):
            kept = order[k, : int(count[k])].tolist()
            pairs = [(int(i), float(coef[k, i])) for i in kept]
            local_exp[label] = sorted(pairs, key=lambda x: abs(x[1]), reverse=True)
        take = lambda t: {label: float(v) for label, v in zip(labels, t.reshape(-1).tolist())}  # noqa: E731
        metadata = dict(metadata or {})
        if label_names:
            metadata["label_names"] = {int(k): str(v) for k, v in dict(label_names).items()}
        return cls(
            list(labels), list(names), list(types), coef, take(fit.intercept), take(fit.score),
            take(fit.local_pred), local_exp, prediction.detach().cpu(), metadata,
            audio_factorization, lyrics_factorization, stderr=stderr, n_samples=used, top_k=top_k,
        )

    def _check_label(self, label: int) -> None:
        if label not in self.local_exp:
            raise ValueError(f"expected one of the explained labels {self.labels}, got {label!r}")

    # -- reading the explanation --------------------------------------------------------------

    def get_explanation(self, label: int, num_features: int = 10) -> list[dict[str, Any]]:
        """The top features as ``[{"type", "feature", "weight"}]`` (MusicLIME's format)."""
        self._check_label(label)
        return [
            {"type": self.feature_types[i], "feature": self.feature_names[i], "weight": w}
            for i, w in self.local_exp[label][:num_features]
        ]

    def get_sorted_components(
        self,
        label: int,
        positive_components: bool = True,
        negative_components: bool = True,
        num_components: int | str = "all",
        min_abs_weight: float = 0.0,
        return_indices: bool = False,
    ) -> list[Any]:
        """The explanation's components by |weight|, as MusicLIME's ``get_sorted_components``.

        Returns the audio of each audio component (``(C, T)`` tensor) and the text of
        each lyric unit, or their feature indices with ``return_indices=True``.
        """
        self._check_label(label)
        if not (positive_components or negative_components):
            raise ValueError("expected positive_components or negative_components to be True, got neither")
        picked = [
            (i, w) for i, w in self.local_exp[label]
            if abs(w) >= min_abs_weight and ((w > 0 and positive_components) or (w < 0 and negative_components))
        ]
        if num_components != "all":
            picked = picked[: int(num_components)]
        if return_indices:
            return [i for i, _ in picked]
        out = []
        for i, _ in picked:
            if self.feature_types[i] == "audio" and self.audio_factorization is not None:
                out.append(self.audio_factorization.component_audio([self.feature_names[i]]))
            else:
                out.append(self.feature_names[i])
        return out

    @property
    def stable_top_k(self) -> dict[int, bool] | None:
        """Per label, whether its top-:attr:`top_k` features by |coef| are separated from the
        rest by 1.96 combined standard errors (:func:`torchlime.functional.engine.stable_top_k`);
        None without standard errors. Features the feature selection dropped count as
        exactly 0; a selected feature without a finite standard error makes the label unstable.
        """
        if self.stderr is None:
            return None
        selected = self._selected_mask()
        se = torch.where(selected, torch.nan_to_num(self.stderr.double(), nan=math.inf), 0.0)
        flags = stable_top_k(self.coef.double(), se, self.top_k, Z)
        return {label: bool(f) for label, f in zip(self.labels, flags.tolist())}

    def _selected_mask(self) -> Tensor:
        """``(K, F)`` bool: the features each label's feature selection kept."""
        mask = torch.zeros(len(self.labels), len(self.feature_names), dtype=torch.bool)
        for k, label in enumerate(self.labels):
            idx = [i for i, _ in self.local_exp[label]]
            mask[k, idx] = True
        return mask

    def label_name(self, label: int, label_names: dict[int, str] | None = None) -> str:
        """``"'happy' (class 1)"`` where the class's name is known (``label_names``, else the
        names in ``metadata``), else ``"class 1"``."""
        names = label_names if label_names is not None else self.metadata.get("label_names") or {}
        name = names.get(label, names.get(str(label)))
        if name is None or str(name) == str(label):
            return f"class {label}"
        return f"{str(name)!r} (class {label})"

    def notes(self, label: int) -> list[str]:
        """Warnings a reader needs before trusting ``label``'s weights (also in the figure
        and the JSON): a saturated model (every |coef| below ``SATURATION_RATIO`` of the
        model's output scale) or a surrogate that fits poorly (weighted R^2 below ``LOW_SCORE``).
        """
        self._check_label(label)
        if self._saturated(label):
            largest = max((abs(w) for _, w in self.local_exp[label]), default=0.0)
            return [f"model saturated: weights are tiny (largest |weight| {largest:.2g} vs. output "
                    f"{self._output_scale():.3g}), the explanation says little"]
        score = self.score[label]
        if math.isfinite(score) and score < LOW_SCORE:
            return [f"the surrogate fits poorly (weighted R\u00b2 {score:.2g}): the weights explain little "
                    f"of the model's output"]
        return []

    def _output_scale(self) -> float:
        scale = float(self.prediction.abs().max()) if self.prediction.numel() else 0.0
        return scale if scale > 0 and math.isfinite(scale) else 1.0

    def _saturated(self, label: int) -> bool:
        largest = max((abs(w) for _, w in self.local_exp[label]), default=0.0)
        return largest < SATURATION_RATIO * self._output_scale()

    # -- the feature space ------------------------------------------------------------------------

    @property
    def segment_times(self) -> list[tuple[float, float]] | None:
        """``(start, end)`` of every audio segment in seconds (from the factorization, else
        from a loaded JSON), or None where unknown."""
        layout = self._audio_layout()
        return None if layout is None else layout["segment_times"]

    def _audio_layout(self) -> dict[str, Any] | None:
        """Stems, segment times and song length of the audio features, or None where unknown
        (or where the audio features are not the factorization's S*G, segment-major)."""
        fac = self.audio_factorization
        num_audio = self.feature_types.count("audio")
        if fac is not None:
            rate = fac.sample_rate
            times = getattr(fac, "segment_times", None)
            if times is None:
                times = [(a / rate, b / rate) for a, b in fac.boundaries]
            layout = dict(stem_names=list(fac.stem_names), segment_times=[(float(a), float(b)) for a, b in times],
                          duration_s=fac.stems.shape[-1] / rate)
        else:
            audio = (self.metadata.get("feature_space") or {}).get("audio")
            if not audio:
                return None
            try:
                layout = dict(stem_names=[str(s) for s in audio["stem_names"]],
                              segment_times=[(float(a), float(b)) for a, b in audio["segment_times"]],
                              duration_s=float(audio["duration_s"]))
            except (KeyError, TypeError, ValueError):
                return None
        if num_audio != len(layout["stem_names"]) * len(layout["segment_times"]):
            return None
        return layout

    def feature_space(self) -> dict[str, Any]:
        """The settings that rebuild this explanation's features, as JSON types.

        ``audio``: stem names, segment boundaries (samples) and times (seconds), the stems'
        rate, length and channels, the feature order and whether the residual was kept;
        ``lyrics``: the unit, the number of units and the tokenization settings. Either is
        None when the explanation has no such features. A loaded explanation returns what
        its JSON recorded.
        """
        saved = self.metadata.get("feature_space")
        space: dict[str, Any] = {"audio": None, "lyrics": None}
        if isinstance(saved, dict):
            space.update(saved)
        fac = self.audio_factorization
        if fac is not None and "audio" in self.feature_types:
            layout = self._audio_layout() or {}
            space["audio"] = dict(
                stem_names=list(fac.stem_names), num_stems=fac.num_stems, num_segments=fac.num_segments,
                feature_order="segment-major: audio feature g * num_stems + s is stem s in segment g",
                sample_rate=int(fac.sample_rate), num_samples=int(fac.stems.shape[-1]), channels=int(fac.stems.shape[1]),
                boundaries=[[int(a), int(b)] for a, b in fac.boundaries],
                segment_times=[[a, b] for a, b in layout.get("segment_times", [])],
                duration_s=layout.get("duration_s"), keep_residual=getattr(fac, "residual", None) is not None,
            )
        lyr = self.lyrics_factorization
        if lyr is not None and "lyrics" in self.feature_types:
            tokenizer = getattr(lyr, "tokenizer", None)
            space["lyrics"] = dict(
                unit=getattr(lyr, "unit", None), num_units=self.feature_types.count("lyrics"),
                drop_annotations=getattr(lyr, "drop_annotations", None), max_length=getattr(lyr, "max_length", None),
                padding=getattr(lyr, "padding", None),
                tokenizer=None if tokenizer is None else str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
            )
        return space

    def _feature_time(self, index: int) -> tuple[str, int, float, float] | None:
        """(stem, segment, start s, end s) of an audio feature, where the layout is known."""
        layout = self._audio_layout()
        if layout is None or self.feature_types[index] != "audio":
            return None
        position = [i for i, t in enumerate(self.feature_types) if t == "audio"].index(index)
        S = len(layout["stem_names"])
        g = position // S
        start, end = layout["segment_times"][g]
        return layout["stem_names"][position % S], g, start, end

    # -- the top components, to listen to ---------------------------------------------------------

    def top_audio(self, label: int, num_components: int = 5, positive: bool = True, *,
                  sample_rate: int | None = None, channels: int | None = None) -> TopAudio:
        """The sum of the top audio components for ``label``, at the song's own rate and channels.

        The stems are at the model's rate (often resampled down from the song's, and mixed
        to mono). The sum is resampled with :func:`torchaudio.functional.resample` to
        ``sample_rate`` (default: ``song_info["sample_rate"]`` in :attr:`metadata`, else the
        stems' rate) and brought to ``channels`` (default ``song_info["channels"]``, else
        the stems' channels) by repeating a mono sum (or averaging to mono): the original
        mixture is not kept, so a stereo song's components come back as the same sound in
        both channels. Finally the audio is scaled down, only if needed, so its peak is at
        most 0.99 of full scale (``gain`` says by how much).

        Args:
            label: an explained label.
            num_components: the most components summed (those with the largest |weight|).
            positive: the components that push the label up (False: those pushing it down).
            sample_rate: the output rate (Hz).
            channels: the output channels.

        Raises:
            ValueError: an unexplained label, no audio factorization, a bad rate or channels.
        """
        self._check_label(label)
        fac = self.audio_factorization
        if fac is None:
            raise ValueError("expected an explanation with an audio factorization, got none "
                             "(a loaded JSON keeps the weights, not the audio)")
        num_components = check_int(num_components, "num_components", 0)
        info = self.metadata.get("song_info") or {}
        rate = sample_rate if sample_rate is not None else info.get("sample_rate", fac.sample_rate)
        rate = check_int(rate, "sample_rate (the song's rate for the top-components WAV)", 1)
        source_channels = int(fac.stems.shape[1])
        want = channels if channels is not None else info.get("channels", source_channels)
        want = check_int(want, "channels (the song's channels for the top-components WAV)", 1)
        if want != source_channels and 1 not in (want, source_channels):
            raise ValueError(f"expected channels 1 or {source_channels} for stems with {source_channels} channels, got {want}")
        picked = [
            (self.feature_names[i], w) for i, w in self.local_exp[label]
            if self.feature_types[i] == "audio" and ((w > 0) if positive else (w < 0))
        ][:num_components]
        names = [name for name, _ in picked]
        audio = fac.component_audio(names) if names else torch.zeros_like(fac.stems[0])
        audio = audio.detach().to("cpu", torch.float32)
        if rate != fac.sample_rate:
            import torchaudio.functional as AF

            audio = AF.resample(audio, int(fac.sample_rate), rate)
        if want != source_channels:
            audio = audio.expand(want, -1) if source_channels == 1 else audio.mean(0, keepdim=True)
        peak = float(audio.abs().max()) if audio.numel() else 0.0
        gain = PEAK / peak if peak > PEAK else 1.0
        return TopAudio((audio * gain).contiguous(), rate, names, [w for _, w in picked], gain, int(fac.sample_rate))

    # -- export -------------------------------------------------------------------------------

    def to_dict(self, num_features: int = 10, label_names: dict[int, str] | None = None,
                audio_components: int = 5) -> dict[str, Any]:
        """MusicLIME's JSON schema (``metadata`` + ``explanations.label_<k>``) plus ours.

        Ours: per label the full ``weights`` (in ``metadata.feature_names`` order),
        ``stderr`` (or null), ``selected_features`` (indices the feature selection kept),
        ``notes`` (see :meth:`notes`), ``top_audio`` (what :meth:`save_audio` writes with
        ``audio_components``: names, weights, segment times, rate, channels, gain) and
        start/end seconds on the audio ``top_features``; in ``metadata``:
        ``feature_space`` (see :meth:`feature_space`) and ``uncertainty`` (``z``, ``top_k``,
        ``stable_top_k`` per label, ``n_samples_used``).
        """
        names_of = label_names if label_names is not None else self.metadata.get("label_names") or {}
        stable = self.stable_top_k
        explanations = {}
        for k, label in enumerate(self.labels):
            top = []
            for r, item in enumerate(self.get_explanation(label, num_features)):
                entry = {"rank": r + 1, **item}
                where = self._feature_time(self.feature_names.index(item["feature"])) if item["type"] == "audio" else None
                if where is not None:
                    entry.update(start_s=where[2], end_s=where[3])
                top.append(entry)
            explanations[f"label_{label}"] = {
                "prediction_label": str(names_of.get(label, label)),
                "intercept": self.intercept[label],
                "score": self.score[label],
                "local_prediction": self.local_pred[label],
                "model_prediction": float(self.prediction[label]),
                "top_features": top,
                # A list in metadata.feature_names order: lyric lines can repeat (a chorus).
                "weights": self.coef[k].tolist(),
                "stderr": None if self.stderr is None else [_json_float(v) for v in self.stderr[k].tolist()],
                "selected_features": sorted(i for i, _ in self.local_exp[label]),
                "notes": self.notes(label),
                "top_audio": self._top_audio_record(label, audio_components),
            }
        num_audio = self.feature_types.count("audio")
        return {
            "metadata": {
                "timestamp": datetime.now(timezone.utc).isoformat(),
                "song_info": self.metadata.get("song_info", {}),
                "model_info": {
                    "total_audio_components": num_audio,
                    "total_text_lines": len(self.feature_types) - num_audio,
                    "total_features": len(self.feature_types),
                    "prediction": self.prediction.tolist(),
                },
                "explanation_params": {
                    **{k: v for k, v in self.metadata.items() if k not in _OWN_KEYS},
                    "num_features_shown": num_features,
                },
                "feature_names": self.feature_names,
                "feature_types": self.feature_types,
                "feature_space": self.feature_space(),
                "uncertainty": {
                    "z": Z, "top_k": self.top_k, "n_samples_used": self.n_samples,
                    "stable_top_k": None if stable is None else {str(k): v for k, v in stable.items()},
                },
                "generator": "torchlime",
            },
            "explanations": explanations,
        }

    def _top_audio_record(self, label: int, num_components: int) -> dict[str, Any] | None:
        """What :meth:`save_audio` writes for ``label``, for the JSON (a loaded one's record)."""
        if self.audio_factorization is None or "audio" not in self.feature_types:
            return (self.metadata.get("top_audio") or {}).get(label)
        top = self.top_audio(label, num_components)
        components = []
        for name, weight in zip(top.components, top.weights):
            entry = {"feature": name, "weight": weight}
            where = self._feature_time(self.feature_names.index(name))
            if where is not None:
                entry.update(stem=where[0], segment=where[1], start_s=where[2], end_s=where[3])
            components.append(entry)
        return {"label": label, "positive": True, "num_components": num_components, "components": components,
                "sample_rate": top.sample_rate, "channels": int(top.audio.shape[0]),
                "source_sample_rate": top.source_sample_rate, "gain": top.gain, "peak": PEAK}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Rebuild from :meth:`to_dict` (a saved JSON): weights, scores and the selected features.

        The selected features are ``selected_features`` where recorded (else those with a
        non-zero weight); standard errors, ``stable_top_k``'s k, segment times and the
        feature-space settings come back where the file has them (older files load
        without). The factorizations are not saved, so :meth:`get_sorted_components`
        returns names, not audio.

        Raises:
            ValueError: a dict that is not torchlime's explanation schema.
        """
        try:
            meta = data["metadata"]
            names = list(meta["feature_names"])
            types = list(meta["feature_types"])
            explanations = data["explanations"]
            labels = [int(key.split("_", 1)[1]) for key in explanations]
            entries = [explanations[f"label_{k}"] for k in labels]
            rows = [[float(w) for w in entry["weights"]] for entry in entries]
            if any(len(row) != len(names) for row in rows):
                raise ValueError(f"{len(names)} weights per label")
            se_rows = [entry.get("stderr") for entry in entries]
            if any(r is not None and len(r) != len(names) for r in se_rows):
                raise ValueError(f"{len(names)} standard errors per label")
            chosen = [entry.get("selected_features") for entry in entries]
            chosen = [None if c is None else [int(i) for i in c] for c in chosen]
            if any(c is not None and not all(0 <= i < len(names) for i in c) for c in chosen):
                raise ValueError(f"selected_features within [0, {len(names)})")
            prediction = torch.tensor(meta["model_info"]["prediction"], dtype=torch.float32)
            uncertainty = meta.get("uncertainty") or {}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(
                f"expected torchlime's explanation JSON (metadata.feature_names, explanations.label_<k>.weights), "
                f"got a dict without {err}"
            ) from None
        coef = torch.tensor(rows, dtype=torch.float32).reshape(len(labels), len(names))
        stderr = None
        if labels and all(r is not None for r in se_rows):
            stderr = torch.tensor([[math.nan if v is None else float(v) for v in r] for r in se_rows],
                                  dtype=torch.float32).reshape(len(labels), len(names))
        local_exp = {}
        for k, row, kept in zip(labels, rows, chosen):
            kept = kept if kept is not None else [i for i, w in enumerate(row) if w != 0]
            local_exp[k] = sorted(((i, row[i]) for i in kept), key=lambda p: abs(p[1]), reverse=True)
        get = lambda key: {k: float(explanations[f"label_{k}"][key]) for k in labels}  # noqa: E731
        params = dict(meta.get("explanation_params", {}))
        params.pop("num_features_shown", None)
        params["song_info"] = meta.get("song_info", {})
        params["label_names"] = {k: str(explanations[f"label_{k}"].get("prediction_label", k)) for k in labels}
        space = meta.get("feature_space")
        if isinstance(space, dict):
            params["feature_space"] = space
            audio = space.get("audio") or {}
            if audio.get("segment_times") is not None:
                params["segment_times"] = audio["segment_times"]
                params["duration_s"] = audio.get("duration_s")
        top_audio = {k: entry["top_audio"] for k, entry in zip(labels, entries) if entry.get("top_audio")}
        if top_audio:
            params["top_audio"] = top_audio
        return cls(labels, names, types, coef, get("intercept"), get("score"), get("local_prediction"),
                   local_exp, prediction, params, stderr=stderr, n_samples=uncertainty.get("n_samples_used"),
                   top_k=uncertainty.get("top_k", TOP_K))

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> Explanation:
        """Read a file written by :meth:`save_json` (see :meth:`from_dict`)."""
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"expected a JSON explanation in {str(path)!r}, got invalid JSON: {err}") from None
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def save_json(self, path: str | os.PathLike, num_features: int = 10, label_names: dict[int, str] | None = None,
                  audio_components: int = 5) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically."""
        data = self.to_dict(num_features, label_names, audio_components)
        return atomic_write(path, lambda f: json.dump(data, f, indent=2))

    def save_audio(self, path: str | os.PathLike, label: int, num_components: int = 5, positive: bool = True, *,
                   sample_rate: int | None = None, channels: int | None = None) -> Path:
        """Write a WAV of the top audio components for ``label`` (hear the explanation).

        The audio is :meth:`top_audio`'s: at the song's own rate and channels where
        ``song_info`` records them (else the stems'), peak at most 0.99 of full scale. The
        file's comment names the components and the gain; :meth:`to_dict` lists them too.
        """
        import soundfile as sf

        top = self.top_audio(label, num_components, positive, sample_rate=sample_rate, channels=channels)
        data = top.audio.numpy().T
        comment = (f"torchlime: top {'positive' if positive else 'negative'} audio components of "
                   f"{self.label_name(label)}: {', '.join(top.components) or 'none'}; gain {top.gain:.6g}")

        def write(tmp: Path) -> None:
            with sf.SoundFile(tmp, "w", samplerate=top.sample_rate, channels=data.shape[1], format="WAV") as f:
                f.comment = comment.encode("ascii", "replace").decode()
                f.write(data)

        return atomic_write(path, write, mode=None)

    # -- figures ------------------------------------------------------------------------------

    def plot(self, label: int, ax: Any = None, *, label_names: dict[int, str] | None = None,
             num_audio: int = 10, num_lyrics: int = 10) -> tuple[Any, list[Any]]:
        """Draw ``label``'s explanation: a stems x time heatmap, the top audio components and
        the top lyric units, on one symmetric colour scale.

        Drawn on a :class:`matplotlib.figure.Figure` (no pyplot, the global backend is left
        alone). Features the feature selection dropped are hatched grey ("not selected"),
        not drawn as zero weights; lyric units with a zero weight are left out of the bars;
        95% intervals (±1.96 standard errors) are drawn where the fit gave standard errors,
        with the stable top-k flag in the header; a saturated model or a poor fit is said
        in red (see :meth:`notes`). Text the fonts cannot draw is replaced by "\ufffd".

        Args:
            label: an explained label.
            ax: None (a new figure with a header and three panels), or three Axes (a list
                or ``Figure.subplots(1, 3)``'s array) to draw the heatmap, the audio bars and
                the lyric bars on.
            label_names: class index -> name (default: the names in :attr:`metadata`).
            num_audio: audio components in the bar panel.
            num_lyrics: lyric units in the bar panel.

        Returns:
            ``(figure, [heatmap, audio bars, lyric bars])``; a new figure leaves out the
            panels of a modality the explanation does not have (None in the list).

        Raises:
            ValueError: an unexplained label.
            TypeError: ``ax`` that is not None or three Axes.
        """
        from matplotlib.axes import Axes

        self._check_label(label)
        num_audio = check_int(num_audio, "num_audio", 0)
        num_lyrics = check_int(num_lyrics, "num_lyrics", 0)
        if ax is None:
            fig, header, axes = self._layout()
        else:
            axes = [ax] if isinstance(ax, Axes) or not hasattr(ax, "__iter__") else list(getattr(ax, "flat", ax))
            if len(axes) != 3 or not all(isinstance(a, Axes) for a in axes):
                got = type(ax).__name__ if len(axes) != 3 else [type(a).__name__ for a in axes]
                raise TypeError(f"expected ax as None or three matplotlib Axes (heatmap, audio bars, lyric bars), got {got}")
            fig, header = axes[0].figure, None
        _Drawing(self, label, label_names).draw(fig, header, axes, num_audio, num_lyrics)
        return fig, axes

    def _layout(self) -> tuple[Any, tuple[Any, Any], list[Any]]:
        """A new figure: a header (text, legend) over the panels of the modalities present."""
        from matplotlib.figure import Figure

        audio, lyrics = "audio" in self.feature_types, "lyrics" in self.feature_types
        if not audio:  # lyrics only: one bar panel
            fig = Figure(figsize=(11, 6), layout="constrained")
            grid = fig.add_gridspec(2, 1, height_ratios=[0.2, 1.0])
            top = grid[0].subgridspec(1, 2, width_ratios=[1.6, 1])
        else:
            fig = Figure(figsize=(13, 9), layout="constrained")
            grid = fig.add_gridspec(3, 2, height_ratios=[0.3, 1.0, 1.0])
            top = grid[0, :].subgridspec(1, 2, width_ratios=[2.3, 1])
        header = (fig.add_subplot(top[0]), fig.add_subplot(top[1]))
        if not audio:
            return fig, header, [None, None, fig.add_subplot(grid[1])]
        rows = [fig.add_subplot(grid[1, :]), fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1]) if lyrics else None]
        return fig, header, rows

    def save_figure(self, path: str | os.PathLike, label: int, num_lyrics: int = 10, *,
                    label_names: dict[int, str] | None = None, num_audio: int = 10, dpi: int = 100) -> Path:
        """Write :meth:`plot`'s figure as a PNG, atomically."""
        fig, _ = self.plot(label, label_names=label_names, num_audio=num_audio, num_lyrics=num_lyrics)
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), mode=None)


def _json_float(v: float) -> float | None:
    """JSON has no NaN: a missing standard error is null."""
    return v if math.isfinite(v) else None


def _fmt(w: float) -> str:
    """A weight with three significant digits: ``+0.133``, ``-1.2e-05`` (never ``+0.0000``)."""
    return f"{w:+.3g}"


@functools.lru_cache(maxsize=None)
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """The installed families of ``FONT_FAMILIES`` and the code points they cover together."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    families: list[str] = []
    covered: set[int] = set()
    paths: set[str] = set()
    for family in FONT_FAMILIES:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        except ValueError:
            continue
        if path in paths:
            continue
        paths.add(path)
        families.append(family)
        covered.update(FT2Font(path).get_charmap())
    return tuple(families), frozenset(covered)


def _clean(text: str) -> str:
    """``text`` as the fonts can draw it: characters none of them has become "\ufffd" (one
    per run; invisible joiners and variation selectors are dropped), and ``$`` is escaped so
    matplotlib does not read mathtext."""
    _, covered = _fonts()
    placeholder = "\ufffd" if 0xFFFD in covered else "?"
    out: list[str] = []
    for ch in str(text):
        if ord(ch) in covered or ch in "\n\t ":
            out.append(ch)
        elif unicodedata.category(ch) in ("Mn", "Me", "Cf", "Sk"):
            continue
        elif not out or out[-1] != placeholder:
            out.append(placeholder)
    return "".join(out).replace("$", r"\$")


def _wrap(text: str, width: int = 42, lines: int = 2) -> str:
    """A lyric unit as at most ``lines`` lines of ``width`` characters (the rest as "…")."""
    parts = textwrap.wrap(" ".join(text.split()), width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1].rstrip() + "\u2026"
    return "\n".join(parts)


class _Drawing:
    """One label's figure: the numbers every panel shares (colour scale, selection, intervals)."""

    def __init__(self, exp: Explanation, label: int, label_names: dict[int, str] | None) -> None:
        self.exp = exp
        self.label = label
        k = exp.labels.index(label)
        self.coef = exp.coef[k].double().tolist()
        se = None if exp.stderr is None else exp.stderr[k].double().tolist()
        self.selected = exp._selected_mask()[k].tolist()
        # Intervals only for kept features with a finite standard error.
        self.half = [Z * s if se is not None and sel and math.isfinite(s) else None
                     for s, sel in zip(se or self.coef, self.selected)]
        self.families = list(_fonts()[0])
        self.who = _clean(exp.label_name(label, label_names))
        # One symmetric scale for every panel; never narrower than the saturation threshold,
        # so tiny weights of a saturated model stay pale instead of filling the colour range.
        floor = SATURATION_RATIO * exp._output_scale()
        self.limit = max([abs(w) for w, sel in zip(self.coef, self.selected) if sel] + [floor])
        reach = [abs(w) + (h or 0.0) for w, h, sel in zip(self.coef, self.half, self.selected) if sel]
        self.xlimit = 1.3 * max(reach + [self.limit])
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        self.cmap = colormaps["RdBu_r"]
        self.norm = Normalize(-self.limit, self.limit)

    def text(self, **extra: Any) -> dict[str, Any]:
        return dict(fontfamily=self.families, **extra)

    def draw(self, fig: Any, header: Any, axes: list[Any], num_audio: int, num_lyrics: int) -> None:
        heat, audio_bars, lyric_bars = axes
        audio = [i for i, t in enumerate(self.exp.feature_types) if t == "audio"]
        lyrics = [i for i, t in enumerate(self.exp.feature_types) if t == "lyrics"]
        handles = self.legend_handles()
        if header is not None:
            self.header(header, handles)
            prefix = []
        else:  # the caller's axes: the header goes over the heatmap, the legend on the lyric bars
            prefix = [self.title(), self.stats(), self.stability()] + self.exp.notes(self.label)
            if handles:
                lyric_bars.legend(handles=handles, fontsize=8, loc="best")
        if heat is not None:
            self.heatmap(fig, heat, [line for line in prefix if line])
        if audio_bars is not None:
            self.bars(audio_bars, audio, num_audio, "audio components", self.audio_label)
        if lyric_bars is not None:
            unit = self.exp.metadata.get("lyrics_unit") or "unit"
            self.bars(lyric_bars, lyrics, num_lyrics, f"lyric {unit}s", lambda i: _wrap(_clean(self.exp.feature_names[i])))

    # -- pieces -------------------------------------------------------------------------------

    def title(self) -> str:
        info = self.exp.metadata.get("song_info") or {}
        song = info.get("id") or (Path(str(info["audio"])).name if info.get("audio") else None)
        return f"Explanation of {self.who}" + (f" for {_clean(song)}" if song else "")

    def stats(self) -> str:
        exp, label = self.exp, self.label
        n = exp.n_samples if exp.n_samples is not None else exp.metadata.get("n_samples")
        parts = [f"model output {float(exp.prediction[label]):.5g}", f"surrogate at the song {exp.local_pred[label]:.5g}",
                 f"weighted R\u00b2 {exp.score[label]:.2g}"]
        if n is not None:
            parts.append(f"{n} samples")
        return "  \u00b7  ".join(parts)

    def stability(self) -> str:
        """The stable top-k flag in words ("" without standard errors)."""
        stable = self.exp.stable_top_k
        if stable is None:
            return ""
        k = self.exp.top_k
        if stable[self.label]:
            return f"top-{k} stable: yes (the top {k} are separated from the rest by their 95% intervals)"
        return f"top-{k} stable: no (another run may put other features in the top {k})"

    def header(self, axes: tuple[Any, Any], handles: list[Any]) -> None:
        ax, side = axes
        ax.axis("off")
        side.axis("off")
        lines = [(self.title(), dict(fontsize=14, fontweight="bold"), "black"), (self.stats(), dict(fontsize=10), "black")]
        if self.stability():
            lines.append((self.stability(), dict(fontsize=10), "black"))
        lines += [("\u26a0 " + note, dict(fontsize=10, fontweight="bold"), "#b00000") for note in self.exp.notes(self.label)]
        offset = 0.0
        for text, style, colour in lines:
            ax.annotate(text, (0, 1), xycoords="axes fraction", xytext=(0, -offset), textcoords="offset points",
                        va="top", color=colour, **self.text(**style))
            offset += 1.6 * style["fontsize"]
        if handles:
            side.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)

    def legend_handles(self) -> list[Any]:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = []
        if not all(self.selected):
            handles.append(Patch(facecolor="0.9", edgecolor="0.6", hatch="///",
                                 label="not selected by the feature selection (no weight estimated)"))
        if any(h is not None for h in self.half):
            handles.append(Line2D([], [], color="0.15", marker="|", markersize=8, lw=1,
                                  label="95% interval (\u00b11.96 standard errors)"))
            handles.append(Line2D([], [], color="0.15", marker="o", markerfacecolor="none", lw=0, markersize=5,
                                  label="interval includes 0"))
        return handles

    def colour(self, w: float) -> Any:
        return self.cmap(self.norm(w))

    def heatmap(self, fig: Any, ax: Any, prefix: list[str]) -> None:
        import numpy as np
        from matplotlib.cm import ScalarMappable
        from matplotlib.patches import Rectangle

        exp = self.exp
        audio = [i for i, t in enumerate(exp.feature_types) if t == "audio"]
        layout = exp._audio_layout()
        if not audio or layout is None:
            ax.axis("off")
            why = "no audio features in this explanation" if not audio else "the stems x segments layout is unknown"
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.4", **self.text())
            if prefix:
                ax.set_title("\n".join(prefix), loc="left", **self.text(fontsize=10))
            return
        stems, times = layout["stem_names"], layout["segment_times"]
        S, G = len(stems), len(times)
        edges: list[float] = []
        columns: list[int | None] = []  # segment index, or None for a gap between segments
        for g, (a, b) in enumerate(times):
            if edges and a > edges[-1]:
                columns.append(None)
                edges.append(a)
            elif not edges:
                edges.append(a)
            columns.append(g)
            edges.append(b)
        values = np.full((S, len(columns)), np.nan)
        for c, g in enumerate(columns):
            if g is None:
                continue
            for s in range(S):
                i = audio[g * S + s]
                if self.selected[i]:
                    values[s, c] = self.coef[i]
        ax.pcolormesh(np.asarray(edges), np.arange(S + 1), np.ma.masked_invalid(values), cmap=self.cmap, norm=self.norm)
        annotate = G <= 16
        for g, (a, b) in enumerate(times):
            for s in range(S):
                i = audio[g * S + s]
                if not self.selected[i]:
                    ax.add_patch(Rectangle((a, s), b - a, 1, facecolor="0.9", edgecolor="0.6", hatch="///", lw=0))
                    continue
                w = self.coef[i]
                if annotate:
                    dark = abs(self.norm(w) - 0.5) > 0.3
                    ax.text((a + b) / 2, s + 0.5, _fmt(w), ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
                if self.half[i] is not None and abs(w) <= self.half[i]:
                    ax.plot(b - 0.08 * (b - a), s + 0.82, "o", mfc="none", mec="0.15", ms=4)
        ax.set_xlim(0, max(layout["duration_s"], edges[-1]))
        ax.set_ylim(S, 0)
        ax.set_yticks(np.arange(S) + 0.5, [_clean(s) for s in stems], **self.text())
        ax.set_xlabel("time (s)", **self.text())
        ax.set_title("\n".join(prefix + [f"audio: stems x time ({G} segments)"]), loc="left", **self.text(fontsize=10))
        if G <= 40:
            top = ax.secondary_xaxis("top")
            top.set_xticks([(a + b) / 2 for a, b in times], [f"T{g}" for g in range(G)], fontsize=7)
            top.tick_params(length=0)
        fig.colorbar(ScalarMappable(norm=self.norm, cmap=self.cmap), ax=ax, pad=0.01, fraction=0.04).set_label(
            f"surrogate weight\n(change in the output for {self.who}\nwhen the component is on)", **self.text(fontsize=8))

    def audio_label(self, i: int) -> str:
        where = self.exp._feature_time(i)
        if where is None:
            return _clean(self.exp.feature_names[i])
        stem, g, a, b = where
        digits = 1 if b - a >= 0.5 else (2 if b - a >= 0.05 else 3)
        return f"{_clean(stem)} T{g}  {a:.{digits}f}\u2013{b:.{digits}f} s"

    def bars(self, ax: Any, indices: list[int], num: int, what: str, name: Any) -> None:
        kept = [i for i in indices if self.selected[i]]
        dropped = len(indices) - len(kept)
        nonzero = [i for i in kept if self.coef[i] != 0]
        top = sorted(nonzero, key=lambda i: -abs(self.coef[i]))[:num][::-1]
        if not indices:
            ax.axis("off")
            ax.text(0.5, 0.5, f"no {what} in this explanation", transform=ax.transAxes, ha="center",
                    va="center", color="0.4", **self.text())
            return
        counts = f"{len(top)} of {len(nonzero)} with a non-zero weight"
        if dropped:
            counts += f", {dropped} of {len(indices)} not selected"
        ax.set_title(f"top {what}\n{counts}", loc="left", **self.text(fontsize=10))
        ax.set_xlim(-self.xlimit, self.xlimit)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel(f"surrogate weight for {self.who}", **self.text(fontsize=9))
        if not top:
            ax.set_yticks([])
            ax.text(0.5, 0.5, f"no {what[:-1]} has a non-zero weight", transform=ax.transAxes, ha="center",
                    va="center", color="0.4", **self.text())
            return
        values = [self.coef[i] for i in top]
        halves = [self.half[i] for i in top]
        ax.barh(range(len(top)), values, color=[self.colour(v) for v in values], edgecolor="0.4", lw=0.5,
                xerr=[h or 0.0 for h in halves] if any(h is not None for h in halves) else None,
                error_kw=dict(ecolor="0.15", elinewidth=1, capsize=2))
        for y, (v, h) in enumerate(zip(values, halves)):
            end = v + (h or 0.0) * (1 if v >= 0 else -1)
            ax.text(end + 0.02 * self.xlimit * (1 if v >= 0 else -1), y, _fmt(v), va="center",
                    ha="left" if v >= 0 else "right", fontsize=7)
        ax.set_yticks(range(len(top)), [name(i) for i in top], **self.text(fontsize=8))
        ax.set_ylim(-0.6, max(len(top), 4) - 0.4)
