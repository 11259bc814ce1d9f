"""The audio interpretable space: source-separated stems x temporal segments.

Shape glossary: n perturbation samples, S stems, G segments, C channels, T audio samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_int, finite_range
from ..functional.audio import pcm_to_float
from ..functional.segments import (
    check_boundaries,
    compose_segments,
    even_boundaries,
    feature_stem_segment,
    segment_feature_names,
)

__all__ = ["StemFactorization", "DEFAULT_STEMS"]

DEFAULT_STEMS = ("vocals", "drums", "bass", "other")


class StemFactorization:
    """S stems cut into G temporal segments: S*G binary features, named like ``vocals_T3``.

    Features are ordered segment-major (``index = g * S + s``), as the bach-or-bot
    MusicLIME implementation orders them. A perturbed waveform is the sum of the
    switched-on components (all off: silence, or the residual when ``keep_residual``).
    Composition is :func:`torchlime.functional.compose_segments`: one ``(n, S) @ (S, C * T_g)``
    product per segment, chunked by the caller, on the stems' device.

    Args:
        stems: ``(S, C, T)`` or ``(S, T)`` (mono), floating point or integer PCM (uint8,
            int8, int16, int32: scaled to [-1, 1] as soundfile reads it, see
            :func:`torchlime.functional.pcm_to_float`); at least 2 samples.
        sample_rate: rate of the stems (the classifier's rate).
        stem_names: S names (default vocals, drums, bass, other for 4 stems).
        num_segments: G even segments covering the whole signal (ignored with ``boundaries``).
        boundaries: G ``(start, end)`` sample ranges instead of even segments (ranges may
            leave gaps, which are then silent, or residual-only, in every sample).
        mixture: ``(C, T)`` the song the stems were separated from (for the residual).
        keep_residual: add ``mixture - sum(stems)`` to every sample, so the all-ones sample
            is exactly the mixture.

    Raises:
        ValueError: bad shapes, NaN/inf, silent stems, audio shorter than G (or 2 samples),
            bad boundaries (naming the segment and the factorization).
        TypeError: stems that are neither floating point nor integer PCM.

    Example:
        >>> stems = torch.randn(4, 1, 1000)
        >>> f = StemFactorization(stems, sample_rate=8000, num_segments=10)
        >>> f.num_features, f.feature_names[:2]
        (40, ['vocals_T0', 'drums_T0'])
        >>> f.compose(torch.ones(3, 40)).shape
        torch.Size([3, 1, 1000])
    """

    def __init__(
        self,
        stems: Tensor,
        *,
        sample_rate: int,
        stem_names: Sequence[str] | None = None,
        num_segments: int = 10,
        boundaries: Sequence[tuple[int, int]] | None = None,
        mixture: Tensor | None = None,
        keep_residual: bool = False,
    ) -> None:
        if not isinstance(stems, Tensor):
            raise TypeError(f"expected stems to be a torch.Tensor, got {type(stems).__name__}")
        if stems.dim() == 2:
            stems = stems.unsqueeze(1)
        if stems.dim() != 3:
            raise ValueError(f"expected stems of shape (S, C, T) or (S, T), got shape {tuple(stems.shape)}")
        try:
            stems = pcm_to_float(stems)
        except TypeError as err:
            raise TypeError(f"StemFactorization stems: {err}") from None
        S, C, T = stems.shape
        if T < 2:
            raise ValueError(f"expected audio of at least 2 samples, got stems of shape {tuple(stems.shape)}")
        span = finite_range(stems)
        if span is None:
            raise ValueError("expected finite stems, got NaN or inf in the audio")
        if span == (0.0, 0.0):
            raise ValueError("expected audio with sound in it, got silent (all-zero) stems")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"expected a positive integer sample_rate, got {sample_rate!r}")
        names = list(stem_names) if stem_names is not None else (list(DEFAULT_STEMS) if S == 4 else [f"stem{i}" for i in range(S)])
        if len(names) != S:
            raise ValueError(f"expected {S} stem names, got {len(names)}: {names}")
        where = f"StemFactorization of stems {names} ({C} channel(s), {T} samples at {sample_rate} Hz)"
        try:
            boundaries = check_boundaries(even_boundaries(T, num_segments) if boundaries is None else boundaries, T)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if mixture is not None:
            try:
                mixture = pcm_to_float(mixture)
            except TypeError as err:
                raise TypeError(f"StemFactorization mixture: {err}") from None
        residual = None
        if keep_residual:
            if mixture is None:
                raise ValueError("expected the mixture when keep_residual=True, got None")
            mixture = mixture.to(device=stems.device, dtype=stems.dtype)
            if mixture.dim() == 1:
                mixture = mixture.unsqueeze(0)
            if mixture.shape != (C, T):
                raise ValueError(f"expected mixture of shape {(C, T)}, got {tuple(mixture.shape)}")
            residual = mixture - stems.sum(0)
        self.stems = stems
        self.sample_rate = sample_rate
        self.stem_names = names
        self.boundaries = boundaries
        self.residual = residual
        self.mixture = mixture

    @classmethod
    def from_separator(
        cls,
        separator: Any,
        mixture: Tensor,
        sample_rate: int,
        *,
        target_sample_rate: int | None = None,
        **kwargs: Any,
    ) -> StemFactorization:
        """Separate ``mixture`` (``(C, T)`` or ``(T,)``) and factorize the stems.

        Args:
            separator: e.g. :class:`torchlime.music.OpenUnmixSeparator`.
            mixture: the song at ``sample_rate`` (integer PCM is scaled with
                :func:`torchlime.functional.pcm_to_float`).
            sample_rate: its rate.
            target_sample_rate: the classifier's rate (default: ``sample_rate``); stems
                and mixture are resampled once to it.
            **kwargs: passed to the constructor (num_segments, boundaries, keep_residual).
        """
        out_rate = target_sample_rate or sample_rate
        mixture = pcm_to_float(mixture)
        stems = separator.separate(mixture, sample_rate, output_sample_rate=out_rate)
        mono = mixture.dim() == 1 or mixture.shape[0] == 1
        if out_rate != sample_rate:
            import torchaudio.functional as AF

            mixture = AF.resample(mixture.to(stems.device, torch.float32), sample_rate, out_rate)
            length = stems.shape[-1]
            mixture = torch.nn.functional.pad(mixture, (0, max(0, length - mixture.shape[-1])))[..., :length]
        if mono:
            mixture = mixture.reshape(1, -1)
        return cls(stems, sample_rate=out_rate, stem_names=getattr(separator, "targets", None), mixture=mixture, **kwargs)

    # -- the interpretable space ------------------------------------------------------------

    @property
    def num_stems(self) -> int:
        return self.stems.shape[0]

    @property
    def num_segments(self) -> int:
        return len(self.boundaries)

    @property
    def num_features(self) -> int:
        """S * G."""
        return self.num_stems * self.num_segments

    @property
    def feature_names(self) -> list[str]:
        """``<stem>_T<g>``, segment-major (:func:`torchlime.functional.segment_feature_names`)."""
        return segment_feature_names(self.stem_names, self.num_segments)

    def feature_stem_segment(self, index: int) -> tuple[str, int]:
        """The stem name and segment index of feature ``index`` (``index = g * S + s``).

        Raises:
            ValueError: an index outside ``[0, S * G)``.

        Example:
            >>> f = StemFactorization(torch.randn(4, 1, 100), sample_rate=8000, num_segments=2)
            >>> f.feature_stem_segment(5)
            ('drums', 1)
        """
        index = check_int(index, "a feature index", 0, self.num_features - 1)
        s, g = feature_stem_segment(index, self.num_stems)
        return self.stem_names[s], g

    @property
    def segment_times(self) -> list[tuple[float, float]]:
        """``(start, end)`` of every segment in seconds (``boundaries / sample_rate``).

        Example:
            >>> StemFactorization(torch.randn(4, 1, 8000), sample_rate=8000, num_segments=4).segment_times
            [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
        """
        return [(a / self.sample_rate, b / self.sample_rate) for a, b in self.boundaries]

    @property
    def device(self) -> torch.device:
        return self.stems.device

    def to(self, device: torch.device | str) -> StemFactorization:
        """Move the stems (and residual) to ``device``; returns self."""
        self.stems = self.stems.to(device)
        if self.residual is not None:
            self.residual = self.residual.to(device)
        if self.mixture is not None:
            self.mixture = self.mixture.to(device)
        return self

    def compose(self, masks: Tensor, out: Tensor | None = None) -> Tensor:
        """Waveforms ``(n, C, T)`` for masks ``(n, S*G)``: :func:`torchlime.functional.compose_segments`.

        Args:
            masks: ``(n, S*G)`` 0/1 masks, segment-major (feature ``g*S + s``); leading dims
                ``(..., n, S*G)`` give ``(..., n, C, T)``.
            out: an optional contiguous ``(n, C, T)`` tensor of the stems' dtype and device
                to write into (a reused buffer saves the page faults of a fresh one on CPU).

        Raises:
            ValueError: masks of the wrong shape, an ``out`` that does not fit (naming this
                factorization).
        """
        try:
            return compose_segments(self.stems, masks, self.boundaries, self.residual, out=out)
        except ValueError as err:
            raise ValueError(f"{self!r}: {err}") from None

    def component_audio(self, features: Sequence[int | str]) -> Tensor:
        """The sum of the given components (indices or names) as ``(C, T)``, to listen to."""
        names = self.feature_names
        z = torch.zeros(1, self.num_features, device=self.device)
        for f in features:
            if isinstance(f, str):
                if f not in names:
                    raise ValueError(f"expected feature names of {self!r}, got {f!r}")
                idx = names.index(f)
            else:
                idx = check_int(f, "a feature index", 0, self.num_features - 1)
            z[0, idx] = 1
        return compose_segments(self.stems, z, self.boundaries)[0]

    def __repr__(self) -> str:
        S, C, T = self.stems.shape
        return (
            f"StemFactorization(stems={self.stem_names}, num_segments={self.num_segments}, channels={C}, "
            f"samples={T}, sample_rate={self.sample_rate})"
        )
