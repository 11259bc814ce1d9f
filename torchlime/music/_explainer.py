"""``MusicLime``: MusicLIME's multimodal explanation on torchlime's batched engine.

Shape glossary: B songs, n perturbation samples, c samples per chunk, F = F_audio +
F_lyrics interpretable features, K targets, C channels, T audio samples, Q tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..attr._batched import batched
from ..attr._lime_base import LimeBase
from ..functional.kernels import cosine_distance, lime_kernel
from ..functional.sampling import bernoulli_masks, check_masks
from ..models import LimeSurrogate
from ._explanation import Explanation
from ._stems import StemFactorization

__all__ = ["MusicLime", "MODALITIES"]

MODALITIES = ("both", "audio", "lyrics")


class _MaskKernelLimeBase(LimeBase):
    """LimeBase whose weights are lime's kernel on cosine distances between masks and row 0."""

    def __init__(self, *args: Any, kernel_width: float, distance_scale: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_width = kernel_width
        self.distance_scale = distance_scale

    def _weights_from_masks(self, masks: Tensor) -> Tensor:
        distances = cosine_distance(masks, masks[..., :1, :]) * self.distance_scale
        return lime_kernel(distances, self.kernel_width)


class MusicLime:
    """Explain a multimodal (audio + lyrics) music classifier, MusicLIME style.

    Audio features are stems x segments (:class:`StemFactorization`), lyric features are
    lines or words (:class:`LyricsFactorization`); masks are Bernoulli(0.5) with row 0
    all ones, columns ``[audio | lyrics]``; weights are lime's kernel
    ``sqrt(exp(-d^2 / w^2))`` on the cosine distance between each mask and row 0, times
    ``distance_scale`` (MusicLIME: width 25 and scale 1, so the weights are all close
    to 1; lime's text explainer uses scale 100); the surrogate is lime's: feature
    selection then Ridge(alpha=1).

    The model is either ``forward_func(audio (n, C, T), input_ids (n, Q),
    attention_mask (n, Q)) -> (n, classes)`` (batched on the device: composition and
    token removal happen there) or MusicLIME's ``predict_fn(texts: list[str],
    waveforms: list[np.ndarray]) -> np.ndarray (n, classes)`` (the legacy adapter: each
    chunk is handed over as Python lists).

    Args:
        forward_func: the batched model contract above.
        predict_fn: MusicLIME's contract (give exactly one of the two).
        apply_softmax: turn the model's logits into probabilities before explaining.
        kernel_width: w of lime's kernel (MusicLIME: 25).
        distance_scale: factor on the cosine distance (MusicLIME: 1; lime's text: 100).
        num_classes: if given, the model's output must have this many columns.

    Example:
        >>> import torch
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> stems = torch.randn(4, 1, 800)
        >>> audio = StemFactorization(stems, sample_rate=8000, num_segments=4)
        >>> model = lambda a: torch.stack([a[:, 0, :200].pow(2).mean(-1), a.pow(2).mean((1, 2))], 1)
        >>> exp = MusicLime(model).explain(audio, targets=[0], n_samples=200, modality="audio",
        ...                                 generator=torch.Generator().manual_seed(0))
        >>> sorted(f["feature"] for f in exp.get_explanation(0, 4))
        ['bass_T0', 'drums_T0', 'other_T0', 'vocals_T0']
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor] | None = None,
        *,
        predict_fn: Callable[[list[str], list[np.ndarray]], Any] | None = None,
        apply_softmax: bool = False,
        kernel_width: float = 25.0,
        distance_scale: float = 1.0,
        num_classes: int | None = None,
    ) -> None:
        if (forward_func is None) == (predict_fn is None):
            raise ValueError("expected exactly one of forward_func and predict_fn, got "
                             + ("both" if forward_func is not None else "neither"))
        if not kernel_width > 0:
            raise ValueError(f"expected kernel_width > 0, got {kernel_width}")
        if not distance_scale > 0:
            raise ValueError(f"expected distance_scale > 0, got {distance_scale}")
        self.forward_func = forward_func
        self.predict_fn = predict_fn
        self.apply_softmax = apply_softmax
        self.kernel_width = kernel_width
        self.distance_scale = distance_scale
        self.num_classes = num_classes

    def explain(
        self,
        audio: StemFactorization | Sequence[StemFactorization] | None,
        lyrics: Any = None,
        targets: Sequence[int] | int = (1,),
        n_samples: int = 1000,
        *,
        modality: str = "both",
        num_features: int = 20,
        feature_selection: str = "auto",
        masks: Tensor | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 100,
        show_progress: bool = False,
        song_info: dict | Sequence[dict] | None = None,
    ) -> Explanation | list[Explanation]:
        """Explain one song, or several (lists of factorizations, one explanation each).

        Args:
            audio: a :class:`StemFactorization` (or a list, one per song; None with
                ``modality="lyrics"`` and an audio-free model is not supported).
            lyrics: a :class:`LyricsFactorization` (or a list), or None for audio-only.
            targets: the class indices to explain (for every song).
            n_samples: perturbations per song (>= 2).
            modality: "both", "audio" (lyrics fixed on) or "lyrics" (audio fixed on).
            num_features: features kept by the feature selection.
            feature_selection: lime's modes ("auto": forward selection up to 6 features,
                else highest weights).
            masks: ``(n, F)`` or ``(B, n, F)`` explicit masks (row 0 should be all ones)
                to compare with other implementations sample for sample.
            generator: a ``torch.Generator`` on the audio's device, for reproducible masks.
            batch_size: perturbations per forward call.
            show_progress: a tqdm bar over the forward calls.
            song_info: metadata stored in each explanation's JSON.

        Returns:
            An :class:`Explanation` (a list of them for a list of songs).

        Raises:
            ValueError: unknown modality, missing factorization for it, bad targets, a
                model that returns the wrong number of classes, bad masks.
        """
        if modality not in MODALITIES:
            raise ValueError(f"expected modality in {list(MODALITIES)}, got {modality!r}")
        many = isinstance(audio, (list, tuple)) or isinstance(lyrics, (list, tuple))
        audios = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        lyricses = list(lyrics) if isinstance(lyrics, (list, tuple)) else [lyrics] * len(audios)
        if len(audios) == 1 and len(lyricses) > 1:
            audios = audios * len(lyricses)
        if len(audios) != len(lyricses):
            raise ValueError(f"expected as many lyrics as audio factorizations, got {len(lyricses)} and {len(audios)}")
        infos = list(song_info) if isinstance(song_info, (list, tuple)) else [song_info] * len(audios)
        targets = [int(targets)] if isinstance(targets, (int, np.integer)) else [int(t) for t in targets]
        if not targets:
            raise ValueError("expected at least one target, got none")
        out = []
        for b, (a, l, info) in enumerate(zip(audios, lyricses, infos)):
            song_masks = masks
            if masks is not None and masks.dim() == 3:
                song_masks = masks[b]
            out.append(
                self._explain_one(a, l, targets, n_samples, modality, num_features, feature_selection,
                                  song_masks, generator, batch_size, show_progress, info)
            )
        return out if many else out[0]

    # -- one song -----------------------------------------------------------------------------

    def _explain_one(self, audio, lyrics, targets, n_samples, modality, num_features, feature_selection,
                     masks, generator, batch_size, show_progress, song_info) -> Explanation:
        if audio is None:
            raise ValueError("expected an audio factorization (StemFactorization), got None")
        if modality in ("both", "lyrics") and lyrics is None:
            raise ValueError(f"expected a lyrics factorization for modality={modality!r}, got None")
        use_audio = modality in ("both", "audio")
        use_lyrics = modality in ("both", "lyrics") and lyrics is not None
        Fa = audio.num_features if use_audio else 0
        Fl = lyrics.num_features if use_lyrics else 0
        F = Fa + Fl
        device = audio.device
        if masks is None:
            Z = bernoulli_masks(n_samples, F, first_row_ones=True, device=device, generator=generator)
        else:
            Z = check_masks(masks, F)[0].to(device=device, dtype=torch.float32)
            n_samples = Z.shape[0]
        ones_audio = torch.ones(1, audio.num_features, device=device)
        ones_lyrics = torch.ones(1, lyrics.num_features, device=device) if lyrics is not None else None

        def split(z: Tensor) -> tuple[Tensor, Tensor | None]:
            c = z.shape[0]
            za = z[:, :Fa] if use_audio else ones_audio.expand(c, -1)
            if lyrics is None:
                return za, None
            zl = z[:, Fa:] if use_lyrics else ones_lyrics.expand(c, -1)
            return za, zl

        if self.forward_func is not None:
            forward = self._forward_batched

            @batched
            def transform(z: Tensor, original: Any, **kw: Any) -> tuple:
                za, zl = split(z)
                waves = audio.compose(za)
                if zl is None:
                    return (waves,)
                ids, attention = lyrics.compose(zl)
                return (waves, ids, attention)
        else:
            forward = self._forward_legacy

            @batched
            def transform(z: Tensor, original: Any, **kw: Any) -> tuple:
                za, zl = split(z)
                waves = audio.compose(za)
                texts = lyrics.texts(zl) if zl is not None else [""] * z.shape[0]
                return (waves, texts)

        @batched
        def unused_similarity(*args: Any, **kw: Any) -> Tensor:  # weights come from the masks
            raise AssertionError("MusicLime computes weights from the masks")

        surrogate = LimeSurrogate(num_features=num_features, feature_selection=feature_selection)
        engine = _MaskKernelLimeBase(
            forward, surrogate, unused_similarity, lambda *a, **k: None, True, transform, None,
            kernel_width=self.kernel_width, distance_scale=self.distance_scale,
        )
        original = transform(torch.ones(1, F, device=device), None)
        with torch.no_grad():
            prediction = forward(*original)[0]
        classes = prediction.shape[-1]
        for t in targets:
            if not -classes <= t < classes:
                raise ValueError(f"target {t} is out of range for a model with {classes} classes")
        fit = engine.attribute(
            original, target=[list(targets)], n_samples=n_samples, perturbations_per_eval=batch_size,
            show_progress=show_progress, masks=Z, return_fit=True,
        )
        selection = surrogate.last_selection
        names = (audio.feature_names if use_audio else []) + (lyrics.feature_names if use_lyrics else [])
        types = ["audio"] * Fa + ["lyrics"] * Fl
        return Explanation.from_fit(
            fit, selection, targets, names, types, prediction,
            audio_factorization=audio, lyrics_factorization=lyrics,
            metadata=dict(
                n_samples=n_samples, modality=modality, num_features=num_features,
                feature_selection=feature_selection, kernel="sqrt(exp(-d^2 / w^2))",
                kernel_width=self.kernel_width, distance="cosine between masks and row 0",
                distance_scale=self.distance_scale, batch_size=batch_size,
                seed=generator.initial_seed() if generator is not None else None,
                explicit_masks=masks is not None, num_audio_features=Fa, num_lyrics_features=Fl,
                lyrics_unit=getattr(lyrics, "unit", None) if use_lyrics else None,
                song_info=song_info or {},
            ),
        )

    # -- the model contracts ----------------------------------------------------------------

    def _finish(self, out: Any, device: torch.device, rows: int) -> Tensor:
        out = torch.as_tensor(np.asarray(out) if not isinstance(out, Tensor) else out, device=device)
        if out.dim() != 2 or out.shape[0] != rows:
            raise ValueError(f"expected the model to return (n, classes) = ({rows}, C), got shape {tuple(out.shape)}")
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ValueError(f"expected the model to return {self.num_classes} classes, got {out.shape[1]}")
        if not out.dtype.is_floating_point:
            out = out.float()
        return out.softmax(-1) if self.apply_softmax else out

    def _forward_batched(self, *inputs: Tensor) -> Tensor:
        out = self.forward_func(*inputs)
        return self._finish(out, inputs[0].device, inputs[0].shape[0])

    def _forward_legacy(self, waves: Tensor, texts: list[str]) -> Tensor:
        mono = waves.shape[1] == 1
        arrays = [w[0].cpu().numpy() if mono else w.cpu().numpy() for w in waves]
        return self._finish(self.predict_fn(list(texts), arrays), waves.device, waves.shape[0])
