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
from .._checks import check_choice, check_int
from ..functional.engine import (
    Budget,
    default_memory_budget,
    explain_auto,
    explain_masks,
    model_outputs,
    rows_output,
    rows_per_chunk,
)
from ..functional.kernels import mask_kernel_weights
from ..functional.sampling import LIME_SAMPLERS, MaskSampler, check_masks
from ..models import LimeSurrogate, fit_model
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
    Z: Tensor | None  # (n, F), or None with n_samples="auto" (drawn in rounds)
    seed: int | None  # initial seed of the generator its masks came from
    sampler: Any = None  # the song's MaskSampler (None with explicit masks)
    cluster: Tensor | None = None  # (n,) the independent draw of each row (None: every row)

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
        >>> exp = MusicLime(model).explain(audio, target=[0], n_samples=200, modality="audio",
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
        target: Sequence[int | str] | int | str = (1,),
        n_samples: int = 1000,
        *,
        modality: str = "both",
        num_features: int = 20,
        feature_selection: str = "auto",
        masks: Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        perturbations_per_eval: int = 100,
        show_progress: bool = False,
        song_info: dict | Sequence[dict] | None = None,
        songs_per_batch: int = 1,
        memory_budget: int | None = None,
        sampler: str = "iid",
        tol: float = 0.05,
        max_samples: int = 10_000,
        **deprecated: Any,
    ) -> Explanation | list[Explanation]:
        """Explain one song, or several (lists of factorizations, one explanation each).

        Args:
            audio: a :class:`StemFactorization` (or a list, one per song; None with
                ``modality="lyrics"`` and an audio-free model is not supported).
            lyrics: a :class:`LyricsFactorization` (or a list), or None for audio-only.
            target: the class indices to explain (for every song; lime's and MusicLIME's
                ``labels``, default class 1), "all" classes, or "predicted" (each song's
                predicted class; may be listed with indices: ``["predicted", 0]``).
            n_samples: perturbations per song (>= 2), or "auto": sample in rounds of
                ``perturbations_per_eval`` until every standard error of the song's weights
                is at most ``tol`` times its largest |weight| (or ``max_samples``); each
                song stops on its own and its explanation records how many it used.
            modality: "both", "audio" (lyrics fixed on) or "lyrics" (audio fixed on).
            num_features: features kept by the feature selection.
            feature_selection: lime's modes ("auto": forward selection up to 6 features,
                else highest weights).
            masks: ``(n, F)`` or ``(B, n, F)`` explicit masks (row 0 should be all ones)
                to compare with other implementations sample for sample.
            generator: a ``torch.Generator`` on the audio's device, for reproducible masks
                (songs draw from it in order), or one per song (each song's masks then
                depend on its own generator only, whatever the batch it is in).
            perturbations_per_eval: perturbations of each song per forward call (Captum's
                name; ``batch_size`` is its deprecated alias).
            show_progress: a tqdm bar over the forward calls.
            song_info: metadata stored in each explanation's JSON.
            songs_per_batch: explain up to this many songs together: each forward call gets
                ``perturbations_per_eval`` perturbations of every song in the group (songs whose audio
                has the same shape; token rows are padded to the longest). The masks, and
                so the explanations, are those of one call per song.
            memory_budget: bytes the composed audio and tokens of one forward call may take
                (None: :func:`torchlime.functional.engine.default_memory_budget`, a quarter
                of the free memory); a call gets fewer than ``perturbations_per_eval``
                samples per song when they would not fit (a 2-hour song), which changes
                nothing in the results. The metadata records the samples per call used.
            sampler: how masks are drawn: "iid" (Bernoulli(0.5), MusicLIME's), "paired" (each
                mask with its complement: lower error for the same number of model calls) or
                "sobol" (scrambled quasi-random). Row 0 is the unperturbed song either way.
            tol: with ``n_samples="auto"``, the target standard error relative to the
                largest |weight| of each explained label.
            max_samples: with ``n_samples="auto"``, the most samples per song.
            **deprecated: ``targets`` and ``batch_size``, the old names of ``target`` and
                ``perturbations_per_eval`` (they warn, and go in the next release).

        Returns:
            An :class:`Explanation` (a list of them for a list of songs).

        Raises:
            ValueError: unknown modality, missing factorization for it, bad targets, a
                model that returns the wrong number of classes, bad masks, songs_per_batch < 1.
        """
        target, perturbations_per_eval = _renamed(deprecated, target, perturbations_per_eval)
        check_choice(modality, "modality", MODALITIES)
        many = isinstance(audio, (list, tuple)) or isinstance(lyrics, (list, tuple))
        audios = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        lyricses = list(lyrics) if isinstance(lyrics, (list, tuple)) else [lyrics] * len(audios)
        if len(audios) == 1 and len(lyricses) > 1:
            audios = audios * len(lyricses)
        if len(audios) != len(lyricses):
            raise ValueError(f"expected as many lyrics as audio factorizations, got {len(lyricses)} and {len(audios)}")
        infos = list(song_info) if isinstance(song_info, (list, tuple)) else [song_info] * len(audios)
        targets = _song_targets(target)
        check_int(songs_per_batch, "songs_per_batch", 1)
        check_choice(sampler, "sampler", LIME_SAMPLERS)
        auto = isinstance(n_samples, str)
        if auto:
            if n_samples != "auto":
                raise ValueError(f"expected n_samples as an integer >= 2 or 'auto', got {n_samples!r}")
            if masks is not None:
                raise ValueError("expected either masks= or n_samples='auto', got both")
            check_int(max_samples, "max_samples", 2)
            if not tol >= 0:
                raise ValueError(f"expected tol >= 0, got {tol}")
        else:
            check_int(n_samples, "n_samples", 2)
        if masks is not None and sampler != "iid":
            raise ValueError(f"expected either masks= or sampler=, got both (sampler={sampler!r})")
        check_int(perturbations_per_eval, "perturbations_per_eval", 1)
        if memory_budget is not None:
            check_int(memory_budget, "memory_budget", 1)
        if masks is not None and masks.dim() == 3 and masks.shape[0] != len(audios):
            raise ValueError(f"expected (B, n, F) masks with B = {len(audios)} songs, got shape {tuple(masks.shape)}")
        generators = list(generator) if isinstance(generator, (list, tuple)) else [generator] * len(audios)
        if len(generators) != len(audios):
            raise ValueError(f"expected one generator per song ({len(audios)}), got {len(generators)}")
        songs = []
        for b, (a, l, info, g) in enumerate(zip(audios, lyricses, infos, generators)):
            song_masks = masks[b] if masks is not None and masks.dim() == 3 else masks
            songs.append(self._prepare(a, l, info, modality, n_samples, song_masks, g, sampler_name=sampler))
        out: list[Explanation | None] = [None] * len(songs)
        for group in _groups(songs, songs_per_batch):
            explained = self._explain_group([songs[b] for b in group], targets, modality, num_features,
                                            feature_selection, perturbations_per_eval, show_progress,
                                            masks is not None, memory_budget,
                                            Budget(tol=tol, max_samples=max_samples) if auto else None, sampler)
            for b, exp in zip(group, explained):
                out[b] = exp
        return out if many else out[0]

    # -- songs --------------------------------------------------------------------------------

    def _prepare(self, audio, lyrics, info, modality, n_samples, masks, generator, draw=True,
                 sampler_name="iid") -> _Song:
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
        seed = generator.initial_seed() if generator is not None else None
        if not draw:
            return _Song(audio, lyrics, info, Fa, Fl, None, seed)
        if masks is not None:
            Z = check_masks(masks, Fa + Fl)[0].to(device=device, dtype=torch.float32)
            return _Song(audio, lyrics, info, Fa, Fl, Z, seed)
        sampler = MaskSampler(sampler_name, Fa + Fl, first_row_ones=True, device=device, generator=generator)
        if n_samples == "auto":  # drawn in rounds by _explain_auto
            return _Song(audio, lyrics, info, Fa, Fl, None, seed, sampler)
        Z = sampler.draw(n_samples).masks
        return _Song(audio, lyrics, info, Fa, Fl, Z, seed, sampler, sampler.clusters)

    def _explain_group(self, songs, targets, modality, num_features, feature_selection, perturbations_per_eval,
                       show_progress, explicit_masks, memory_budget=None, budget=None, sampler="iid") -> list[Explanation]:
        """Explain songs whose audio has one shape together: forwards share calls, one batched fit.

        Songs with fewer features are padded with always-on columns; ``active`` keeps the
        kernel and the fit to each song's own features.
        """
        device = songs[0].audio.device
        F = max(song.F for song in songs)
        B = len(songs)
        if budget is None:
            n_samples = songs[0].Z.shape[0]
            if any(song.Z.shape[0] != n_samples for song in songs):
                raise ValueError(f"expected the same number of masks for every song, got {[s.Z.shape[0] for s in songs]}")
            Z = torch.ones(B, n_samples, F, device=device)
            for b, song in enumerate(songs):
                Z[b, :, : song.F] = song.Z
        else:
            n_samples = "auto"
        counts = torch.tensor([song.F for song in songs], device=device)
        active = torch.arange(F, device=device) < counts.unsqueeze(-1)  # (B, F)
        legacy = self.forward_func is None
        stems = songs[0].audio.stems
        buffers: dict[str, Tensor] = {}
        bytes_per_call = memory_budget if memory_budget is not None else default_memory_budget(device)
        # ids and attention mask (int64) per sample; the audio dominates anyway
        token_bytes = max(16 * (getattr(s.lyrics, "max_length", None) or 512) if s.lyrics is not None else 0
                          for s in songs)
        sample_bytes = stems[0].numel() * stems.element_size() + token_bytes
        chunk = rows_per_chunk(perturbations_per_eval, sample_bytes, B, bytes_per_call)

        def transform_for(members: list[int]) -> Any:
            group = [songs[b] for b in members]

            def transform(z: Tensor) -> tuple:
                c = z.shape[1]
                # A legacy predict_fn gets numpy views of the waves, which users may keep: no reuse.
                waves = chunk_buffer(None if legacy or not self.reuse_buffers else buffers, "waves",
                                     (len(group) * c, *stems.shape[1:]), stems.dtype, stems.device)
                parts = [song.compose(z[i, :, : song.F], legacy, out=waves[i * c : (i + 1) * c])
                         for i, song in enumerate(group)]
                return _stack(parts, group, waves)

            return transform

        kernel = self.kernel_parameters

        def sample_weight(masks: Tensor, members: list[int] | None = None) -> Tensor:
            act = active if members is None else active[members]
            return mask_kernel_weights(masks, kernel["kernel_width"], reference=kernel["reference"],
                                       distance_scale=kernel["distance_scale"], active=act)

        surrogate = LimeSurrogate(num_features=num_features, feature_selection=feature_selection)

        def fit(X: Tensor, y: Tensor, w: Tensor, members: list[int] | None = None, cluster: Any = None) -> Any:
            act = active if members is None else active[members]
            return fit_model(surrogate, X, y, w, active=act, stderr=True, cluster=cluster)

        fitted: list[int] = []

        def resolve(first: Tensor) -> Any:  # the labels to fit, from the model's output on row 0
            classes = first.shape[-1]
            labels = _resolve_labels(targets, first, classes)
            fitted.extend(sorted({t % classes for song_labels in labels for t in song_labels}))
            return [fitted] * len(first)

        names = [_song_name(song, b) for b, song in enumerate(songs)]
        finish = lambda out, rows: self._finish(out, device, rows)  # noqa: E731
        rounds = -(-n_samples // chunk) if budget is None else None
        progress = _progress(show_progress, rounds)
        try:
            with torch.no_grad():
                if budget is None:
                    cluster = songs[0].cluster
                    result = explain_masks(
                        self._raw_forward, transform_for(list(range(B))), Z,
                        lambda X, y, w: fit(X, y, w, None, cluster),
                        sample_weight=sample_weight, target=resolve, perturbations_per_eval=chunk,
                        names=names, finish=finish, progress=progress.update,
                    )
                else:
                    def draw(r: int) -> tuple:
                        z = torch.ones(B, r, F, device=device)
                        for b, song in enumerate(songs):
                            z[b, :, : song.F] = song.sampler.draw(r).masks
                        return z, None, songs[0].sampler.clusters

                    result = explain_auto(
                        self._raw_forward, transform_for, draw, fit, sample_weight=sample_weight, budget=budget,
                        target=resolve, perturbations_per_eval=chunk, names=names, finish=finish,
                        progress=progress.update,
                    )
        finally:
            progress.close()
        predictions = result.first
        if explicit_masks and not bool((Z[:, 0] == 1).all()):  # row 0 is not the song itself
            predictions = torch.cat([self.forward_masks(torch.ones(1, s.F, device=device), s.audio, s.lyrics,
                                                        modality=modality) for s in songs])
        labels = _resolve_labels(targets, predictions, predictions.shape[-1])
        fit = result.fit
        out = []
        for b, song in enumerate(songs):
            use_lyrics = song.Fl > 0
            names = (song.audio.feature_names if song.Fa else []) + (song.lyrics.feature_names if use_lyrics else [])
            types = ["audio"] * song.Fa + ["lyrics"] * song.Fl
            rows = [fitted.index(t % predictions.shape[-1]) for t in labels[b]]
            song_fit = _take_song(fit, b, rows, song.F)
            out.append(Explanation.from_fit(
                song_fit, song_fit.selection, labels[b], names, types, predictions[b],
                audio_factorization=song.audio, lyrics_factorization=song.lyrics,
                metadata=dict(
                    n_samples=n_samples if budget is None else int(fit.n_samples[b]),
                    **({} if budget is None else dict(n_samples_rule="auto", tol=budget.tol,
                                                      max_samples=budget.max_samples)),
                    sampler=sampler, modality=modality, num_features=num_features,
                    feature_selection=feature_selection, **kernel,
                    perturbations_per_eval=perturbations_per_eval, samples_per_call=chunk, seed=song.seed,
                    explicit_masks=explicit_masks, num_audio_features=song.Fa, num_lyrics_features=song.Fl,
                    lyrics_unit=getattr(song.lyrics, "unit", None) if use_lyrics else None,
                    song_info=song.info or {}, songs_per_batch=B,
                ),
            ))
        return out

    @property
    def kernel_parameters(self) -> dict[str, Any]:
        """Every parameter of the kernel, as explanations record them (and evaluation reads them)."""
        return dict(kernel="sqrt(exp(-(s d)^2 / w^2))", kernel_width=self.kernel_width,
                    distance="cosine", reference="first", distance_scale=self.distance_scale)

    def forward_masks(
        self,
        masks: Tensor,
        audio: StemFactorization,
        lyrics: Any = None,
        *,
        modality: str = "both",
        perturbations_per_eval: int | None = None,
    ) -> Tensor:
        """The model's output on masks of one song, composed exactly as :meth:`explain` does.

        Args:
            masks: ``(m, F)`` over the features ``[audio | lyrics]`` that ``modality``
                explains (the other modality is fixed on).
            audio: the song's :class:`StemFactorization`.
            lyrics: its :class:`LyricsFactorization`, or None.
            modality: "both", "audio" or "lyrics".
            perturbations_per_eval: rows per forward call (None: all at once).

        Returns:
            ``(m, classes)`` (after softmax with ``apply_softmax``).

        Raises:
            ValueError: masks of the wrong shape, an unknown modality, a missing factorization.

        Example:
            >>> from torchlime.music import StemFactorization
            >>> audio = StemFactorization(torch.randn(4, 1, 800), sample_rate=8000, num_segments=2)
            >>> model = lambda a: torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)
            >>> MusicLime(model).forward_masks(torch.ones(3, 8), audio, modality="audio").shape
            torch.Size([3, 2])
        """
        check_choice(modality, "modality", MODALITIES)
        song = self._prepare(audio, lyrics, None, modality, 2, None, None, draw=False)
        if not isinstance(masks, Tensor) or masks.dim() != 2 or masks.shape[1] != song.F:
            shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            raise ValueError(f"expected masks of shape (m, {song.F}) for this song and modality={modality!r}, got {shape}")
        legacy = self.forward_func is None
        with torch.no_grad():
            run = model_outputs(
                self._raw_forward, lambda z: song.compose(z[0], legacy), masks.to(audio.device).unsqueeze(0),
                target="all", perturbations_per_eval=perturbations_per_eval,
                finish=lambda out, rows: self._finish(out, audio.device, rows),
            )
        return run.outputs[0]

    # -- the model contracts ----------------------------------------------------------------

    def _finish(self, out: Any, device: torch.device, rows: int) -> Tensor:
        """The model's output as ``(rows, classes)`` floats (softmax with ``apply_softmax``)."""
        out = rows_output(out, rows, device)
        if out.dim() != 2:
            raise ValueError(f"expected the model to return (n, classes) = ({rows}, C), got shape {tuple(out.shape)}")
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ValueError(f"expected the model to return {self.num_classes} classes, got {out.shape[1]}")
        return out.softmax(-1) if self.apply_softmax else out

    def _raw_forward(self, *inputs: Any) -> Any:
        """Call the model on composed inputs: ``forward_func(audio, ids, attention)`` or the
        legacy ``predict_fn(texts, waveforms as numpy arrays)``."""
        if self.forward_func is not None:
            return self.forward_func(*inputs)
        waves, texts = inputs
        mono = waves.shape[1] == 1
        arrays = [w[0].cpu().numpy() if mono else w.cpu().numpy() for w in waves]
        return self.predict_fn(list(texts), arrays)


def _renamed(deprecated: dict, target: Any, perturbations_per_eval: int) -> tuple[Any, int]:
    """``targets=`` and ``batch_size=``, the old names, with a DeprecationWarning."""
    import warnings

    for old, new in (("targets", "target"), ("batch_size", "perturbations_per_eval")):
        if old in deprecated:
            warnings.warn(f"MusicLime.explain({old}=...) is deprecated; use {new}=", DeprecationWarning, stacklevel=3)
    unknown = set(deprecated) - {"targets", "batch_size"}
    if unknown:
        raise TypeError(f"MusicLime.explain() got unexpected keyword arguments {sorted(unknown)}")
    return deprecated.get("targets", target), deprecated.get("batch_size", perturbations_per_eval)


def _song_targets(target: Any) -> list[Any] | str:
    """The labels asked for, as a list of ints and "predicted", or "all"."""
    if isinstance(target, str) and target == "all":
        return "all"
    values = [target] if isinstance(target, (str, int, np.integer)) else list(target)
    if not values:
        raise ValueError("expected at least one target, got none")
    for t in values:
        if not (t == "predicted" if isinstance(t, str) else isinstance(t, (int, np.integer)) and not isinstance(t, bool)):
            raise ValueError(f"expected target as class indices, 'predicted' or 'all', got {target!r}")
    return [t if isinstance(t, str) else int(t) for t in values]


def _resolve_labels(targets: list[Any] | str, predictions: Tensor, classes: int) -> list[list[int]]:
    """Each song's labels: the asked ones, with "predicted" replaced by its argmax, no repeats."""
    if targets == "all":
        return [list(range(classes))] * predictions.shape[0]
    for t in targets:
        if not isinstance(t, str) and not -classes <= t < classes:
            raise ValueError(f"target {t} is out of range for a model with {classes} classes")
    out = []
    for b in range(predictions.shape[0]):
        labels: list[int] = []
        for t in targets:
            value = int(predictions[b].argmax()) if isinstance(t, str) else t % classes
            if value not in labels:
                labels.append(value)
        out.append(labels)
    return out


def _take_song(fit: Any, b: int, rows: list[int], F: int) -> Any:
    """Song b's part of a group fit: its labels' rows and its own F features, as ``(1, K, F)``."""
    idx = torch.tensor(rows, device=fit.coef.device)

    def take(t: Any, features: bool) -> Any:
        if t is None:
            return None
        if isinstance(t, Tensor) and t.dim() == 1:  # n_samples: (B,)
            return t[b : b + 1]
        if isinstance(t, tuple):  # FeatureSelection: (selected (B, K, F), order (B, K, F), count (B, K))
            return type(t)(*(take(v, v.dim() == 3) for v in t))
        t = t[b : b + 1].index_select(1, idx)
        return t[..., :F] if features else t

    return type(fit)(*(take(t, name in ("coef", "stderr")) for name, t in zip(fit._fields, fit)))


def _song_name(song: _Song, b: int) -> str:
    """How errors name a song: its id or audio path from ``song_info``, else its position."""
    info = song.info or {}
    for key in ("id", "audio", "name"):
        if info.get(key):
            return f"song {info[key]!r}"
    return f"song {b}"


class _NoProgress:
    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(show: bool, total: int) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="MusicLime explanation")
