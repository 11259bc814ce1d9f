"""Faithfulness: deletion and insertion curves and AOPC, in one chunked batched forward.

Shape glossary: F interpretable features, K targets, L deletion/insertion steps (L <= F),
m mask rows handed to the model, C model output classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int
from ..functional.engine import check_outputs, model_outputs
from ..functional.evaluation import aopc, area_under_curve, check_weights, deletion_masks, insertion_masks
from ..functional.sampling import check_generator

__all__ = ["Faithfulness", "faithfulness"]


class Faithfulness(NamedTuple):
    """Deletion and insertion curves of an explanation and their summaries.

    Step k of a curve is the model output for the explained target with the top-k
    features switched off (deletion, step 0 = the unperturbed input) or with only the
    top-k features switched on (insertion, step 0 = everything off). The ``random_*``
    fields are the same for uniformly random feature orders (the baseline an explanation
    should beat), averaged over the orders; None when no random orders were asked for.
    Shapes are for weights ``(K, F)``; the K dim is absent for weights ``(F,)``.

    Attributes:
        deletion: ``(K, L+1)`` deletion curve (MoRF: most relevant first).
        insertion: ``(K, L+1)`` insertion curve.
        aopc: ``(K,)`` Samek et al.'s AOPC of the deletion curve (higher: more faithful).
        deletion_auc: ``(K,)`` area under the deletion curve, x = k / L (lower: more faithful).
        insertion_auc: ``(K,)`` area under the insertion curve, x = k / L (higher: more faithful).
        random_deletion: ``(K, L+1)`` mean deletion curve over random orders, or None.
        random_insertion: ``(K, L+1)`` mean insertion curve over random orders, or None.
        random_aopc: ``(K,)`` AOPC of ``random_deletion``, or None.
        order: ``(K, F)`` the feature ranking the curves follow (top feature first).
    """

    deletion: Tensor
    insertion: Tensor
    aopc: Tensor
    deletion_auc: Tensor
    insertion_auc: Tensor
    random_deletion: Tensor | None
    random_insertion: Tensor | None
    random_aopc: Tensor | None
    order: Tensor


def plan_faithfulness(
    weights: Tensor, max_k: int | None, absolute: bool, n_random: int, generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The mask rows of a faithfulness evaluation.

    Returns:
        ``(per_target (K, 2, L+1, F), order (K, F), shared (n_random, 2, L+1, F) or None)``:
        deletion then insertion rows per target, and the rows of the random orders
        (which do not depend on the target).
    """
    dtype = weights.dtype if weights.dtype.is_floating_point else torch.float32
    per_target = torch.stack(
        [deletion_masks(weights, max_k, absolute=absolute, dtype=dtype),
         insertion_masks(weights, max_k, absolute=absolute, dtype=dtype)], dim=1,
    )
    key = weights.abs() if absolute else weights
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    shared = None
    if n_random:
        check_generator(generator, weights.device)
        scores = torch.rand(n_random, weights.shape[-1], device=weights.device, generator=generator)
        shared = torch.stack(
            [deletion_masks(scores, max_k, dtype=dtype), insertion_masks(scores, max_k, dtype=dtype)], dim=1
        )
    return per_target, order, shared


def finish_faithfulness(per_target: Tensor, order: Tensor, shared: Tensor | None) -> Faithfulness:
    """Summaries from outputs ``per_target (K, 2, L+1)`` and ``shared (n_random, 2, L+1, K)``."""
    deletion, insertion = per_target[:, 0], per_target[:, 1]
    random_deletion = random_insertion = random_aopc = None
    if shared is not None:
        mean = shared.mean(0)  # (2, L+1, K)
        random_deletion, random_insertion = mean[0].T, mean[1].T
        random_aopc = aopc(random_deletion)
    return Faithfulness(
        deletion, insertion, aopc(deletion), area_under_curve(deletion), area_under_curve(insertion),
        random_deletion, random_insertion, random_aopc, order,
    )


def run_faithfulness(
    forward: Callable[[Tensor], Any],
    weights: Tensor,
    target: int | Sequence[int] | Tensor | None,
    max_k: int | None,
    absolute: bool,
    n_random: int,
    generator: torch.Generator | None,
    batch_size: int,
    validate: bool,
    extra: Tensor | None = None,
) -> tuple[Faithfulness, Tensor | None]:
    """:func:`faithfulness`, plus the target outputs ``(E, K)`` of ``extra (E, F)`` rows in the same forward."""
    if validate:
        check_weights(weights)
    elif not isinstance(weights, Tensor):
        raise TypeError(f"expected weights to be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() not in (1, 2) or weights.shape[-1] < 1:
        raise ValueError(f"expected weights of shape (F,) or (K, F), got shape {tuple(weights.shape)}")
    batch_size = check_int(batch_size, "batch_size", 1)
    n_random = check_int(n_random, "n_random", 0)
    single = weights.dim() == 1
    W = weights.unsqueeze(0) if single else weights
    K, F = W.shape
    if target is not None:
        values = target.tolist() if isinstance(target, Tensor) and target.dim() == 1 else target
        values = values if isinstance(values, (list, tuple)) else [values]
        if len(values) != K:
            raise ValueError(f"expected {K} target(s) (one per row of weights), got {len(values)}: {list(values)}")
        target = [list(values)]  # K targets of the one instance (the masks)
    per_target, order, shared = plan_faithfulness(W, max_k, absolute, n_random, generator)
    steps = per_target.shape[-2]
    blocks = [per_target.reshape(-1, F)]
    if shared is not None:
        blocks.append(shared.reshape(-1, F))
    if extra is not None:
        if extra.dim() != 2 or extra.shape[1] != F:
            raise ValueError(f"expected extra mask rows of shape (E, {F}), got shape {tuple(extra.shape)}")
        blocks.append(extra.to(device=W.device, dtype=per_target.dtype))
    rows = torch.cat(blocks)
    with torch.no_grad():
        run = model_outputs(forward, lambda z: z[0], rows.unsqueeze(0), target=target, default_target="all",
                            perturbations_per_eval=batch_size)
    cols = run.outputs[0]  # (M, K)
    if target is None and cols.shape[1] != K:
        raise ValueError(
            f"expected forward to return (m,) or (m, K) = (m, {K}) outputs when no target is given (column k "
            f"goes with row k of the weights), got {cols.shape[1]} columns"
        )
    if validate:
        check_outputs(run.outputs, names=["the masks"])
    n_pt = K * 2 * steps
    ar = torch.arange(K, device=cols.device)
    pt = cols[:n_pt].reshape(K, 2, steps, K)[ar, :, :, ar]  # (K, 2, L+1): target k's own column
    sh = None
    if shared is not None:
        sh = cols[n_pt : n_pt + shared.shape[0] * 2 * steps].reshape(shared.shape[0], 2, steps, K)
    result = finish_faithfulness(pt, order, sh)
    if single:
        result = Faithfulness(*(t.squeeze(0) if t is not None else None for t in result))
    extra_out = cols[rows.shape[0] - extra.shape[0]:] if extra is not None else None
    return result, extra_out


def faithfulness(
    forward: Callable[[Tensor], Any],
    weights: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    *,
    max_k: int | None = None,
    absolute: bool = False,
    n_random: int = 0,
    generator: torch.Generator | None = None,
    batch_size: int = 100,
    validate: bool = True,
) -> Faithfulness:
    """Deletion and insertion curves, AOPC and curve areas of an explanation.

    The top features are the highest weights for each target (positive evidence first,
    ties by the lower feature index; ``absolute=True`` ranks by ``|weight|``). For every
    target, the L+1 deletion masks (top-k switched off, k = 0..L) and the L+1 insertion
    masks (only the top-k on) are stacked with the random orders' masks into one
    ``(m, F)`` batch and handed to ``forward`` ``batch_size`` rows at a time, without
    autograd. AOPC follows Samek et al. 2017 (mean over k = 0..L of ``f(x) - f(x with the
    top-k removed)``); the areas use x = k / L (see
    :func:`torchlime.functional.area_under_curve`).

    Args:
        forward: maps masks ``(m, F)`` (1 keeps a feature, 0 removes it) to model outputs
            ``(m, C)``, or ``(m,)`` / ``(m, K)`` with ``target=None``.
        weights: ``(F,)`` or ``(K, F)`` explanation weights (one row per target).
        target: the output column of each row of ``weights`` (an int or K ints); None
            takes the outputs' columns in order.
        max_k: L, the last step (1 <= L <= F; default F).
        absolute: rank features by ``|weight|``.
        n_random: random feature orders to evaluate as a baseline (0: none).
        generator: for the random orders, on the weights' device.
        batch_size: mask rows per ``forward`` call.
        validate: check the weights and outputs for NaN/inf (synchronises with the host).

    Returns:
        :class:`Faithfulness`.

    Raises:
        ValueError: NaN/inf weights or outputs, weights not ``(F,)``/``(K, F)``, a wrong
            number of targets, a target out of range, ``max_k`` outside 1..F, a forward
            returning the wrong shape, ``batch_size < 1`` or ``n_random < 0``.

    Example:
        >>> w_true = torch.tensor([0.1, 2.0, -1.0, 0.5])
        >>> result = faithfulness(lambda z: z @ w_true, w_true)
        >>> result.deletion
        tensor([ 1.6000, -0.4000, -0.9000, -1.0000,  0.0000])
        >>> result.aopc
        tensor(1.7400)
    """
    return run_faithfulness(forward, weights, target, max_k, absolute, n_random, generator, batch_size, validate)[0]
