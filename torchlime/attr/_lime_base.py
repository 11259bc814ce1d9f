"""``torchlime.LimeBase``: Captum's ``LimeBase`` with a batched fast path.

Shape glossary: B instances, n perturbation samples, c samples per forward chunk,
F interpretable features, K targets.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..functional.sampling import check_generator, check_masks
from ..functional.surrogate import SurrogateFit, weighted_r2
from ._batched import batched_impl
from .._captum import CaptumLimeBase, PerturbationAttribution, lime_base_attribute

__all__ = ["LimeBase"]


def _first_tensor(inputs: Any) -> Tensor:
    return inputs if isinstance(inputs, Tensor) else inputs[0]


def normalize_target(target: Any, num_instances: int) -> tuple[list[list[Any]] | None, bool]:
    """Targets as one list of K entries per instance, and whether K is a dim of the result.

    Captum's forms (None, int, tuple, 1-D tensor or list of length B, list of tuples) give
    K == 1; torchlime adds several targets per instance: a ``(B, K)`` tensor or a list of
    B lists (or one list of lists applied to every instance when B == 1).
    """
    if target is None:
        return None, False
    if isinstance(target, Tensor):
        if target.dim() == 0:
            return [[int(target)]] * num_instances, False
        if target.dim() == 1:
            values = target.tolist()
            if num_instances == 1 and len(values) != 1:
                raise ValueError(
                    f"expected one target for 1 instance, got {len(values)}; pass a (B, K) "
                    f"tensor for several targets per instance"
                )
            return [[v] for v in _per_instance(values, num_instances)], False
        if target.dim() == 2:
            return [list(r) for r in _per_instance(target.tolist(), num_instances)], True
        raise ValueError(f"expected target of at most 2 dims, got shape {tuple(target.shape)}")
    if isinstance(target, (int, tuple)):
        return [[target]] * num_instances, False
    if isinstance(target, list):
        if target and all(isinstance(t, list) for t in target):
            return [list(t) for t in _per_instance(target, num_instances)], True
        return [[t] for t in _per_instance(target, num_instances)], False
    raise TypeError(f"expected target as int, tuple, list or tensor, got {type(target).__name__}")


def _per_instance(values: list[Any], num_instances: int) -> list[Any]:
    if len(values) == num_instances:
        return values
    if len(values) == 1:
        return values * num_instances
    raise ValueError(f"expected {num_instances} targets (one per instance), got {len(values)}")


def _flat_targets(targets: list[list[Any]], out_shape: tuple[int, ...]) -> list[list[int]]:
    """Turn targets into flat indices of the per-row output of shape ``out_shape``."""
    size = math.prod(out_shape)
    flat = []
    for row in targets:
        idx_row = []
        for t in row:
            idx = tuple(t) if isinstance(t, tuple) else (int(t),)
            if len(idx) != len(out_shape) or any(not -d <= i < d for i, d in zip(idx, out_shape)):
                what = idx[0] if len(idx) == 1 else idx
                raise ValueError(
                    f"target {what} is out of range for forward output with per-example shape "
                    f"{out_shape}" + (f" ({out_shape[0]} classes)" if len(out_shape) == 1 else "")
                )
            pos = 0
            for i, d in zip(idx, out_shape):
                pos = pos * d + (i % d)
            idx_row.append(pos % size if size else 0)
        flat.append(idx_row)
    return flat


def expand_forward_args(args: Any, repeats: int) -> Any:
    """Repeat every tensor argument's rows ``repeats`` times, instance-major."""
    if args is None:
        return None
    items = args if isinstance(args, tuple) else (args,)
    out = tuple(a.repeat_interleave(repeats, dim=0) if isinstance(a, Tensor) and a.dim() > 0 else a for a in items)
    return out


def call_forward(forward_func: Callable[..., Any], inputs: Any, args: Any) -> Tensor:
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    out = forward_func(*inputs, *(args or ()))
    if not isinstance(out, Tensor):
        out = torch.as_tensor(out, device=inputs[0].device)
    return out


class LimeBase(CaptumLimeBase):
    """Captum's ``LimeBase`` with a batched, device-resident fast path.

    Same constructor and ``attribute()`` signature as ``captum.attr.LimeBase``. When
    ``from_interp_rep_transform`` and ``similarity_func`` are marked batched (see
    :func:`torchlime.batched`) and sampling is in the interpretable space, all masks are
    drawn in one call, model inputs are built chunk by chunk (``perturbations_per_eval``
    samples per forward, for every instance at once), kernel weights are computed for
    the whole batch, and the surrogate is fitted for every instance and target in one
    batched solve. Otherwise (per-sample callables) it runs Captum's own loop.

    Extra keyword arguments of ``attribute`` (all optional, never passed on to the
    callables):

    - ``generator``: a ``torch.Generator`` on the input's device (None: torch's global RNG);
    - ``masks``: ``(n, F)`` or ``(B, n, F)`` masks to use instead of sampling;
    - ``differentiable``: keep the autograd graph from the model outputs to the
      coefficients (needs a model with ``supports_differentiable``);
    - ``return_fit``: return the :class:`~torchlime.functional.SurrogateFit` (coefficients,
      intercept, weighted R^2, local prediction) instead of the coefficients;
    - ``validate``: check outputs and weights for NaN/inf/all-zero (one host sync at the
      end of sampling; default True).

    Example:
        >>> import torch
        >>> from torchlime import LimeBase, batched
        >>> from torchlime.models import Ridge
        >>> w_true = torch.tensor([1.0, -2.0, 0.5])
        >>> @batched
        ... def perturb(x, *, n_samples, generator=None, **kw):
        ...     return torch.bernoulli(torch.full((n_samples, 3), 0.5), generator=generator)
        >>> @batched
        ... def to_input(z, x, **kw):
        ...     return z * x
        >>> @batched
        ... def sim(x, xp, z, **kw):
        ...     return torch.ones(z.shape[:-1]).reshape(-1)
        >>> lb = LimeBase(lambda x: x @ w_true, Ridge(alpha=0.0), sim, perturb, True, to_input, None)
        >>> lb.attribute(torch.ones(1, 3), n_samples=64, generator=torch.Generator().manual_seed(0))
        tensor([[ 1.0000, -2.0000,  0.5000]])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        interpretable_model: Any,
        similarity_func: Callable[..., Any],
        perturb_func: Callable[..., Any],
        perturb_interpretable_space: bool,
        from_interp_rep_transform: Callable[..., Any] | None,
        to_interp_rep_transform: Callable[..., Any] | None,
    ) -> None:
        if perturb_interpretable_space and from_interp_rep_transform is None:
            raise ValueError(
                "expected from_interp_rep_transform when perturb_interpretable_space=True, got None"
            )
        if not perturb_interpretable_space and to_interp_rep_transform is None:
            raise ValueError(
                "expected to_interp_rep_transform when perturb_interpretable_space=False, got None"
            )
        PerturbationAttribution.__init__(self, forward_func)
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func
        self.perturb_interpretable_space = perturb_interpretable_space
        self.from_interp_rep_transform = from_interp_rep_transform
        self.to_interp_rep_transform = to_interp_rep_transform

    # -- dispatch ---------------------------------------------------------------------

    def _fast_path_ok(self) -> bool:
        return (
            self.perturb_interpretable_space
            and batched_impl(self.from_interp_rep_transform) is not None
            and batched_impl(self.similarity_func) is not None
        )

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        n_samples: int = 50,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Fit the surrogate around ``inputs``; see ``captum.attr.LimeBase.attribute``.

        Returns:
            The interpretable model's representation: ``(1, F)`` for one instance and
            target as Captum; ``(B, F)`` for B instances; ``(B, K, F)`` with several
            targets per instance; or a :class:`SurrogateFit` with ``return_fit=True``.
        """
        generator = kwargs.pop("generator", None)
        masks = kwargs.pop("masks", None)
        differentiable = kwargs.pop("differentiable", False)
        return_fit = kwargs.pop("return_fit", False)
        validate = kwargs.pop("validate", True)
        _check_n_samples(n_samples if masks is None else _mask_rows(masks))
        if isinstance(perturbations_per_eval, bool) or not isinstance(perturbations_per_eval, int) or perturbations_per_eval < 1:
            raise ValueError(f"expected perturbations_per_eval >= 1, got {perturbations_per_eval!r}")
        device = _first_tensor(inputs).device
        check_generator(generator, device)
        if not self._fast_path_ok():
            if masks is not None or differentiable or return_fit:
                raise ValueError(
                    "masks=, differentiable=True and return_fit=True need batched callables "
                    "(see torchlime.batched); got per-sample ones, which run Captum's loop"
                )
            if generator is not None:
                kwargs["generator"] = generator
            return lime_base_attribute(  # Captum's loop, without its usage logging
                self, inputs, target, additional_forward_args, n_samples,
                perturbations_per_eval, show_progress, **kwargs,
            )
        grad = torch.enable_grad() if differentiable else torch.no_grad()
        with grad:
            fit, multi = self._attribute_batched(
                inputs, target, additional_forward_args, n_samples, perturbations_per_eval,
                show_progress, generator, masks, differentiable, validate, kwargs,
            )
        if return_fit:
            return fit
        return fit.coef

    # -- the batched engine ----------------------------------------------------------

    def _draw(self, inputs: Any, n_samples: int, generator: Any, masks: Any, kwargs: dict) -> Tensor:
        """Step 1: all masks at once, ``(n, F)`` or ``(B, n, F)``."""
        device = _first_tensor(inputs).device
        num_features = kwargs.get("num_interp_features")
        if masks is not None:
            instances = kwargs.get("num_instances")
            checked = check_masks(masks, num_features, batch_size=instances).to(device)
            return checked if masks.dim() == 3 or instances is not None else checked[0]
        fast = batched_impl(self.perturb_func)
        if fast is not None:
            return fast(inputs, n_samples=n_samples, generator=generator, **kwargs)
        # Per-sample or generator perturb_func: collect its samples, then go on batched.
        rows = list(_per_sample(self.perturb_func, inputs, n_samples, kwargs))
        if len(rows) < n_samples:
            warnings.warn("Generator completed prior to given n_samples iterations!", stacklevel=3)
        return torch.cat([r.reshape(1, -1) for r in rows]).to(device)

    def _attribute_batched(
        self, inputs, target, additional_forward_args, n_samples, perturbations_per_eval,
        show_progress, generator, masks, differentiable, validate, kwargs,
    ) -> tuple[SurrogateFit, bool]:
        Z = self._draw(inputs, n_samples, generator, masks, kwargs)
        single = Z.dim() == 2
        Z3 = Z.unsqueeze(0) if single else Z
        if Z3.dim() != 3:
            raise ValueError(f"expected perturb_func to return masks (n, F) or (B, n, F), got shape {tuple(Z.shape)}")
        B, n, F = Z3.shape
        _check_n_samples(n)
        targets, multi = normalize_target(target, B)
        transform = batched_impl(self.from_interp_rep_transform)
        chunk = perturbations_per_eval
        outputs, weights = [], []
        all_weights = self._weights_from_masks(Z3)  # (B, n), or None: computed per chunk
        progress = _progress(show_progress, math.ceil(n / chunk), type(self).__name__)
        flat_targets = None
        for start in range(0, n, chunk):
            Zc = Z3[:, start : start + chunk]
            c = Zc.shape[1]
            Zarg = Zc[0] if single else Zc
            model_in = transform(Zarg, inputs, **kwargs)
            out = call_forward(self.forward_func, model_in, expand_forward_args(additional_forward_args, c))
            if flat_targets is None and targets is not None:
                per_row = _per_row_shape(out, B * c)
                flat_targets = torch.tensor(_flat_targets(targets, per_row), device=Z3.device, dtype=torch.long)
            outputs.append(_select(out, B, c, flat_targets))
            if all_weights is None:
                sim = torch.as_tensor(self._weights(inputs, model_in, Zarg, kwargs), device=Z3.device)
                if sim.numel() != B * c:
                    raise ValueError(
                        f"expected similarity_func to return {B * c} weights for {B * c} samples, "
                        f"got shape {tuple(sim.shape)}"
                    )
                weights.append(sim.reshape(B, c))
            progress.update()
        progress.close()
        Y = torch.cat(outputs, dim=1)  # (B, n, K)
        W = torch.cat(weights, dim=1) if all_weights is None else all_weights  # (B, n)
        if validate:
            _validate(Y, W)
        fit = self._fit(Z3, Y, W, differentiable)
        if not multi:
            fit = SurrogateFit(fit.coef[:, 0], fit.intercept[:, 0], fit.score[:, 0], fit.local_pred[:, 0])
        return fit, multi

    def _weights_from_masks(self, masks: Tensor) -> Tensor | None:
        """Kernel weights ``(B, n)`` of all samples at once where they need no model input."""
        return None

    def _weights(self, inputs: Any, model_in: Any, masks: Tensor, kwargs: dict) -> Tensor:
        """Step 3 for one chunk: kernel weights of its samples."""
        return batched_impl(self.similarity_func)(inputs, model_in, masks, **kwargs)

    def _fit(self, Z: Tensor, Y: Tensor, W: Tensor, differentiable: bool) -> SurrogateFit:
        """Step 4: one batched solve, or a loop over Captum models without one."""
        model = self.interpretable_model
        X = Z.to(Y.dtype if Y.dtype.is_floating_point else torch.float32)
        if hasattr(model, "fit_tensors"):
            return model.fit_tensors(X, Y, W, differentiable=differentiable)
        if differentiable:
            raise ValueError(
                f"differentiable=True needs a torchlime model (Ridge, LinearRegression), got "
                f"{type(model).__name__}, which fits outside autograd"
            )
        B, n, K = Y.shape
        coefs, intercepts = [], []
        for b in range(B):
            for k in range(K):
                data = TensorDataset(X[b].float(), Y[b, :, k].float(), W[b].float())
                model.fit(DataLoader(data, batch_size=n))
                coefs.append(model.representation().reshape(-1).to(X.device, torch.float32))
                bias = model.bias() if callable(getattr(model, "bias", None)) else None
                intercepts.append(bias.reshape(-1)[0].to(X.device, torch.float32) if bias is not None else X.new_zeros(()).float())
        coef = torch.stack(coefs).reshape(B, K, -1)
        intercept = torch.stack(intercepts).reshape(B, K)
        pred = X.float() @ coef.transpose(-1, -2) + intercept.unsqueeze(-2)
        score = weighted_r2(Y.float(), pred, W.float())
        return SurrogateFit(coef, intercept, score, pred[:, 0])


def _check_n_samples(n_samples: Any) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"expected n_samples >= 2, got {n_samples!r}")


def _mask_rows(masks: Any) -> int:
    if not isinstance(masks, Tensor) or masks.dim() < 2:
        check_masks(masks)
    return masks.shape[-2]


def _per_sample(perturb_func: Callable[..., Any], inputs: Any, n_samples: int, kwargs: dict) -> Iterator[Tensor]:
    if inspect.isgeneratorfunction(perturb_func):
        gen = perturb_func(inputs, **kwargs)
        for _ in range(n_samples):
            try:
                yield next(gen)
            except StopIteration:
                return
    else:
        for _ in range(n_samples):
            yield perturb_func(inputs, **kwargs)


def _per_row_shape(out: Tensor, rows: int) -> tuple[int, ...]:
    if out.dim() == 0 or out.shape[0] != rows:
        raise ValueError(
            f"expected forward_func to return one output per perturbed input ({rows} rows), got "
            f"shape {tuple(out.shape)}"
        )
    return tuple(out.shape[1:]) if out.dim() > 1 else (1,)


def _select(out: Tensor, B: int, c: int, flat_targets: Tensor | None) -> Tensor:
    """Model outputs of a chunk as ``(B, c, K)``, targets selected."""
    rows = B * c
    if flat_targets is None:
        if out.numel() != rows:
            raise ValueError(
                f"expected forward_func to return one scalar per perturbed input ({rows} values) "
                f"when no target is given, got shape {tuple(out.shape)}"
            )
        # A copy: the output may be a view of a model input whose buffer the next chunk reuses.
        return out.reshape(B, c, 1).clone()
    flat = out.reshape(B, c, -1)
    index = flat_targets.to(out.device)  # (B, K)
    return flat.gather(2, index.unsqueeze(1).expand(B, c, index.shape[1]))


def _validate(Y: Tensor, W: Tensor) -> None:
    bad = ~torch.isfinite(Y).all(-1)
    if bool(bad.any()):
        where = bad.nonzero().tolist()
        shown = ", ".join(f"instance {b} sample {s}" for b, s in where[:10])
        more = f" and {len(where) - 10} more" if len(where) > 10 else ""
        raise ValueError(f"forward_func returned NaN or inf for {shown}{more}")
    badw = ~torch.isfinite(W)
    if bool(badw.any()) or bool((W < 0).any()):
        where = (badw | (W < 0)).nonzero().tolist()[:10]
        raise ValueError(f"expected finite, non-negative kernel weights, got bad ones at (instance, sample) {where}")
    zero = (W == 0).all(-1)
    if bool(zero.any()):
        raise ValueError(
            f"all kernel weights are zero for instance(s) {zero.nonzero().flatten().tolist()}: "
            f"the kernel width is too small for these distances"
        )


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(show: bool, total: int, name: str) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{name} attribution")
