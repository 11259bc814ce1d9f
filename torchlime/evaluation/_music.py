"""Evaluate a MusicLime :class:`~torchlime.music.Explanation` on its song.

Shape glossary: m mask rows, F = F_audio + F_lyrics interpretable features, K explained
labels, C model classes, C_a audio channels, T audio samples, Q tokens, n held-out samples.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..functional.kernels import mask_kernel_weights
from ..functional.sampling import bernoulli_masks, check_generator
from .._checks import check_int
from ._faithfulness import Faithfulness, run_faithfulness
from ._fidelity import fidelity

__all__ = ["ExplanationEvaluation", "explanation_forward", "evaluate_explanation", "load_explanation"]


class ExplanationEvaluation(NamedTuple):
    """Faithfulness and fidelity of one song's explanation.

    Attributes:
        labels: the K evaluated labels (class indices), in the order of the tensors' K dim.
        faithfulness: :class:`Faithfulness` with a K dim (``deletion`` is ``(K, L+1)``).
        score: ``(K,)`` the explanation's own weighted R^2 (on the samples it was fitted on).
        heldout_score: ``(K,)`` weighted R^2 of the surrogate on n fresh masks, weighted by
            the explainer's kernel; None when ``n_heldout=0``.
        feature_names: the F feature names (``order`` indexes them).
    """

    labels: list[int]
    faithfulness: Faithfulness
    score: Tensor
    heldout_score: Tensor | None
    feature_names: list[str]


def _explainer(model: Any, apply_softmax: bool) -> Any:
    from ..music import MusicLime

    if isinstance(model, MusicLime):
        return model
    if not callable(model):
        raise TypeError(
            f"expected a MusicLime or a forward_func(audio, input_ids, attention_mask), got {type(model).__name__}"
        )
    return MusicLime(model, apply_softmax=apply_softmax)


def explanation_forward(explanation: Any, model: Any, *, apply_softmax: bool = False) -> Callable[[Tensor], Tensor]:
    """The model as a function of the explanation's masks, composed as MusicLime does.

    Columns of the masks are the explanation's features ``[audio | lyrics]``; a modality
    the explanation left out is fixed on (all ones), as in the explanation.

    Args:
        explanation: an :class:`~torchlime.music.Explanation` that carries its
            factorizations (from ``MusicLime.explain`` or :func:`load_explanation`).
        model: the :class:`~torchlime.music.MusicLime` that explained it (its
            ``forward_func`` or legacy ``predict_fn`` and ``apply_softmax`` are used), or a
            ``forward_func(audio (m, C_a, T), input_ids (m, Q), attention_mask (m, Q)) -> (m, C)``.
        apply_softmax: with a ``forward_func``: turn logits into probabilities, as the
            explainer did.

    Returns:
        ``forward(masks (m, F)) -> (m, C)`` on the audio factorization's device.

    Raises:
        ValueError: an explanation without factorizations, or whose features do not match
            them.

    Example:
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> audio = StemFactorization(torch.randn(4, 1, 800), sample_rate=8000, num_segments=2)
        >>> model = lambda a: torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)
        >>> exp = MusicLime(model).explain(audio, target=[0], n_samples=50, modality="audio")
        >>> explanation_forward(exp, model)(torch.ones(3, 8)).shape
        torch.Size([3, 2])
    """
    explainer = _explainer(model, apply_softmax)
    audio, lyrics = explanation.audio_factorization, explanation.lyrics_factorization
    if audio is None:
        raise ValueError(
            "expected an explanation that carries its audio factorization (from MusicLime.explain, or "
            "load_explanation(..., audio=...)), got none"
        )
    types = list(explanation.feature_types)
    Fa = types.count("audio")
    Fl = len(types) - Fa
    if types != ["audio"] * Fa + ["lyrics"] * Fl:
        raise ValueError(f"expected feature_types 'audio' ... then 'lyrics' ..., got {types}")
    if Fa and Fa != audio.num_features:
        raise ValueError(
            f"expected {Fa} audio features in the audio factorization (as the explanation), got {audio.num_features}"
        )
    if Fl and (lyrics is None or lyrics.num_features != Fl):
        got = "none" if lyrics is None else lyrics.num_features
        raise ValueError(f"expected {Fl} lyric features in the lyrics factorization (as the explanation), got {got}")
    if explainer.forward_func is None and lyrics is None:
        raise ValueError("expected a lyrics factorization for a predict_fn model, got none")
    device = audio.device
    F = Fa + Fl
    modality = "both" if Fa and Fl else "audio" if Fa else "lyrics"

    def forward(z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != F:
            raise ValueError(f"expected masks of shape (m, {F}), got shape {tuple(z.shape)}")
        return explainer.forward_masks(z.to(device), audio, lyrics, modality=modality)

    return forward


def evaluate_explanation(
    explanation: Any,
    model: Any,
    *,
    apply_softmax: bool = False,
    labels: Sequence[int] | None = None,
    max_k: int | None = None,
    absolute: bool = False,
    n_random: int = 0,
    n_heldout: int = 0,
    generator: torch.Generator | None = None,
    batch_size: int = 100,
    validate: bool = True,
) -> ExplanationEvaluation:
    """Faithfulness (deletion/insertion, AOPC) and fidelity (weighted R^2) of a song's explanation.

    All mask rows (deletion and insertion for each label, the random orders, the held-out
    samples) go through the model in one chunked pass (``batch_size`` rows per call). The
    top features are the highest weights for each label (positive evidence first, ties
    by the lower index; ``absolute=True``: by ``|weight|``). Held-out masks are
    Bernoulli(0.5), weighted by the explainer's kernel with the parameters the explanation
    records (``kernel_width``, ``distance_scale``; distances to the unperturbed song, the
    all-ones mask); ``generator`` draws them first, then the random orders.

    Args:
        explanation: an :class:`~torchlime.music.Explanation` with its factorizations.
        model: the :class:`~torchlime.music.MusicLime` that explained it, or its
            ``forward_func`` (see :func:`explanation_forward`).
        apply_softmax: with a ``forward_func``: softmax the outputs, as the explainer did.
        labels: which explained labels to evaluate (default: all).
        max_k: L, the last deletion/insertion step (default F).
        absolute: rank features by ``|weight|``.
        n_random: random feature orders as a baseline (0: none).
        n_heldout: fresh masks for the held-out R^2 (0: none, else >= 2).
        generator: for held-out masks and random orders, on the audio's device.
        batch_size: mask rows per forward call.
        validate: check weights and outputs for NaN/inf.

    Returns:
        :class:`ExplanationEvaluation`.

    Raises:
        ValueError: a label that was not explained, NaN weights, bad ``max_k``,
            ``n_heldout``, ``n_random`` or ``batch_size`` (see :func:`faithfulness`).

    Example:
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> audio = StemFactorization(torch.randn(4, 1, 800), sample_rate=8000, num_segments=2)
        >>> model = lambda a: torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)
        >>> explainer = MusicLime(model)
        >>> exp = explainer.explain(audio, target=[1], n_samples=50, modality="audio")
        >>> evaluate_explanation(exp, explainer, n_heldout=20).faithfulness.deletion.shape
        torch.Size([1, 9])
    """
    forward = explanation_forward(explanation, model, apply_softmax=apply_softmax)
    device = explanation.audio_factorization.device
    explained = list(explanation.labels)
    chosen = explained if labels is None else [int(t) for t in labels]
    for label in chosen:
        if label not in explained:
            raise ValueError(f"expected labels among the explained labels {explained}, got {label}")
    if not chosen:
        raise ValueError("expected at least one label to evaluate, got none")
    rows = [explained.index(t) for t in chosen]
    weights = explanation.weights[rows].to(device)
    n_heldout = check_int(n_heldout, "n_heldout", 0)
    if n_heldout == 1:
        raise ValueError("expected n_heldout = 0 (no held-out R^2) or >= 2, got 1")
    check_generator(generator, device)
    F = weights.shape[-1]
    extra = None
    if n_heldout:
        extra = bernoulli_masks(n_heldout, F, device=device, dtype=weights.dtype, generator=generator)
    result, extra_out = run_faithfulness(
        forward, weights, chosen, max_k, absolute, n_random, generator, batch_size, validate, extra=extra,
    )
    score = torch.tensor([explanation.score[t] for t in chosen], dtype=weights.dtype, device=device)
    heldout = None
    if extra is not None:
        meta = explanation.metadata
        for key in ("kernel_width", "distance_scale"):
            if key not in meta:
                raise ValueError(f"expected the explanation's metadata to record the kernel's {key}, got {sorted(meta)}")
        kernel = mask_kernel_weights(extra, float(meta["kernel_width"]), reference="ones",
                                     distance_scale=float(meta["distance_scale"]))
        intercept = torch.tensor([explanation.intercept[t] for t in chosen], dtype=weights.dtype, device=device)
        y = extra_out  # (n_heldout, K): the chosen labels' outputs
        heldout = fidelity(y, extra, weights, intercept, kernel)
    return ExplanationEvaluation(chosen, result, score, heldout, list(explanation.feature_names))


def load_explanation(source: str | os.PathLike | dict | Any, audio: Any = None, lyrics: Any = None) -> Any:
    """An :class:`~torchlime.music.Explanation` (from its JSON) joined with its song's factorizations.

    Give the song's factorizations, built as for the explanation, to evaluate it; their
    feature names must equal the explanation's.

    Args:
        source: a JSON file written by ``Explanation.save_json``, its parsed dict, or an
            :class:`~torchlime.music.Explanation`.
        audio: the song's :class:`~torchlime.music.StemFactorization`, or None.
        lyrics: the song's :class:`~torchlime.music.LyricsFactorization`, or None.

    Returns:
        The explanation, with ``audio_factorization`` and ``lyrics_factorization`` set
        where given (a new object; an ``Explanation`` passed in is not modified).

    Raises:
        ValueError: a missing or unreadable file, not torchlime's schema, or
            factorizations whose features differ from the explanation's.

    Example:
        >>> from torchlime.music import MusicLime, StemFactorization
        >>> audio = StemFactorization(torch.randn(4, 1, 800), sample_rate=8000, num_segments=2)
        >>> model = lambda a: torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)
        >>> exp = MusicLime(model).explain(audio, target=[0], n_samples=50, modality="audio")
        >>> again = load_explanation(exp.to_dict(), audio=audio)
        >>> torch.equal(again.weights, exp.weights)
        True
    """
    from ..music import Explanation

    if isinstance(source, Explanation):
        exp, where = copy.copy(source), "the explanation"
    elif isinstance(source, dict):
        exp, where = Explanation.from_dict(source), "the explanation dict"
    else:
        path = Path(source)
        where = repr(str(path))
        if not path.is_file():
            raise ValueError(f"expected an explanation JSON file, got {where}, which does not exist")
        try:
            exp = Explanation.load_json(path)
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"could not read explanation JSON {where}: {err}") from err
    names, types = list(exp.feature_names), list(exp.feature_types)
    for fac, kind in ((audio, "audio"), (lyrics, "lyrics")):
        if fac is None:
            continue
        want = [n for n, t in zip(names, types) if t == kind]
        have = list(fac.feature_names)
        if want and have != want:
            diff = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
            detail = f" ({have[diff]!r} vs {want[diff]!r})" if diff < min(len(have), len(want)) else ""
            raise ValueError(
                f"expected the {kind} factorization to have the {len(want)} {kind} features of {where}, got "
                f"{len(have)} that differ at position {diff}{detail}"
            )
        if kind == "audio":
            exp.audio_factorization = fac
        else:
            exp.lyrics_factorization = fac
    return exp
