"""``MusicLime``: MusicLIME's multimodal explanation on torchlime's batched engine.

Shape glossary: B songs, n perturbation samples, c samples per chunk, F = F_audio +
F_lyrics interpretable features, K targets, C channels, T audio samples, Q tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._buffers import chunk_buffer
from ..attr._batched import batched
from ..attr._lime_base import LimeBase
from ..functional.kernels import cosine_distance, lime_kernel
from ..functional.sampling import bernoulli_masks, check_masks
from ..models import LimeSurrogate
from ._explanation import Explanation
from ._stems import StemFactorization

__all__ = ["MusicLime", "MODALITIES"]

MODALITIES = ("both", "audio", "lyrics")


class _Song(NamedTuple):
    """One song to explain: its factorizations, its masks ``(n, F)`` and their split."""

    audio: StemFactorization
    lyrics: Any
    info: dict | None
    Fa: int  # audio features explained (0 with modality="lyrics")
    Fl: int  # lyric features explained (0 with modality="audio" or no lyrics)
    Z: Tensor
    seed: int | None  # initial seed of the generator its masks came from

    @property
    def F(self) -> int:
        return self.Fa + self.Fl

    def compose(self, z: Tensor, legacy: bool, out: Tensor | None = None) -> tuple:
        """Model inputs of masks ``(c, F)``: (waves, ids, attention), (waves,) or (waves, texts).

        ``out``: an optional ``(c, C, T)`` buffer for the waves.
        """
        c = z.shape[0]
        za = z[:, : self.Fa] if self.Fa else torch.ones(c, self.audio.num_features, device=z.device)
        waves = self.audio.compose(za, out=out)
        if self.lyrics is None:
            return (waves, [""] * c) if legacy else (waves,)
        zl = z[:, self.Fa :] if self.Fl else torch.ones(c, self.lyrics.num_features, device=z.device)
        if legacy:
            return (waves, self.lyrics.texts(zl))
        return (waves, *self.lyrics.compose(zl))

    def batch_key(self) -> tuple:
        """Songs with equal keys can share a forward call."""
        tok = getattr(self.lyrics, "tokenizer", None)
        return (tuple(self.audio.stems.shape[1:]), self.audio.stems.dtype, str(self.audio.device),
                self.lyrics is None, id(tok), getattr(tok, "padding_side", "right"))


def _groups(songs: list[_Song], size: int) -> list[list[int]]:
    """Song indices in groups of at most ``size`` sharing a batch key, in song order."""
    groups: list[list[int]] = []
    open_group: dict[tuple, list[int]] = {}
    for b, song in enumerate(songs):
        key = song.batch_key()
        group = open_group.get(key)
        if group is None or len(group) == size:
            group = open_group[key] = []
            groups.append(group)
        group.append(b)
    return groups


def _stack(parts: list[tuple], songs: list[_Song], waves: Tensor) -> tuple:
    """Concatenate the model inputs of several songs (instance-major rows); their waves are
    already in place, in consecutive rows of ``waves``."""
    if len(parts) == 1:
        return parts[0]
    if len(parts[0]) == 2:  # legacy: texts
        return (waves, [t for p in parts for t in p[1]])
    if len(parts[0]) == 1:
        return (waves,)
    Q = max(p[1].shape[1] for p in parts)
    tok = songs[0].lyrics.tokenizer
    left = getattr(tok, "padding_side", "right") == "left"
    ids, attention = [], []
    for p in parts:
        pad = (Q - p[1].shape[1], 0) if left else (0, Q - p[1].shape[1])
        ids.append(torch.nn.functional.pad(p[1], pad, value=int(tok.pad_token_id)))
        attention.append(torch.nn.functional.pad(p[2], pad, value=0))
    return (waves, torch.cat(ids), torch.cat(attention))


class _MaskKernelLimeBase(LimeBase):
    """LimeBase whose weights are lime's kernel on cosine distances between masks and row 0."""

    def __init__(self, *args: Any, kernel_width: float, distance_scale: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_width = kernel_width
        self.distance_scale = distance_scale

    #: F of each song when several songs (padded to the largest F) share one batch.
    feature_counts: list[int] | None = None
    #: the surrogate's feature selection of each song, after a batch of songs.
    selections: list[Any] | None = None

    def _weights_from_masks(self, masks: Tensor) -> Tensor:
        if self.feature_counts is not None:
            return torch.cat([self._kernel(masks[b : b + 1, :, :f]) for b, f in enumerate(self.feature_counts)])
        return self._kernel(masks)

    def _kernel(self, masks: Tensor) -> Tensor:
        distances = cosine_distance(masks, masks[..., :1, :]) * self.distance_scale
        return lime_kernel(distances, self.kernel_width)

    def _fit(self, Z: Tensor, Y: Tensor, W: Tensor, differentiable: bool) -> Any:
        if self.feature_counts is None:
            return super()._fit(Z, Y, W, differentiable)
        fits, self.selections = [], []
        F = Z.shape[-1]
        for b, f in enumerate(self.feature_counts):
            fit = super()._fit(Z[b : b + 1, :, :f], Y[b : b + 1], W[b : b + 1], differentiable)
            fits.append(fit._replace(coef=torch.nn.functional.pad(fit.coef, (0, F - f))))
            self.selections.append(self.interpretable_model.last_selection)
        return type(fits[0])(*(torch.cat(parts) for parts in zip(*fits)))


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

    #: Reuse one buffer for the composed audio across the chunks of an ``explain`` call on
    #: CPU (fresh large allocations cost page faults). The audio handed to ``forward_func``
    #: is then valid only during that call; set to False if your model keeps references to
    #: its inputs. (A legacy ``predict_fn`` always gets fresh arrays.)
    reuse_buffers = True

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
        targets: Sequence[int] | int | str = (1,),
        n_samples: int = 1000,
        *,
        modality: str = "both",
        num_features: int = 20,
        feature_selection: str = "auto",
        masks: Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        batch_size: int = 100,
        show_progress: bool = False,
        song_info: dict | Sequence[dict] | None = None,
        songs_per_batch: int = 1,
    ) -> Explanation | list[Explanation]:
        """Explain one song, or several (lists of factorizations, one explanation each).

        Args:
            audio: a :class:`StemFactorization` (or a list, one per song; None with
                ``modality="lyrics"`` and an audio-free model is not supported).
            lyrics: a :class:`LyricsFactorization` (or a list), or None for audio-only.
            targets: the class indices to explain (for every song), or "all" classes.
            n_samples: perturbations per song (>= 2).
            modality: "both", "audio" (lyrics fixed on) or "lyrics" (audio fixed on).
            num_features: features kept by the feature selection.
            feature_selection: lime's modes ("auto": forward selection up to 6 features,
                else highest weights).
            masks: ``(n, F)`` or ``(B, n, F)`` explicit masks (row 0 should be all ones)
                to compare with other implementations sample for sample.
            generator: a ``torch.Generator`` on the audio's device, for reproducible masks
                (songs draw from it in order), or one per song (each song's masks then
                depend on its own generator only, whatever the batch it is in).
            batch_size: perturbations per forward call.
            show_progress: a tqdm bar over the forward calls.
            song_info: metadata stored in each explanation's JSON.
            songs_per_batch: explain up to this many songs together: each forward call gets
                ``batch_size`` perturbations of every song in the group (songs whose audio
                has the same shape; token rows are padded to the longest). The masks, and
                so the explanations, are those of one call per song.

        Returns:
            An :class:`Explanation` (a list of them for a list of songs).

        Raises:
            ValueError: unknown modality, missing factorization for it, bad targets, a
                model that returns the wrong number of classes, bad masks, songs_per_batch < 1.
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
        if isinstance(targets, str):
            if targets != "all":
                raise ValueError(f"expected targets as class indices or 'all', got {targets!r}")
        else:
            targets = [int(targets)] if isinstance(targets, (int, np.integer)) else [int(t) for t in targets]
        if not targets:
            raise ValueError("expected at least one target, got none")
        if isinstance(songs_per_batch, bool) or not isinstance(songs_per_batch, int) or songs_per_batch < 1:
            raise ValueError(f"expected songs_per_batch >= 1, got {songs_per_batch!r}")
        if masks is not None and masks.dim() == 3 and masks.shape[0] != len(audios):
            raise ValueError(f"expected (B, n, F) masks with B = {len(audios)} songs, got shape {tuple(masks.shape)}")
        generators = list(generator) if isinstance(generator, (list, tuple)) else [generator] * len(audios)
        if len(generators) != len(audios):
            raise ValueError(f"expected one generator per song ({len(audios)}), got {len(generators)}")
        songs = []
        for b, (a, l, info, g) in enumerate(zip(audios, lyricses, infos, generators)):
            song_masks = masks[b] if masks is not None and masks.dim() == 3 else masks
            songs.append(self._prepare(a, l, info, modality, n_samples, song_masks, g))
        out: list[Explanation | None] = [None] * len(songs)
        for group in _groups(songs, songs_per_batch):
            explained = self._explain_group([songs[b] for b in group], targets, modality, num_features,
                                            feature_selection, batch_size, show_progress,
                                            masks is not None)
            for b, exp in zip(group, explained):
                out[b] = exp
        return out if many else out[0]

    # -- songs --------------------------------------------------------------------------------

    def _prepare(self, audio, lyrics, info, modality, n_samples, masks, generator) -> _Song:
        """Check one song and draw its masks (in song order, as a loop of single calls would)."""
        if audio is None:
            raise ValueError("expected an audio factorization (StemFactorization), got None")
        if modality in ("both", "lyrics") and lyrics is None:
            raise ValueError(f"expected a lyrics factorization for modality={modality!r}, got None")
        use_audio = modality in ("both", "audio")
        use_lyrics = modality in ("both", "lyrics") and lyrics is not None
        Fa = audio.num_features if use_audio else 0
        Fl = lyrics.num_features if use_lyrics else 0
        device = audio.device
        if masks is None:
            Z = bernoulli_masks(n_samples, Fa + Fl, first_row_ones=True, device=device, generator=generator)
        else:
            Z = check_masks(masks, Fa + Fl)[0].to(device=device, dtype=torch.float32)
        seed = generator.initial_seed() if generator is not None else None
        return _Song(audio, lyrics, info, Fa, Fl, Z, seed)

    def _explain_group(self, songs, targets, modality, num_features, feature_selection,
                       batch_size, show_progress, explicit_masks) -> list[Explanation]:
        """Explain songs whose audio has one shape together: their forwards share batches."""
        device = songs[0].audio.device
        n_samples = songs[0].Z.shape[0]
        if any(song.Z.shape[0] != n_samples for song in songs):
            raise ValueError(f"expected the same number of masks for every song, got {[s.Z.shape[0] for s in songs]}")
        F = max(song.F for song in songs)
        B = len(songs)
        # Songs with fewer features are padded with always-on columns; their kernel and
        # fit use their own columns only (see _MaskKernelLimeBase.feature_counts).
        Z = torch.ones(B, n_samples, F, device=device)
        for b, song in enumerate(songs):
            Z[b, :, : song.F] = song.Z
        legacy = self.forward_func is None

        stems = songs[0].audio.stems
        buffers: dict[str, Tensor] = {}

        @batched
        def transform(z: Tensor, original: Any, **kw: Any) -> tuple:
            z = z.reshape(-1, z.shape[-2], z.shape[-1])
            c = z.shape[1]
            # A legacy predict_fn gets numpy views of the waves, which users may keep: no reuse.
            waves = chunk_buffer(None if legacy or not self.reuse_buffers else buffers, "waves",
                                 (B * c, *stems.shape[1:]), stems.dtype, stems.device)
            parts = [song.compose(z[b, :, : song.F], legacy, out=waves[b * c : (b + 1) * c])
                     for b, song in enumerate(songs)]
            return _stack(parts, songs, waves)

        @batched
        def unused_similarity(*args: Any, **kw: Any) -> Tensor:  # weights come from the masks
            raise AssertionError("MusicLime computes weights from the masks")

        forward = self._forward_legacy if legacy else self._forward_batched
        surrogate = LimeSurrogate(num_features=num_features, feature_selection=feature_selection)
        engine = _MaskKernelLimeBase(
            forward, surrogate, unused_similarity, lambda *a, **k: None, True, transform, None,
            kernel_width=self.kernel_width, distance_scale=self.distance_scale,
        )
        if B > 1:
            engine.feature_counts = [song.F for song in songs]
        original = transform(torch.ones(B, 1, F, device=device), None)
        with torch.no_grad():
            predictions = forward(*original)
        classes = predictions.shape[-1]
        targets = list(range(classes)) if targets == "all" else targets
        for t in targets:
            if not -classes <= t < classes:
                raise ValueError(f"target {t} is out of range for a model with {classes} classes")
        fit = engine.attribute(
            original, target=[list(targets)] * B, n_samples=n_samples, perturbations_per_eval=batch_size,
            show_progress=show_progress, masks=Z if B > 1 else Z[0], return_fit=True,
        )
        selections = engine.selections if B > 1 else [surrogate.last_selection]
        out = []
        for b, song in enumerate(songs):
            use_lyrics = song.Fl > 0
            names = (song.audio.feature_names if song.Fa else []) + (song.lyrics.feature_names if use_lyrics else [])
            types = ["audio"] * song.Fa + ["lyrics"] * song.Fl
            song_fit = type(fit)(*(t[b : b + 1, ..., : song.F] if i == 0 else t[b : b + 1] for i, t in enumerate(fit)))
            out.append(Explanation.from_fit(
                song_fit, selections[b], targets, names, types, predictions[b],
                audio_factorization=song.audio, lyrics_factorization=song.lyrics,
                metadata=dict(
                    n_samples=n_samples, modality=modality, num_features=num_features,
                    feature_selection=feature_selection, kernel="sqrt(exp(-d^2 / w^2))",
                    kernel_width=self.kernel_width, distance="cosine between masks and row 0",
                    distance_scale=self.distance_scale, batch_size=batch_size,
                    seed=song.seed,
                    explicit_masks=explicit_masks, num_audio_features=song.Fa, num_lyrics_features=song.Fl,
                    lyrics_unit=getattr(song.lyrics, "unit", None) if use_lyrics else None,
                    song_info=song.info or {}, songs_per_batch=B,
                ),
            ))
        return out

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

    def _forward_song(self, song: _Song, z: Tensor) -> Tensor:
        """The model's ``(c, classes)`` output on one song's masks ``(c, F)``, composed as in explain."""
        if self.forward_func is None:
            return self._forward_legacy(*song.compose(z, legacy=True))
        return self._forward_batched(*song.compose(z, legacy=False))

    def _forward_batched(self, *inputs: Tensor) -> Tensor:
        out = self.forward_func(*inputs)
        return self._finish(out, inputs[0].device, inputs[0].shape[0])

    def _forward_legacy(self, waves: Tensor, texts: list[str]) -> Tensor:
        mono = waves.shape[1] == 1
        arrays = [w[0].cpu().numpy() if mono else w.cpu().numpy() for w in waves]
        return self._finish(self.predict_fn(list(texts), arrays), waves.device, waves.shape[0])
