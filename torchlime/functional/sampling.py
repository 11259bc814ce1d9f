"""Perturbation masks in the interpretable space.

Shape glossary: B instances, n perturbation samples, F interpretable features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["bernoulli_masks", "kernel_shap_masks", "check_masks", "check_generator"]


def check_generator(generator: torch.Generator | None, device: torch.device | str) -> None:
    """Raise if ``generator`` cannot draw numbers for tensors on ``device``.

    Args:
        generator: the generator a caller passed, or None.
        device: where the random tensors will live.

    Raises:
        ValueError: the generator lives on another device type than ``device``.
    """
    if generator is None:
        return
    device = torch.device(device)
    if generator.device.type != device.type:
        raise ValueError(
            f"expected a torch.Generator on {device.type} (the input's device), got one on "
            f"{generator.device}; create it with torch.Generator(device={str(device)!r})"
        )


def _check_sizes(n_samples: int, num_features: int) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"expected n_samples >= 2, got {n_samples!r}")
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"expected num_features >= 1, got {num_features!r}")


def bernoulli_masks(
    n_samples: int,
    num_features: int,
    *,
    batch_shape: Sequence[int] = (),
    p: float = 0.5,
    first_row_ones: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw independent Bernoulli(p) masks, as LIME and Captum's ``Lime`` do.

    Args:
        n_samples: n, the number of masks per instance (>= 2).
        num_features: F, the number of interpretable features.
        batch_shape: leading dims, e.g. ``(B,)`` for B instances.
        p: probability that a feature is kept (switched on).
        first_row_ones: force row 0 to all ones (the unperturbed instance), as the
            ``lime`` package does.
        device: where the masks live (default: the generator's device, else CPU).
        dtype: dtype of the masks.
        generator: source of randomness; None uses torch's global RNG.

    Returns:
        Masks of shape ``(*batch_shape, n, F)`` with values in {0, 1}.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> bernoulli_masks(4, 3, first_row_ones=True, generator=g)[0]
        tensor([1., 1., 1.])
    """
    _check_sizes(n_samples, num_features)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"expected 0 <= p <= 1, got {p}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    check_generator(generator, device)
    shape = (*batch_shape, n_samples, num_features)
    probs = torch.full(shape, p, device=device, dtype=torch.float32)
    masks = torch.bernoulli(probs, generator=generator).to(dtype)
    if first_row_ones:
        masks[..., 0, :] = 1
    return masks


def kernel_shap_masks(
    n_samples: int,
    num_features: int,
    *,
    batch_shape: Sequence[int] = (),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw KernelSHAP coalitions with Captum's ``KernelShap`` scheme.

    Row 0 is all ones, row 1 all zeros; every further row first draws a coalition size
    k with ``p(k) = (F - 1) / (k (F - k))`` for k in 1..F-1, then k features uniformly
    (the top-k of a Gaussian vector). Sampling sizes this way is equivalent to weighting
    uniform coalitions by the Shapley kernel, so the rows get weight 1 (and the two
    fixed rows a very large weight, see :func:`torchlime.functional.kernel_shap_weights`).

    Args:
        n_samples: n, rows per instance (>= 2).
        num_features: F (>= 1). With F == 1 every further row is all ones.
        batch_shape: leading dims, e.g. ``(B,)``.
        device: where the masks live.
        dtype: dtype of the masks.
        generator: source of randomness; None uses torch's global RNG.

    Returns:
        Masks of shape ``(*batch_shape, n, F)``.
    """
    _check_sizes(n_samples, num_features)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    check_generator(generator, device)
    lead = (*batch_shape, n_samples - 2)
    rows = int(torch.Size(lead).numel())
    if num_features > 1:
        k = torch.arange(num_features, device=device, dtype=torch.float64)
        probs = (num_features - 1) / (k * (num_features - k))
        probs[0] = 0.0
        sizes = torch.multinomial(
            probs.to(torch.float32).expand(max(rows, 1), -1), 1, replacement=True, generator=generator
        )[:rows]
    else:
        sizes = torch.ones(rows, 1, device=device, dtype=torch.long)
    noise = torch.randn(rows, num_features, device=device, generator=generator)
    rank = noise.argsort(dim=-1, descending=True).argsort(dim=-1)
    drawn = (rank < sizes).to(dtype).reshape(*lead, num_features)
    ones = torch.ones(*batch_shape, 1, num_features, device=device, dtype=dtype)
    return torch.cat([ones, torch.zeros_like(ones), drawn], dim=-2)


def check_masks(
    masks: Tensor,
    num_features: int | None = None,
    *,
    batch_size: int | None = None,
    binary: bool = True,
    name: str = "masks",
) -> Tensor:
    """Validate user-given masks and return them with a batch dim: ``(B, n, F)``.

    Args:
        masks: ``(n, F)`` or ``(B, n, F)``.
        num_features: F expected, if known.
        batch_size: B expected, if known (a 2-D ``masks`` is then broadcast to B).
        binary: require values in {0, 1}.
        name: how the argument is called in error messages.

    Returns:
        The masks as ``(B, n, F)`` (a view where possible).

    Raises:
        TypeError: ``masks`` is not a tensor.
        ValueError: wrong number of dims, wrong F or B, fewer than 2 rows, or
            non-binary values where binary ones are required.
    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(masks).__name__}")
    if masks.dim() not in (2, 3):
        raise ValueError(
            f"expected {name} of shape (n, F) or (B, n, F), got shape {tuple(masks.shape)}"
        )
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
        if batch_size is not None:
            masks = masks.expand(batch_size, -1, -1)
    if batch_size is not None and masks.shape[0] != batch_size:
        raise ValueError(
            f"expected {name} for {batch_size} instances, got shape {tuple(masks.shape)}"
        )
    if num_features is not None and masks.shape[-1] != num_features:
        raise ValueError(
            f"expected {name} with {num_features} features (last dim), got shape "
            f"{tuple(masks.shape)}"
        )
    if masks.shape[-2] < 2:
        raise ValueError(f"expected n_samples >= 2 rows in {name}, got {masks.shape[-2]}")
    if binary:
        bad = (masks != 0) & (masks != 1)
        if bool(bad.any()):
            where = bad.nonzero()[0].tolist()
            value = masks[tuple(where)].item()
            raise ValueError(
                f"expected binary {name} (values 0 or 1), got {value} at index {tuple(where)}"
            )
    return masks
