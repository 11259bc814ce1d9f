"""The audio interpretable space: source-separated stems x temporal segments.

Shape glossary: n perturbation samples, S stems, G segments, C channels, T audio samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..functional.step import even_boundaries

__all__ = ["StemFactorization", "DEFAULT_STEMS"]

DEFAULT_STEMS = ("vocals", "drums", "bass", "other")


class StemFactorization:
    """S stems cut into G temporal segments: S*G binary features, named like ``vocals_T3``.

    Features are ordered segment-major (``index = g * S + s``), as the bach-or-bot
    MusicLIME implementation orders them. A perturbed waveform is the sum of the
    switched-on components (all off: silence, or the residual when ``keep_residual``).
    Composition is one ``(n, S) @ (S, C * T_g)`` product per segment, chunked by the
    caller, on the stems' device.

    Args:
        stems: ``(S, C, T)`` or ``(S, T)`` (mono).
        sample_rate: rate of the stems (the classifier's rate).
        stem_names: S names (default vocals, drums, bass, other for 4 stems).
        num_segments: G even segments covering the whole signal (ignored with ``boundaries``).
        boundaries: G ``(start, end)`` sample ranges instead of even segments (ranges may
            leave gaps, which are then silent, or residual-only, in every sample).
        mixture: ``(C, T)`` the song the stems were separated from (for the residual).
        keep_residual: add ``mixture - sum(stems)`` to every sample, so the all-ones sample
            is exactly the mixture.

    Raises:
        ValueError: bad shapes, NaN/inf, silent stems, audio shorter than G, bad boundaries.

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
        if not stems.dtype.is_floating_point:
            stems = stems.float()
        S, C, T = stems.shape
        if not torch.isfinite(stems).all():
            raise ValueError("expected finite stems, got NaN or inf in the audio")
        if not (stems != 0).any():
            raise ValueError("expected audio with sound in it, got silent (all-zero) stems")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"expected a positive integer sample_rate, got {sample_rate!r}")
        names = list(stem_names) if stem_names is not None else (list(DEFAULT_STEMS) if S == 4 else [f"stem{i}" for i in range(S)])
        if len(names) != S:
            raise ValueError(f"expected {S} stem names, got {len(names)}: {names}")
        if boundaries is None:
            boundaries = even_boundaries(T, num_segments)
        boundaries = [(int(a), int(b)) for a, b in boundaries]
        if not boundaries:
            raise ValueError("expected at least one segment, got no boundaries")
        for g, (a, b) in enumerate(boundaries):
            if not 0 <= a < b <= T:
                raise ValueError(f"expected segment {g} as 0 <= start < end <= {T}, got ({a}, {b})")
            if g and a < boundaries[g - 1][1]:
                raise ValueError(f"expected non-overlapping, increasing segments, got {boundaries[g - 1]} then {(a, b)}")
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
            mixture: the song at ``sample_rate``.
            sample_rate: its rate.
            target_sample_rate: the classifier's rate (default: ``sample_rate``); stems
                and mixture are resampled once to it.
            **kwargs: passed to the constructor (num_segments, boundaries, keep_residual).
        """
        out_rate = target_sample_rate or sample_rate
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
        return [f"{s}_T{g}" for g in range(self.num_segments) for s in self.stem_names]

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
        """Waveforms ``(n, C, T)`` for masks ``(n, S*G)`` (one product per run of segments).

        Args:
            masks: ``(n, S*G)`` 0/1 masks, segment-major (feature ``g*S + s``).
            out: an optional contiguous ``(n, C, T)`` tensor of the stems' dtype and device
                to write into (a reused buffer saves the page faults of a fresh one on CPU).

        Raises:
            ValueError: masks of the wrong shape, an ``out`` that does not fit.
        """
        if masks.dim() != 2 or masks.shape[1] != self.num_features:
            raise ValueError(
                f"expected audio masks of shape (n, {self.num_features}), got shape {tuple(masks.shape)}"
            )
        S, C, T = self.stems.shape
        n = masks.shape[0]
        z = masks.to(device=self.device, dtype=self.stems.dtype).reshape(n, -1, S)  # (n, G, S)
        runs, tiles = _runs(self.boundaries, T)
        if out is None:
            out = self.stems.new_empty(n, C, T)
        elif (tuple(out.shape) != (n, C, T) or out.dtype != self.stems.dtype or out.device != self.stems.device
                or not out.is_contiguous()):
            raise ValueError(
                f"expected out as a contiguous {(n, C, T)} {self.stems.dtype} tensor on {self.stems.device}, "
                f"got {tuple(out.shape)} {out.dtype} on {out.device}"
            )
        if self.residual is not None:
            out.copy_(self.residual.expand(n, C, T))
        elif not tiles:  # samples outside every segment stay silent
            out.zero_()
        # One batched product per run of equal-length segments and channel, written straight
        # into a strided view of the output: (k, n, S) @ (k, S, L) -> (k, n, L).
        for g0, g1, a, L in runs:
            k = g1 - g0
            zk = z[:, g0:g1].transpose(0, 1)
            for c in range(C):
                stems = self.stems[:, c, a : a + k * L].reshape(S, k, L).transpose(0, 1)
                dst = out[:, c, a : a + k * L].view(n, k, L).transpose(0, 1)
                if self.residual is not None:
                    dst.baddbmm_(zk, stems)
                else:
                    torch.bmm(zk, stems, out=dst)
        return out

    def component_audio(self, features: Sequence[int | str]) -> Tensor:
        """The sum of the given components (indices or names) as ``(C, T)``, to listen to."""
        names = self.feature_names
        z = torch.zeros(1, self.num_features, device=self.device)
        for f in features:
            idx = names.index(f) if isinstance(f, str) else int(f)
            if not 0 <= idx < self.num_features:
                raise ValueError(f"expected a feature index in [0, {self.num_features}), got {idx}")
            z[0, idx] = 1
        stems_only = StemFactorization.compose(self._without_residual(), z)
        return stems_only[0]

    def _without_residual(self) -> StemFactorization:
        clone = object.__new__(StemFactorization)
        clone.__dict__.update(self.__dict__)
        clone.residual = None
        return clone


def _runs(boundaries: Sequence[tuple[int, int]], T: int) -> tuple[list[tuple[int, int, int, int]], bool]:
    """Runs ``(g0, g1, start, length)`` of adjacent segments of one length, and whether the
    segments tile ``[0, T)`` (cover every sample)."""
    runs: list[tuple[int, int, int, int]] = []
    for g, (a, b) in enumerate(boundaries):
        if runs and runs[-1][3] == b - a and runs[-1][2] + (g - runs[-1][0]) * (b - a) == a:
            runs[-1] = (runs[-1][0], g + 1, runs[-1][2], b - a)
        else:
            runs.append((g, g + 1, a, b - a))
    tiles = boundaries[0][0] == 0 and boundaries[-1][1] == T and all(
        boundaries[g][0] == boundaries[g - 1][1] for g in range(1, len(boundaries))
    )
    return runs, tiles
