"""The LIME loop, written once: model outputs over masks chunk by chunk, targets, checks, fit.

Shape glossary: B instances, n perturbation samples, c samples per forward chunk,
F interpretable features, K targets, D model output values per row.

Every explainer of torchlime (``LimeBase``/``Lime``/``KernelShap``, ``MusicLime``,
``training.ExplainStep`` and ``evaluation``) is a thin layer over these functions: it
draws or receives masks ``(B, n, F)``, says how masks become model inputs (``transform``),
how samples are weighted and which surrogate is fitted, and this module does the rest:

1. :func:`model_outputs`: ``transform`` and ``forward_func`` on ``perturbations_per_eval``
   samples of every instance per call (rows instance-major), target selection with one
   parser (:func:`parse_target`);
2. kernel weights for the whole batch (given, or computed per chunk from the model inputs);
3. one check of what the fit gets (:func:`check_explained`: outputs, kernel weights and
   masks, one host sync), the only one of an explainer's call: the explainers tell
   torchlime's fits it was done (``checked=True``), so they do not check again;
4. one batched surrogate fit for every instance and target (``fit(X, y, sample_weight)``).

With ``validate=False`` and tensor targets nothing here synchronises with the host, so the
loop runs inside ``torch.compile(fullgraph=True)`` and CUDA graphs. Phases are marked with
``torch.profiler.record_function`` ranges named ``torchlime.transform``,
``torchlime.forward``, ``torchlime.kernel`` and ``torchlime.fit``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.profiler import record_function

from .surrogate import SurrogateFit

__all__ = [
    "Target",
    "parse_target",
    "rows_output",
    "select_targets",
    "check_outputs",
    "check_sample_weight",
    "check_explained",
    "ModelOutputs",
    "model_outputs",
    "Explained",
    "explain_masks",
    "default_memory_budget",
    "rows_per_chunk",
    "Budget",
    "stable_top_k",
    "budget_met",
    "explain_auto",
    "PHASES",
]

#: The ``record_function`` ranges the engine marks, in the order they run per chunk.
PHASES = ("torchlime.transform", "torchlime.forward", "torchlime.kernel", "torchlime.fit")


class Target(NamedTuple):
    """Which model output values an explanation fits, per instance.

    Attributes:
        index: ``(B, K)`` long flat indices into each row's output (flattened); None when
            each row's output is the one value to explain.
        multi: whether K is a dim of the results (several targets per instance) or is
            dropped (one target per instance, Captum's layout).
    """

    index: Tensor | None
    multi: bool


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _flat(idx: Any, out_shape: tuple[int, ...], check: bool) -> int:
    """A target (an int, or a tuple for outputs of several dims) as a flat column."""
    parts = tuple(idx) if isinstance(idx, tuple) else (idx,)
    if not all(_is_int(i) for i in parts):
        raise ValueError(f"expected integer class indices as target, got {idx!r}")
    if check and (len(parts) != len(out_shape) or any(not -d <= i < d for i, d in zip(parts, out_shape))):
        what = parts[0] if len(parts) == 1 else parts
        classes = f" ({out_shape[0]} classes)" if len(out_shape) == 1 else ""
        raise ValueError(
            f"target {what} is out of range for forward output with per-example shape {out_shape}{classes}"
        )
    pos = 0
    for i, d in zip(parts, out_shape):
        pos = pos * d + (int(i) % d)
    return pos


def _per_instance(values: list, batch_size: int) -> list:
    if len(values) == batch_size:
        return values
    if len(values) == 1:
        return values * batch_size
    raise ValueError(f"expected {batch_size} targets (one per instance), got {len(values)}")


def parse_target(
    target: Any,
    batch_size: int,
    out_shape: Sequence[int],
    *,
    default: str = "scalar",
    device: torch.device | str | None = None,
) -> Target:
    """The one target parser of every explainer.

    Forms (B = ``batch_size``; a per-row output of shape ``out_shape``):

    - None: with ``default="scalar"`` (Captum) each row's output must be one value, which
      is explained; with ``default="all"`` every output value is explained (K of them).
    - ``"all"``: every output value, K = ``prod(out_shape)``.
    - an int, or a tuple of ints for outputs of several dims (Captum): the same target for
      every instance.
    - a list (or 1-D integer tensor) of B such targets, one per instance (a list of one
      is applied to all).
    - a list of B lists (or one list applied to every instance), or a ``(B, K)`` integer
      tensor: K targets per instance; the results keep a K dim.

    Integer tensors on the device are used there without a host sync and unchecked (so
    an explain step stays sync-free); every other form is checked against ``out_shape``.

    Args:
        target: as above.
        batch_size: B.
        out_shape: the per-row output shape of the model (``(classes,)`` for a classifier).
        default: what None means: "scalar" or "all".
        device: where the index tensor goes.

    Returns:
        :class:`Target`.

    Raises:
        ValueError: a target that is not made of integers (a float tensor, say), out of
            range, or as many targets as neither 1 nor B.

    Example:
        >>> parse_target([[0, 2]], 3, (4,)).index
        tensor([[0, 2],
                [0, 2],
                [0, 2]])
        >>> parse_target(torch.tensor([0.7, 1.2]), 2, (3,))
        Traceback (most recent call last):
        ...
        ValueError: expected integer class indices as target, got a torch.float32 tensor
    """
    out_shape = tuple(int(d) for d in out_shape)
    size = math.prod(out_shape)
    if target is None and default == "scalar":
        return Target(None, False)
    if target is None or (isinstance(target, str) and target == "all"):
        index = torch.arange(size, device=device).expand(batch_size, size)
        return Target(index, True)
    if isinstance(target, str):
        raise ValueError(f"expected target as class indices or 'all', got {target!r}")
    if isinstance(target, Tensor):
        if target.dtype.is_floating_point or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"expected integer class indices as target, got a {target.dtype} tensor")
        if target.dim() > 2:
            raise ValueError(f"expected target of at most 2 dims, got shape {tuple(target.shape)}")
        if target.dim() == 0:
            target = target.reshape(1)
        if target.dim() == 1 and batch_size == 1 and target.shape[0] != 1:
            raise ValueError(
                f"expected one target for 1 instance, got {target.shape[0]}; pass a (B, K) tensor for "
                f"several targets per instance"
            )
        multi = target.dim() == 2
        rows = target.reshape(target.shape[0], -1)
        if rows.shape[0] not in (1, batch_size):
            raise ValueError(f"expected {batch_size} targets (one per instance), got {rows.shape[0]}")
        if len(out_shape) != 1:
            raise ValueError(
                f"expected target as tuples for a forward output with per-example shape {out_shape}, "
                f"got a tensor"
            )
        index = rows.to(device=device if device is not None else rows.device, dtype=torch.long)
        index = torch.remainder(index, max(size, 1)).expand(batch_size, rows.shape[1])
        return Target(index, multi)
    if _is_int(target) or isinstance(target, tuple):
        flat = [[_flat(target, out_shape, True)]] * batch_size
        return Target(torch.tensor(flat, device=device, dtype=torch.long), False)
    if isinstance(target, list):
        if target and all(isinstance(t, (list, Tensor)) for t in target):
            rows = [list(t.tolist()) if isinstance(t, Tensor) else list(t) for t in _per_instance(target, batch_size)]
            if len({len(r) for r in rows}) > 1:
                raise ValueError(f"expected the same number of targets for every instance, got {[len(r) for r in rows]}")
            if not rows[0]:
                raise ValueError("expected at least one target, got none")
            flat = [[_flat(t, out_shape, True) for t in row] for row in rows]
            return Target(torch.tensor(flat, device=device, dtype=torch.long), True)
        flat = [[_flat(t, out_shape, True)] for t in _per_instance(target, batch_size)]
        return Target(torch.tensor(flat, device=device, dtype=torch.long), False)
    raise TypeError(f"expected target as int, tuple, list or tensor, got {type(target).__name__}")


def rows_output(out: Any, rows: int, device: torch.device | str | None = None) -> Tensor:
    """A model's output as a real tensor with one entry per row: checks the row count.

    Args:
        out: what ``forward_func`` returned (a tensor, or array-like).
        rows: how many model inputs it was given.
        device: where a non-tensor output goes.

    Returns:
        ``(rows, *out_shape)`` floating tensor.

    Raises:
        TypeError: None, a tuple of outputs, or a complex output.
        ValueError: not one output per row.
    """
    if out is None or isinstance(out, (tuple, dict)):
        got = "None" if out is None else type(out).__name__
        raise TypeError(
            f"expected forward_func to return a tensor with one output per perturbed input ({rows} rows), "
            f"got {got}"
        )
    if not isinstance(out, Tensor):
        import numpy as np

        out = torch.as_tensor(np.asarray(out), device=device)
    if out.is_complex():
        raise TypeError(
            f"expected forward_func to return real values, got a {out.dtype} tensor (explain its real part, "
            f"magnitude or phase explicitly)"
        )
    if out.dim() == 0 and rows == 1:  # one scalar for one row (Captum: one output per batch)
        out = out.reshape(1)
    if out.dim() == 0 or out.shape[0] != rows:
        raise ValueError(
            f"expected forward_func to return one output per perturbed input ({rows} rows), got shape "
            f"{tuple(out.shape)}"
        )
    return out if out.dtype.is_floating_point else out.float()


def select_targets(out: Tensor, target: Target, batch_size: int, c: int) -> Tensor:
    """Model outputs of a chunk ``(B * c, ...)`` as ``(B, c, K)``, targets selected.

    Raises:
        ValueError: no target given but the output is not one scalar per row.
    """
    rows = batch_size * c
    if target.index is None:
        if out.numel() != rows:
            raise ValueError(
                f"expected forward_func to return one scalar per perturbed input ({rows} values) when no "
                f"target is given, got shape {tuple(out.shape)}"
            )
        # A copy: the output may be a view of a model input whose buffer the next chunk reuses.
        return out.reshape(batch_size, c, 1).clone()
    flat = out.reshape(batch_size, c, -1)
    index = target.index.to(out.device)
    return flat.gather(2, index.unsqueeze(1).expand(batch_size, c, index.shape[1]))


def check_explained(
    outputs: Tensor | None = None,
    sample_weight: Tensor | None = None,
    masks: Tensor | None = None,
    names: Sequence[str] | None = None,
) -> None:
    """The engine's input check of a fit, in one host sync: outputs, kernel weights, masks.

    Raises, in this order, on NaN or inf model outputs; NaN, inf or negative kernel
    weights; an instance whose kernel weights are all zero; NaN or inf masks. The flags of
    all of them are read on the host together (one sync when all is well); the places are
    looked up only to name them. A fit given data that passed (the explainers pass
    ``checked=True`` to :func:`torchlime.models.fit_model`) need not check them again.

    Args:
        outputs: ``(B, n, K)`` model outputs, or None.
        sample_weight: ``(B, n)`` kernel weights, or None.
        masks: ``(B, n, F)`` the design, or None.
        names: what to call instance b in the messages (a song id, say); default "instance b".

    Raises:
        ValueError: naming up to 10 (instance, sample) pairs, or the instances.

    Example:
        >>> check_explained(torch.zeros(2, 4, 1), torch.ones(2, 4), torch.ones(2, 4, 3))
        >>> check_explained(sample_weight=torch.tensor([[1.0, 0.5], [0.0, 0.0]]), names=["song a", "song b"])
        Traceback (most recent call last):
        ...
        ValueError: all kernel weights are zero for song b: the kernel width is too small for these distances
    """
    bad_out = ~torch.isfinite(outputs).all(-1) if outputs is not None else None  # (B, n)
    bad_w = ~torch.isfinite(sample_weight) | (sample_weight < 0) if sample_weight is not None else None
    zero = (sample_weight == 0).all(-1) if sample_weight is not None else None  # (B,)
    bad_z = None
    if masks is not None and masks.dtype.is_floating_point and masks.shape[-1]:
        # per-row min and max (NaN propagates): no (B, n, F) bool copy of the masks, whose
        # peak would count at n = 10^7
        lo, hi = torch.aminmax(masks, dim=-1)
        bad_z = ~(torch.isfinite(lo) & torch.isfinite(hi))
    checks = [c for c in (bad_out, bad_w, zero, bad_z) if c is not None]
    # One read of one flag (``bool``, which profilers count as a scalar read) when all is well.
    if not checks or not bool(torch.stack([c.any() for c in checks]).any()):
        return
    label = (lambda b: names[b]) if names is not None else (lambda b: f"instance {b}")
    if bad_out is not None and bool(bad_out.any()):
        where = bad_out.nonzero().tolist()
        shown = ", ".join(f"{label(b)} sample {s}" for b, s in where[:10])
        more = f" and {len(where) - 10} more" if len(where) > 10 else ""
        raise ValueError(f"forward_func returned NaN or inf for {shown}{more}")
    if bad_w is not None and bool(bad_w.any()):
        where = bad_w.nonzero().tolist()[:10]
        raise ValueError(
            f"expected finite, non-negative kernel weights, got bad ones at (instance, sample) {where}"
        )
    if zero is not None and bool(zero.any()):
        which = [label(b) for b in zero.nonzero().flatten().tolist()]
        raise ValueError(
            f"all kernel weights are zero for {', '.join(which)}: the kernel width is too small for these distances"
        )
    where = bad_z.nonzero().tolist()[:10]
    raise ValueError(f"expected finite masks, got NaN or inf at (instance, sample) {where}")


def check_outputs(outputs: Tensor, names: Sequence[str] | None = None) -> None:
    """Raise if the model returned NaN or inf (one host sync): :func:`check_explained` of the outputs.

    Args:
        outputs: ``(B, n, K)``.
        names: what to call instance b in the message (a song id, say); default "instance b".

    Raises:
        ValueError: naming up to 10 (instance, sample) pairs.
    """
    check_explained(outputs, names=names)


def check_sample_weight(sample_weight: Tensor, names: Sequence[str] | None = None) -> None:
    """Raise on NaN, inf or negative kernel weights, or all-zero weights for an instance
    (one host sync): :func:`check_explained` of the weights.

    Args:
        sample_weight: ``(B, n)``.
        names: what to call instance b in the message.

    Raises:
        ValueError: which instances and samples.
    """
    check_explained(sample_weight=sample_weight, names=names)


class ModelOutputs(NamedTuple):
    """What :func:`model_outputs` returns.

    Attributes:
        outputs: ``(B, n, K)`` the explained output values of every sample.
        sample_weight: ``(B, n)`` kernel weights computed per chunk, or None when
            ``chunk_weight`` was not given.
        first: ``(B, *out_shape)`` the whole model output of sample 0 of every instance
            (the unperturbed instance when row 0 is all ones).
        target: the parsed :class:`Target`.
    """

    outputs: Tensor
    sample_weight: Tensor | None
    first: Tensor
    target: Target


def model_outputs(
    forward_func: Callable[..., Any],
    transform: Callable[[Tensor], Any],
    masks: Tensor,
    *,
    target: Any = None,
    default_target: str = "scalar",
    perturbations_per_eval: int | None = None,
    chunk_weight: Callable[[Tensor, Any], Tensor] | None = None,
    finish: Callable[[Any, int], Tensor] | None = None,
    progress: Callable[[], None] | None = None,
) -> ModelOutputs:
    """Run the model on every mask, ``perturbations_per_eval`` samples per instance per call.

    Args:
        forward_func: ``forward_func(*model_inputs)`` returns one output per row.
        transform: ``transform(masks (B, c, F))`` returns the model inputs (a tensor or a
            tuple of them) of the ``B * c`` samples, rows instance-major (row ``b * c + s``).
        masks: ``(B, n, F)``.
        target: see :func:`parse_target` (parsed against the first chunk's output shape), or
            a function of the first sample's whole output ``(B, *out_shape)`` that returns
            one (the predicted class, say).
        default_target: what a None target means ("scalar" or "all").
        perturbations_per_eval: samples per instance per forward call (None: all n).
        chunk_weight: ``chunk_weight(masks (B, c, F), model_inputs) -> (B, c)`` kernel weights
            that need the model inputs (Captum's similarity functions), or None.
        finish: ``finish(raw_output, rows) -> (rows, ...)`` turns what ``forward_func``
            returned into a tensor (default: :func:`rows_output`).
        progress: called once per forward call.

    Returns:
        :class:`ModelOutputs`.

    Raises:
        ValueError/TypeError: from :func:`rows_output`, :func:`parse_target` and
            :func:`select_targets`, or weights of the wrong size.
    """
    B, n, _ = masks.shape
    chunk = n if perturbations_per_eval is None else perturbations_per_eval
    finish = finish if finish is not None else (lambda out, rows: rows_output(out, rows, masks.device))
    outs, weights = [], []
    first = parsed = None
    for start in range(0, n, chunk):
        zc = masks[:, start : start + chunk]
        c = zc.shape[1]
        with record_function("torchlime.transform"):
            inputs = transform(zc)
        with record_function("torchlime.forward"):
            out = finish(forward_func(*inputs) if isinstance(inputs, tuple) else forward_func(inputs), B * c)
        if parsed is None:
            per_row = tuple(out.shape[1:]) if out.dim() > 1 else (1,)
            first = out.reshape(B, c, *out.shape[1:])[:, 0].clone()
            wanted = target(first) if callable(target) else target
            parsed = parse_target(wanted, B, per_row, default=default_target, device=masks.device)
        outs.append(select_targets(out, parsed, B, c))
        if chunk_weight is not None:
            with record_function("torchlime.kernel"):
                w = torch.as_tensor(chunk_weight(zc, inputs), device=masks.device)
            if w.numel() != B * c:
                raise ValueError(
                    f"expected the similarity function to return {B * c} weights for {B * c} samples, got "
                    f"shape {tuple(w.shape)}"
                )
            weights.append(w.reshape(B, c))
        if progress is not None:
            progress()
    outputs = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    sample_weight = None if chunk_weight is None else (weights[0] if len(weights) == 1 else torch.cat(weights, 1))
    return ModelOutputs(outputs, sample_weight, first, parsed)


class Explained(NamedTuple):
    """What :func:`explain_masks` returns.

    Attributes:
        fit: the :class:`~torchlime.functional.SurrogateFit`, ``(B, K, F)`` coefficients
            (``(B, F)`` when the target has no K dim).
        outputs: ``(B, n, K)`` the fitted model outputs.
        sample_weight: ``(B, n)`` the kernel weights.
        first: ``(B, *out_shape)`` the model's whole output on sample 0 of each instance.
        target: the parsed :class:`Target`.
    """

    fit: SurrogateFit
    outputs: Tensor
    sample_weight: Tensor
    first: Tensor
    target: Target


def explain_masks(
    forward_func: Callable[..., Any],
    transform: Callable[[Tensor], Any],
    masks: Tensor,
    fit: Callable[[Tensor, Tensor, Tensor], SurrogateFit],
    *,
    sample_weight: Tensor | Callable[[Tensor], Tensor] | None = None,
    chunk_weight: Callable[[Tensor, Any], Tensor] | None = None,
    target: Any = None,
    default_target: str = "scalar",
    perturbations_per_eval: int | None = None,
    validate: bool = True,
    names: Sequence[str] | None = None,
    finish: Callable[[Any, int], Tensor] | None = None,
    progress: Callable[[], None] | None = None,
) -> Explained:
    """The LIME loop on given masks: model outputs, kernel weights, checks and one batched fit.

    Args:
        forward_func: the model (see :func:`model_outputs`).
        transform: masks ``(B, c, F)`` to model inputs (see :func:`model_outputs`).
        masks: ``(B, n, F)``.
        fit: ``fit(X (B, n, F), y (B, n, K), sample_weight (B, n)) -> SurrogateFit`` solving
            every instance and target at once.
        sample_weight: ``(B, n)`` weights, or ``sample_weight(masks (B, n, F)) -> (B, n)``
            (kernels on the masks alone), or None with ``chunk_weight``.
        chunk_weight: weights that need the model inputs, per chunk (see :func:`model_outputs`).
        target: see :func:`parse_target`.
        default_target: what a None target means ("scalar" or "all").
        perturbations_per_eval: samples per instance per forward call (None: all).
        validate: check outputs, weights and masks with :func:`check_explained` (one host
            sync after the forwards); a ``fit`` of torchlime's models may then skip its own
            check of the same data (``checked=True``).
        names: names of the B instances for error messages.
        finish: turns a raw model output into a tensor (see :func:`model_outputs`).
        progress: called once per forward call.

    Returns:
        :class:`Explained`.

    Raises:
        ValueError: no weights given, NaN/inf outputs or masks, bad weights (with ``validate``), and
            the errors of :func:`model_outputs`.

    Example:
        >>> from torchlime.functional import bernoulli_masks, mask_kernel_weights, ridge
        >>> w_true = torch.tensor([1.0, -2.0, 0.5])
        >>> x = torch.ones(2, 3)
        >>> masks = bernoulli_masks(64, 3, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
        >>> out = explain_masks(lambda v: v @ w_true, lambda z: (z * x[:, None]).flatten(0, 1), masks,
        ...                     lambda X, y, w: ridge(X, y, w, alpha=0.0), sample_weight=mask_kernel_weights)
        >>> out.fit.coef
        tensor([[ 1.0000, -2.0000,  0.5000],
                [ 1.0000, -2.0000,  0.5000]])
    """
    if sample_weight is None and chunk_weight is None:
        raise ValueError("expected sample_weight (a tensor or a function of the masks) or chunk_weight, got neither")
    run = model_outputs(
        forward_func, transform, masks, target=target, default_target=default_target,
        perturbations_per_eval=perturbations_per_eval, chunk_weight=chunk_weight, finish=finish, progress=progress,
    )
    W = run.sample_weight
    if W is None:
        with record_function("torchlime.kernel"):
            W = sample_weight(masks) if callable(sample_weight) else sample_weight
    if validate:
        check_explained(run.outputs, W, masks, names)
    X = masks.to(run.outputs.dtype if run.outputs.dtype.is_floating_point else torch.float32)
    with record_function("torchlime.fit"):
        result = fit(X, run.outputs, W)
    if not run.target.multi:
        result = type(result)(*(_drop_k(v) for v in result))
    return Explained(result, run.outputs, W, run.first, run.target)


def _drop_k(t: Any) -> Any:
    """Drop the K dim (of size 1) of a fit's field: ``(B, 1, F) -> (B, F)``, ``(B, 1) -> (B,)``."""
    if isinstance(t, tuple):  # a FeatureSelection
        return type(t)(*(_drop_k(v) for v in t))
    if not isinstance(t, Tensor):
        return t
    return t[:, 0]


def default_memory_budget(device: torch.device | str) -> int:
    """Bytes one chunk of model inputs may take by default: a quarter of the free memory.

    CUDA: a quarter of ``torch.cuda.mem_get_info``'s free bytes; CPU: a quarter of
    ``MemAvailable`` (Linux), at most 4 GiB; 1 GiB where neither can be read.

    Args:
        device: where the model inputs are built.

    Returns:
        Bytes.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(free // 4, 1 << 20)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return max(min(int(line.split()[1]) * 1024 // 4, 4 << 30), 1 << 20)
    except OSError:
        pass
    return 1 << 30


def rows_per_chunk(perturbations_per_eval: int, bytes_per_sample: int, instances: int, memory_budget: int) -> int:
    """Samples per instance per forward call: ``perturbations_per_eval``, fewer if over the budget.

    Args:
        perturbations_per_eval: what was asked.
        bytes_per_sample: the model inputs of one sample of one instance.
        instances: B, the instances sharing each forward call.
        memory_budget: bytes the ``B * c`` model inputs of one call may take.

    Returns:
        c, at least 1 (one sample per instance is the least a call can take).

    Example:
        >>> rows_per_chunk(100, bytes_per_sample=4 << 20, instances=2, memory_budget=64 << 20)
        8
    """
    fit = memory_budget // max(1, bytes_per_sample * instances)
    return int(max(1, min(perturbations_per_eval, fit)))


class Budget(NamedTuple):
    """When the automatic budget (``n_samples="auto"``) stops sampling an instance.

    Instance b stops after a round once it has at least ``min_samples`` samples and, for
    every explained target, each coefficient's standard error is at most
    ``atol + tol * max_f |coef_f|`` (``tol`` relative to the largest weight of that
    explanation, ``atol`` absolute), or, with ``top_k``, its top-k features by |weight|
    are separated from the rest by ``z`` combined standard errors (a stable top-k); or
    once it reaches ``max_samples``.

    Attributes:
        tol: relative tolerance on the standard errors.
        atol: absolute tolerance on the standard errors.
        max_samples: most samples per instance.
        min_samples: fewest samples per instance before stopping is considered (None:
            ``max(32, 4 (F + 1))``).
        top_k: also stop once the top-k is stable (None: only the tolerance).
        z: the separation of a stable top-k, in standard errors.
    """

    tol: float = 0.05
    atol: float = 0.0
    max_samples: int = 10_000
    min_samples: int | None = None
    top_k: int | None = None
    z: float = 1.96


def stable_top_k(coef: Tensor, stderr: Tensor, k: int, z: float = 1.96) -> Tensor:
    """Whether the top-k features by |weight| are separated from the rest.

    The k-th largest |coef| must exceed the (k+1)-th largest by ``z`` times their
    combined standard error ``sqrt(se_k^2 + se_{k+1}^2)`` (so that resampling would
    rarely swap a feature in or out of the top k; the order within the top k may move).

    Args:
        coef: ``(..., F)``.
        stderr: ``(..., F)``.
        k: 1 <= k; with k >= F the top-k is every feature (always stable).
        z: separation in standard errors.

    Returns:
        ``(...)`` bool.

    Example:
        >>> stable_top_k(torch.tensor([3.0, -2.0, 0.1]), torch.tensor([0.1, 0.1, 0.1]), 2)
        tensor(True)
        >>> stable_top_k(torch.tensor([3.0, -2.0, 1.9]), torch.tensor([0.1, 0.1, 0.1]), 2)
        tensor(False)
    """
    F = coef.shape[-1]
    if k >= F:
        return torch.ones(coef.shape[:-1], dtype=torch.bool, device=coef.device)
    order = coef.abs().argsort(dim=-1, descending=True, stable=True)
    mag = coef.abs().gather(-1, order)
    se = stderr.gather(-1, order)
    gap = mag[..., k - 1] - mag[..., k]
    return gap > z * torch.sqrt(se[..., k - 1] ** 2 + se[..., k] ** 2)


def budget_met(fit: SurrogateFit, budget: Budget) -> Tensor:
    """``(B,)`` bool: the explanation of each instance meets the budget's tolerance.

    Args:
        fit: with ``coef`` and ``stderr`` of shape ``(B, K, F)``.
        budget: the :class:`Budget`.
    """
    if fit.stderr is None:
        raise ValueError("expected a fit with standard errors (SurrogateFit.stderr) for n_samples='auto', got None")
    scale = fit.coef.abs().amax(-1, keepdim=True)
    ok = (fit.stderr <= budget.atol + budget.tol * scale).all(-1)  # (B, K)
    if budget.top_k is not None:
        ok = ok | stable_top_k(fit.coef, fit.stderr, budget.top_k, budget.z)
    return ok.all(-1)


def explain_auto(
    forward_func: Callable[..., Any],
    transform_for: Callable[[list[int]], Callable[[Tensor], Any]],
    draw: Callable[[int], tuple[Tensor, Tensor | None, Tensor | None]],
    fit: Callable[[Tensor, Tensor, Tensor, list[int], Tensor | None], SurrogateFit],
    *,
    sample_weight: Callable[[Tensor, list[int]], Tensor],
    budget: Budget = Budget(),
    target: Any = None,
    default_target: str = "scalar",
    perturbations_per_eval: int = 100,
    validate: bool = True,
    names: Sequence[str] | None = None,
    finish: Callable[[Any, int], Tensor] | None = None,
    progress: Callable[[], None] | None = None,
) -> Explained:
    """The LIME loop with an automatic budget: sample in rounds until each instance is sure enough.

    Each round draws ``perturbations_per_eval`` more masks for every instance, runs the
    model on the instances that have not stopped only, refits them, and stops each one on
    its own (see :class:`Budget`). The result is one batched fit over every instance's own
    samples (rows an instance did not use get weight 0, which a weighted fit ignores), with
    ``fit.n_samples`` ``(B,)`` the samples each instance used.

    Args:
        forward_func: the model (see :func:`model_outputs`).
        transform_for: ``transform_for(instances)`` returns the transform (masks
            ``(B', c, F)`` -> model inputs) of those instances only, in that order.
        draw: ``draw(n)`` returns ``(masks (B, n, F), importance, cluster)``: the next n masks
            of every instance (a sampler continuing its design); the sampler's importance
            weights ``(B, N)`` of ALL N rows drawn so far (they supersede earlier ones), or
            None; and the cluster ids ``(N,)`` of all rows so far (see
            :func:`~torchlime.functional.uncertainty.sandwich_stderr`), or None.
        fit: ``fit(X (B', N, F), y (B', N, K), sample_weight (B', N), instances, cluster)``
            returns a SurrogateFit with standard errors.
        sample_weight: ``sample_weight(masks (B', n, F), instances)`` the kernel weights.
        budget: when to stop.
        target: see :func:`parse_target`; parsed once, on the first round.
        default_target: what a None target means.
        perturbations_per_eval: samples per instance per round (and per forward call).
        validate: check outputs, weights and masks (:func:`check_explained`, a host sync per
            round; the stopping rule syncs anyway).
        names: names of the B instances for error messages.
        finish: turns a raw model output into a tensor.
        progress: called once per forward call.

    Returns:
        :class:`Explained`, with ``fit.n_samples`` set.

    Raises:
        ValueError: bad budget values, and the errors of :func:`explain_masks`.
    """
    if not (budget.tol >= 0 and budget.atol >= 0 and budget.z > 0):
        raise ValueError(f"expected tol >= 0, atol >= 0 and z > 0, got tol={budget.tol}, atol={budget.atol}, z={budget.z}")
    if budget.max_samples < 2:
        raise ValueError(f"expected max_samples >= 2, got {budget.max_samples}")
    Xs: list[Tensor] = []
    Ys: list[Tensor] = []
    Ks: list[Tensor] = []
    importance = cluster = None
    used = torch.zeros(0, dtype=torch.long)
    live: list[int] | None = None
    parsed = first = None
    min_samples = budget.min_samples
    while live is None or live:
        masks, importance, cluster = draw(perturbations_per_eval)
        B, r, F = masks.shape
        if live is None:
            live = list(range(B))
            used = torch.zeros(B, dtype=torch.long)
            if min_samples is None:
                min_samples = max(32, 4 * (F + 1))
        idx = torch.tensor(live, device=masks.device)
        sub = masks.index_select(0, idx)
        wanted = target if parsed is None else parsed.index.index_select(0, idx.to(parsed.index.device))
        run = model_outputs(
            forward_func, transform_for(live), sub, target=wanted, default_target=default_target,
            perturbations_per_eval=perturbations_per_eval, finish=finish, progress=progress,
        )
        if parsed is None:
            parsed, first = run.target, run.first
        with record_function("torchlime.kernel"):
            k_sub = sample_weight(sub, live)
        labels = [names[b] if names is not None else f"instance {b}" for b in live]
        K = run.outputs.shape[-1]
        Xs.append(masks.to(run.outputs.dtype))
        Ys.append(run.outputs.new_zeros(B, r, K).index_copy_(0, idx, run.outputs))
        Ks.append(k_sub.new_zeros(B, r).index_copy_(0, idx, k_sub))  # 0: rows an instance did not use
        used[live] += r
        X_all, Y_all = torch.cat(Xs, 1), torch.cat(Ys, 1)
        W_all = torch.cat(Ks, 1)
        if importance is not None:
            W_all = W_all * importance.to(W_all.device, W_all.dtype)
        W_live = W_all.index_select(0, idx)
        if validate:  # this round's outputs and masks, the weights of every sample so far
            check_explained(run.outputs, W_live, sub, labels)
        with record_function("torchlime.fit"):
            result = fit(X_all.index_select(0, idx), Y_all.index_select(0, idx), W_live, live, cluster)
        done = budget_met(result, budget).tolist()
        live = [b for b, ok in zip(live, done)
                if not ((ok and int(used[b]) >= min_samples) or int(used[b]) + r > budget.max_samples)]
    with record_function("torchlime.fit"):
        result = fit(X_all, Y_all, W_all, list(range(B)), cluster)
    result = result._replace(n_samples=used.to(result.coef.device))
    if not parsed.multi:
        result = type(result)(*(_drop_k(v) if name != "n_samples" else v for name, v in zip(result._fields, result)))
    return Explained(result, Y_all, W_all, first, parsed)
