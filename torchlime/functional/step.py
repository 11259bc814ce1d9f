"""The tensor math of a fixed-size explain step: stem composition.

Shape glossary: B instances, n perturbation samples, F interpretable features, S stems,
G segments, C channels, T audio samples.

Both functions are shape-static (no branch on tensor values, no host sync), so they can
run inside ``torch.compile(fullgraph=True)`` and CUDA graphs, and both are differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


__all__ = ["compose_segments", "even_boundaries"]


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


def compose_segments(
    stems: Tensor,
    masks: Tensor,
    boundaries: Sequence[tuple[int, int]],
    residual: Tensor | None = None,
) -> Tensor:
    """Waveforms of many songs from stems x segments masks: one batched product per segment.

    The batched form of :meth:`torchlime.music.StemFactorization.compose`: feature
    ``g * S + s`` (segment-major, names like ``vocals_T3``) switches stem ``s`` on in
    segment ``g``. Samples outside every segment are silent (or the residual).

    Args:
        stems: ``(..., S, C, T)``, e.g. ``(B, S, C, T)`` for B songs.
        masks: ``(..., n, S * G)`` with leading dims that broadcast with the stems'.
        boundaries: G ``(start, end)`` sample ranges, increasing and non-overlapping.
        residual: ``(..., C, T)`` added to every sample (the mixture minus the stems), or None.

    Returns:
        ``(..., n, C, T)`` in the stems' dtype.

    Raises:
        ValueError: masks without ``S * G`` features, or bad boundaries.

    Example:
        >>> stems = torch.randn(2, 4, 1, 100)  # 2 songs, 4 stems
        >>> masks = torch.ones(2, 3, 8)  # 3 samples each, 4 stems x 2 segments
        >>> out = compose_segments(stems, masks, [(0, 50), (50, 100)])
        >>> out.shape, torch.allclose(out[:, 0], stems.sum(1))
        (torch.Size([2, 3, 1, 100]), True)
    """
    if stems.dim() < 3:
        raise ValueError(f"expected stems of shape (..., S, C, T), got shape {tuple(stems.shape)}")
    S, C, T = stems.shape[-3:]
    G = len(boundaries)
    if masks.dim() < 2 or masks.shape[-1] != S * G:
        raise ValueError(
            f"expected masks of shape (..., n, {S * G}) for {S} stems x {G} segments, got shape "
            f"{tuple(masks.shape)}"
        )
    end = 0
    for g, (a, b) in enumerate(boundaries):
        if not end <= a < b <= T:
            raise ValueError(
                f"expected segment {g} as {end} <= start < end <= {T} (increasing, non-overlapping), got ({a}, {b})"
            )
        end = b
    z = masks.to(stems.dtype)
    n = z.shape[-2]
    lead = torch.broadcast_shapes(stems.shape[:-3], z.shape[:-2])
    pieces = []
    end = 0
    for g, (a, b) in enumerate(boundaries):
        if a > end:
            pieces.append(stems.new_zeros(*lead, n, C, a - end))
        seg = stems[..., a:b].reshape(*stems.shape[:-3], S, C * (b - a))
        part = z[..., g * S : (g + 1) * S] @ seg  # (..., n, C * (b - a))
        pieces.append(part.reshape(*part.shape[:-1], C, b - a).expand(*lead, n, C, b - a))
        end = b
    if end < T:
        pieces.append(stems.new_zeros(*lead, n, C, T - end))
    out = torch.cat(pieces, dim=-1)
    if residual is not None:
        out = out + residual.to(stems.dtype).unsqueeze(-3)
    return out
