"""Stems x segments: the cut of a song into segments, the waveforms of masks, the feature names.

Shape glossary: n perturbation samples, F = S * G interpretable features, S stems,
G segments, C channels, T audio samples.

Feature ``g * S + s`` (segment-major, as bach-or-bot's MusicLIME orders them) switches
stem ``s`` on in segment ``g``; it is named ``<stem>_T<g>`` (:func:`segment_feature_names`,
the one place that builds the names; :func:`feature_stem_segment` and
:func:`segment_layout` read them back).
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "even_boundaries",
    "check_boundaries",
    "compose_segments",
    "segment_feature_names",
    "feature_stem_segment",
    "segment_layout",
]


def even_boundaries(num_samples: int, num_segments: int) -> list[tuple[int, int]]:
    """``num_segments`` even ``(start, end)`` ranges covering ``num_samples`` samples.

    The cut ``StemFactorization`` makes: edge ``g`` is ``round(g * T / G)``.

    Args:
        num_samples: T.
        num_segments: G (1 <= G <= T).

    Returns:
        G ``(start, end)`` pairs.

    Raises:
        ValueError: ``num_segments < 1`` or more segments than samples.

    Example:
        >>> even_boundaries(10, 3)
        [(0, 3), (3, 7), (7, 10)]
    """
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"expected num_segments >= 1, got {num_segments!r}")
    if num_samples < num_segments:
        raise ValueError(f"expected audio of at least {num_segments} samples (one per segment), got {num_samples}")
    edges = [round(g * num_samples / num_segments) for g in range(num_segments + 1)]
    return list(zip(edges[:-1], edges[1:]))


def check_boundaries(boundaries: Sequence[tuple[int, int]], num_samples: int) -> list[tuple[int, int]]:
    """``boundaries`` as a list of int pairs, or the ValueError naming the segment that is wrong.

    Segments are increasing and non-overlapping ``[start, end)`` sample ranges inside
    ``[0, T)``; they may leave gaps (silent, or residual-only, in every composed sample).

    Args:
        boundaries: G ``(start, end)`` pairs (Python or numpy integers).
        num_samples: T.

    Returns:
        G ``(start, end)`` tuples of ints.

    Raises:
        ValueError: no segments, a pair that is not two integers, or a segment out of order.

    Example:
        >>> check_boundaries([(0, 5), (7, 10)], 10)
        [(0, 5), (7, 10)]
        >>> check_boundaries([(0, 5), (3, 10)], 10)
        Traceback (most recent call last):
        ...
        ValueError: expected segment 1 as 5 <= start < end <= 10 (increasing, non-overlapping), got (3, 10)
    """
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
        raise ValueError(f"expected boundaries as a sequence of (start, end) pairs, got {type(boundaries).__name__}")
    if not boundaries:
        raise ValueError("expected at least one segment, got no boundaries")
    out: list[tuple[int, int]] = []
    end = 0
    for g, pair in enumerate(boundaries):
        try:
            a, b = pair
            if isinstance(a, bool) or isinstance(b, bool):
                raise TypeError
            a, b = operator.index(a), operator.index(b)
        except (TypeError, ValueError):
            raise ValueError(f"expected segment {g} as a (start, end) pair of integers, got {pair!r}") from None
        if not end <= a < b <= num_samples:
            raise ValueError(
                f"expected segment {g} as {end} <= start < end <= {num_samples} (increasing, non-overlapping), "
                f"got ({a}, {b})"
            )
        out.append((a, b))
        end = b
    return out


def compose_segments(
    stems: Tensor,
    masks: Tensor,
    boundaries: Sequence[tuple[int, int]],
    residual: Tensor | None = None,
    *,
    out: Tensor | None = None,
) -> Tensor:
    """Waveforms from stems x segments masks: the switched-on stems of every segment, summed.

    Feature ``g * S + s`` switches stem ``s`` on in segment ``g``; samples outside every
    segment are silent (or the residual). One product ``(n, S) @ (S, C * T_g)`` per
    segment, never the dense ``(n, S * G) @ (S * G, T)`` (G times the work).

    Two ways to the same numbers, chosen per call:

    - in place (the default): every run of adjacent equal-length segments is one batched
      product ``(k, n, S) @ (k, S, L)`` written straight into strided views of ``out`` (or
      of one fresh uninitialised tensor); only gaps are zeroed, so each output sample is
      written once. Give ``out`` (a buffer reused across calls) to spare a fresh
      allocation's page faults on CPU.
    - shape-static (under ``torch.compile`` or when autograd records: stems, masks or
      residual require grad): one ``matmul`` per segment and a ``cat``, differentiable
      and traceable with ``fullgraph=True``; with ``out`` the result is copied into it.

    No host sync on either path: the same code runs on CPU and CUDA.

    Args:
        stems: ``(..., S, C, T)`` floating point, e.g. ``(S, C, T)`` for one song or
            ``(B, S, C, T)`` for B songs.
        masks: ``(..., n, S * G)`` whose leading dims broadcast with the stems'.
        boundaries: G ``(start, end)`` sample ranges, increasing and non-overlapping
            (see :func:`check_boundaries`).
        residual: ``(..., C, T)`` added to every sample (the mixture minus the stems), or None.
        out: a contiguous ``(..., n, C, T)`` tensor of the stems' dtype and device to write
            into, or None.

    Returns:
        ``(..., n, C, T)`` in the stems' dtype (``out`` when given).

    Raises:
        TypeError: stems that are not floating point (scale integer PCM with
            :func:`torchlime.functional.pcm_to_float` first).
        ValueError: masks without ``S * G`` features, bad boundaries, a residual or ``out``
            that does not fit, leading dims that do not broadcast.

    Example:
        >>> stems = torch.randn(2, 4, 1, 100)  # 2 songs, 4 stems
        >>> masks = torch.ones(2, 3, 8)  # 3 samples each, 4 stems x 2 segments
        >>> out = compose_segments(stems, masks, [(0, 50), (50, 100)])
        >>> out.shape, torch.allclose(out[:, 0], stems.sum(1))
        (torch.Size([2, 3, 1, 100]), True)
    """
    if not isinstance(stems, Tensor) or stems.dim() < 3:
        raise ValueError(f"expected stems of shape (..., S, C, T), got shape {tuple(getattr(stems, 'shape', ()))}")
    if not stems.dtype.is_floating_point:
        raise TypeError(
            f"expected floating-point stems, got {stems.dtype} (scale integer PCM with "
            "torchlime.functional.pcm_to_float first)"
        )
    S, C, T = stems.shape[-3:]
    bounds, runs, gaps = _plan(boundaries, T)
    G = len(bounds)
    if not isinstance(masks, Tensor) or masks.dim() < 2 or masks.shape[-1] != S * G:
        raise ValueError(
            f"expected masks of shape (..., n, {S * G}) for {S} stems x {G} segments, got shape "
            f"{tuple(getattr(masks, 'shape', ()))}"
        )
    if residual is not None and (residual.dim() < 2 or tuple(residual.shape[-2:]) != (C, T)):
        raise ValueError(f"expected residual of shape (..., {C}, {T}), got shape {tuple(residual.shape)}")
    n = masks.shape[-2]
    leads = [stems.shape[:-3], masks.shape[:-2], *(() if residual is None else (residual.shape[:-2],))]
    try:
        lead = leads[0] if all(d == leads[0] for d in leads) else torch.broadcast_shapes(*leads)
    except RuntimeError as err:
        raise ValueError(
            f"expected the leading dims of stems {tuple(stems.shape[:-3])}, masks {tuple(masks.shape[:-2])}"
            + ("" if residual is None else f" and residual {tuple(residual.shape[:-2])}")
            + " to broadcast"
        ) from err
    shape = (*lead, n, C, T)
    if out is not None and (
        tuple(out.shape) != shape or out.dtype != stems.dtype or out.device != stems.device or not out.is_contiguous()
    ):
        raise ValueError(
            f"expected out as a contiguous {shape} {stems.dtype} tensor on {stems.device}, "
            f"got {tuple(out.shape)} {out.dtype} on {out.device}" + ("" if out.is_contiguous() else ", not contiguous")
        )
    z = masks.to(device=stems.device, dtype=stems.dtype)
    if residual is not None:
        residual = residual.to(device=stems.device, dtype=stems.dtype)
    if torch.compiler.is_compiling() or (
        torch.is_grad_enabled()
        and (stems.requires_grad or z.requires_grad or (residual is not None and residual.requires_grad))
    ):
        composed = _compose_traced(stems, z, bounds, residual, lead)
        return composed if out is None else out.copy_(composed)
    if out is None:
        out = stems.new_empty(shape)
    if not lead:
        _compose_song(out, stems, z, runs, gaps, residual)
        return out
    stems = stems.expand(*lead, S, C, T)
    z = z.expand(*lead, n, S * G)
    residual = None if residual is None else residual.expand(*lead, C, T)
    for idx in itertools.product(*(range(d) for d in lead)):
        _compose_song(out[idx], stems[idx], z[idx], runs, gaps, None if residual is None else residual[idx])
    return out


def _plan(
    boundaries: Sequence[tuple[int, int]], num_samples: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    """Checked boundaries, their runs and gaps: remembered per (boundaries, T), since a
    factorization composes every chunk over the same cut."""
    key = None
    if isinstance(boundaries, (list, tuple)) and not torch.compiler.is_compiling():  # dynamo traces, no cache
        try:
            key = tuple((a, b) for a, b in boundaries)
        except (TypeError, ValueError):
            pass
        if key is not None and not all(type(a) is int and type(b) is int for a, b in key):
            key = None  # only exact ints share the cache (1.0 and True hash like 1); the rest is checked afresh
    if key is None:
        bounds = check_boundaries(boundaries, num_samples)
        return bounds, _runs(bounds), _gaps(bounds, num_samples)
    return _plan_cached(key, num_samples)


@functools.lru_cache(maxsize=64)
def _plan_cached(
    boundaries: tuple[tuple[int, int], ...], num_samples: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    bounds = check_boundaries(list(boundaries), num_samples)
    return bounds, _runs(bounds), _gaps(bounds, num_samples)


def _compose_traced(
    stems: Tensor, z: Tensor, bounds: list[tuple[int, int]], residual: Tensor | None, lead: torch.Size
) -> Tensor:
    """The shape-static path: per-segment ``matmul`` and ``cat`` (autograd, ``torch.compile``)."""
    S, C, T = stems.shape[-3:]
    n = z.shape[-2]
    pieces = []
    end = 0
    for g, (a, b) in enumerate(bounds):
        if a > end:
            pieces.append(stems.new_zeros(*lead, n, C, a - end))
        seg = stems[..., a:b].reshape(*stems.shape[:-3], S, C * (b - a))
        part = z[..., g * S : (g + 1) * S] @ seg  # (..., n, C * (b - a))
        pieces.append(part.reshape(*part.shape[:-1], C, b - a).expand(*lead, n, C, b - a))
        end = b
    if end < T:
        pieces.append(stems.new_zeros(*lead, n, C, T - end))
    composed = torch.cat(pieces, dim=-1)
    if residual is not None:
        composed = composed + residual.unsqueeze(-3)
    return composed


def _compose_song(
    out: Tensor,
    stems: Tensor,
    z: Tensor,
    runs: list[tuple[int, int, int, int]],
    gaps: list[tuple[int, int]],
    residual: Tensor | None,
) -> None:
    """The in-place path for one song: ``out`` ``(n, C, T)``, stems ``(S, C, T)``, z ``(n, S * G)``.

    Each run of k adjacent segments of length L is ``(k, n, S) @ (k, S, L)`` written into
    the ``(k, n, L)`` view of the output (strides ``(L, C * T, 1)``), one batched product per
    channel; when the channels and segments merge into one batch dim (mono, or a run that
    covers the whole song) one product does every channel.
    """
    n, C, T = out.shape
    S = stems.shape[0]
    zg = z.reshape(n, -1, S)  # (n, G, S)
    if residual is not None:
        out.copy_(residual.expand(n, C, T))
    else:
        for a, b in gaps:  # samples outside every segment are silent
            out[..., a:b].zero_()
    for g0, g1, a, L in runs:
        k, span = g1 - g0, (g1 - g0) * L
        zk = zg[:, g0:g1].transpose(0, 1)  # (k, n, S)
        if C == 1 or span == T:
            parts = [(zk if C == 1 else zk.repeat(C, 1, 1),
                      stems[:, :, a : a + span].reshape(S, C * k, L).transpose(0, 1),
                      out[:, :, a : a + span].view(n, C * k, L).transpose(0, 1))]
        else:
            parts = [(zk,
                      stems[:, c, a : a + span].reshape(S, k, L).transpose(0, 1),
                      out[:, c, a : a + span].view(n, k, L).transpose(0, 1)) for c in range(C)]
        for zb, xb, dst in parts:
            if residual is not None:
                dst.baddbmm_(zb, xb)
            else:
                torch.bmm(zb, xb, out=dst)


def _runs(bounds: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Runs ``(g0, g1, start, length)`` of adjacent segments of one length."""
    runs: list[tuple[int, int, int, int]] = []
    for g, (a, b) in enumerate(bounds):
        if runs and runs[-1][3] == b - a and runs[-1][2] + (g - runs[-1][0]) * (b - a) == a:
            runs[-1] = (runs[-1][0], g + 1, runs[-1][2], b - a)
        else:
            runs.append((g, g + 1, a, b - a))
    return runs


def _gaps(bounds: list[tuple[int, int]], num_samples: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges no segment covers."""
    edges = [0, *itertools.chain.from_iterable(bounds), num_samples]
    return [(a, b) for a, b in zip(edges[::2], edges[1::2]) if a < b]


# -- feature names ------------------------------------------------------------------------------


def _name(stem: str, segment: int) -> str:
    return f"{stem}_T{segment}"


def segment_feature_names(stem_names: Sequence[str], num_segments: int) -> list[str]:
    """The S * G feature names, segment-major: ``<stem>_T<g>`` is feature ``g * S + s``.

    Args:
        stem_names: the S stem names.
        num_segments: G.

    Returns:
        S * G names.

    Example:
        >>> segment_feature_names(["vocals", "drums"], 2)
        ['vocals_T0', 'drums_T0', 'vocals_T1', 'drums_T1']
    """
    return [_name(str(s), g) for g in range(num_segments) for s in stem_names]


def feature_stem_segment(index: int, num_stems: int) -> tuple[int, int]:
    """The ``(stem, segment)`` indices of feature ``index`` (``index = g * S + s``).

    Args:
        index: a feature index in ``[0, S * G)``.
        num_stems: S.

    Returns:
        ``(s, g)``.

    Example:
        >>> feature_stem_segment(5, 4)  # drums_T1 of vocals, drums, bass, other
        (1, 1)
    """
    g, s = divmod(index, num_stems)
    return s, g


def segment_layout(feature_names: Sequence[str]) -> tuple[list[str], int]:
    """The stems and G of feature names that start with what :func:`segment_feature_names` builds.

    The first S names (those of segment 0) give the stems; G counts the segments whose S
    names follow in order. Names after them (a multimodal explanation's lyric lines, say)
    are not stem features.

    Args:
        feature_names: F names, the stems x segments ones first.

    Returns:
        ``(stem_names, G)``: the first ``S * G`` names equal
        ``segment_feature_names(stem_names, G)``; ``([], 0)`` when the names do not start so.

    Example:
        >>> segment_layout(["vocals_T0", "drums_T0", "vocals_T1", "drums_T1", "a lyric line"])
        (['vocals', 'drums'], 2)
    """
    names = [str(f) for f in feature_names]
    suffix = _name("", 0)
    stems: list[str] = []
    for name in names:
        if not name.endswith(suffix):
            break
        stems.append(name[: -len(suffix)])
    S = len(stems)
    if S == 0:
        return [], 0
    G = 0
    while names[G * S : (G + 1) * S] == [_name(s, G) for s in stems]:
        G += 1
    return stems, G
