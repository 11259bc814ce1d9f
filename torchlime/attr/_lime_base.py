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

from .._captum import CaptumLimeBase, PerturbationAttribution, lime_base_attribute
from .._checks import check_choice
from ..functional.engine import Budget, explain_auto, explain_masks
from ..functional.sampling import (
    LIME_SAMPLERS,
    Draw,
    MaskSampler,
    bernoulli_masks,
    captum_kernel_shap_masks,
    check_generator,
    check_masks,
)
from ..functional.surrogate import SurrogateFit
from ..models import fit_model
from ._batched import batched_impl
from ._inputs import check_forward_output

__all__ = ["LimeBase"]


def _first_tensor(inputs: Any) -> Tensor:
    return inputs if isinstance(inputs, Tensor) else inputs[0]


def expand_forward_args(args: Any, repeats: int) -> Any:
    """Repeat every tensor argument's rows ``repeats`` times, instance-major."""
    if args is None:
        return None
    items = args if isinstance(args, tuple) else (args,)
    out = tuple(a.repeat_interleave(repeats, dim=0) if isinstance(a, Tensor) and a.dim() > 0 else a for a in items)
    return out


def call_forward(forward_func: Callable[..., Any], inputs: Any, args: Any) -> Tensor:
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return check_forward_output(forward_func(*inputs, *(args or ()))).to(inputs[0].device)


class LimeBase(CaptumLimeBase):
    """Captum's ``LimeBase`` with a batched, device-resident fast path.

    Same constructor and ``attribute()`` signature as ``captum.attr.LimeBase``. When
    ``from_interp_rep_transform`` and ``similarity_func`` are marked batched (see
    :func:`torchlime.batched`) and sampling is in the interpretable space, all masks are
    drawn in one call, model inputs are built chunk by chunk (``perturbations_per_eval``
    samples per forward, for every instance at once), kernel weights are computed for
    the whole batch, and the surrogate is fitted for every instance and target in one
    batched solve. Otherwise (per-sample callables) it runs Captum's own loop.

    Two random streams:

    - no ``generator`` (the default): the masks come from torch's global random stream as
      Captum 0.9 draws them: ``perturb_func`` is called sample by sample where it is a
      per-sample callable (a batched one is called once, with ``generator=None``), and
      after the draws torchlime takes what Captum's ``interpretable_model.fit(DataLoader)``
      takes from the stream: the DataLoader iterator's base seed and, for the scikit-learn
      models torchlime's ``Lasso``/``Ridge``/``LinearRegression`` stand for, an
      ``nn.Linear(F, 1)`` initialisation (torchlime's models fit on tensors and draw
      nothing; Captum's own models draw for themselves). So after ``torch.manual_seed(s)``
      the result and the stream left behind are Captum's, call after call (for a model
      whose forward draws no random numbers);
    - ``generator=``: every draw comes from it, batched; the global stream is untouched.

    Extra keyword arguments of ``attribute`` (all optional, never passed on to the
    callables):

    - ``generator``: a ``torch.Generator`` on the input's device (None: torch's global RNG);
    - ``sampler``: how masks are drawn on the batched path (see
      :mod:`torchlime.functional.sampling`): ``"iid"`` (default: ``perturb_func``'s own
      draws), ``"paired"`` (``perturb_func`` draws the first ``ceil(n/2)`` masks, each
      followed by its complement ``1 - z``; masks must be binary), ``"sobol"`` (scrambled
      Sobol masks thresholded at 0.5 over ``num_interp_features`` features, which must
      then be passed; ``perturb_func`` is not called);
    - ``masks``: ``(n, F)`` or ``(B, n, F)`` masks to use instead of sampling;
    - ``differentiable``: keep the autograd graph from the model outputs to the
      coefficients (needs a model with ``supports_differentiable``);
    - ``return_fit``: return the :class:`~torchlime.functional.SurrogateFit` (coefficients,
      intercept, weighted R^2, local prediction) instead of the coefficients;
    - ``n_samples="auto"``, ``tol`` (default 0.05) and ``max_samples`` (default 10000):
      sample in rounds of ``perturbations_per_eval`` until every coefficient's standard
      error is at most ``tol`` times the explanation's largest |weight|, or
      ``max_samples`` are drawn (see :class:`torchlime.functional.engine.Budget`);
    - ``validate``: check outputs, kernel weights and masks for NaN/inf/negative/all-zero
      (:func:`~torchlime.functional.engine.check_explained`: one host sync at the end of
      sampling, the call's only input check, since torchlime's models are told not to
      check again; default True).

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

        The keyword arguments are Captum's (passed on to the callables), and the extras
        listed in the class docstring (``generator``, ``sampler``, ``masks``,
        ``differentiable``, ``return_fit``, ``validate``, ``tol``, ``max_samples``), which
        are not passed on.

        Returns:
            The interpretable model's representation: ``(1, F)`` for one instance and
            target as Captum; ``(B, F)`` for B instances; ``(B, K, F)`` with several
            targets per instance; or a :class:`SurrogateFit` with ``return_fit=True``
            (with standard errors, ``fit.stderr``, for torchlime's models).
        """
        return self._attribute(
            inputs, target, additional_forward_args, n_samples, perturbations_per_eval, show_progress, kwargs,
        )

    def _attribute(
        self, inputs: Any, target: Any, additional_forward_args: Any, n_samples: Any, perturbations_per_eval: int,
        show_progress: bool, kwargs: dict, *, stderr: bool | None = None,
    ) -> Any:
        """:meth:`attribute`'s work, with its extras in ``kwargs`` (popped from it).

        ``stderr``: compute the fit's standard errors (a second pass over the masks); None:
        when ``return_fit`` asks for the fit. ``Lime`` takes the fit (``return_fit=True``) to
        read its coefficients and asks for standard errors only when its own caller wants
        the fit.
        """
        generator = kwargs.pop("generator", None)
        sampler = check_choice(kwargs.pop("sampler", "iid"), "sampler", self._SAMPLERS)
        budget = Budget(tol=kwargs.pop("tol", 0.05), max_samples=kwargs.pop("max_samples", 10_000))
        masks = kwargs.pop("masks", None)
        differentiable = kwargs.pop("differentiable", False)
        return_fit = kwargs.pop("return_fit", False)
        stderr = return_fit if stderr is None else stderr
        validate = kwargs.pop("validate", True)
        if masks is not None and sampler != "iid":
            raise ValueError(f"expected either masks= or sampler=, got both (sampler={sampler!r})")
        auto = isinstance(n_samples, str) and n_samples == "auto"
        if auto and masks is not None:
            raise ValueError("expected either masks= or n_samples='auto', got both")
        if not auto:
            _check_n_samples(n_samples if masks is None else _mask_rows(masks))
        if isinstance(perturbations_per_eval, bool) or not isinstance(perturbations_per_eval, int) or perturbations_per_eval < 1:
            raise ValueError(f"expected perturbations_per_eval >= 1, got {perturbations_per_eval!r}")
        device = _first_tensor(inputs).device
        check_generator(generator, device)
        if not self._fast_path_ok():
            if masks is not None or differentiable or return_fit or sampler != "iid" or auto:
                raise ValueError(
                    "masks=, sampler=, n_samples='auto', differentiable=True and return_fit=True need batched callables "
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
            if auto:
                fit = self._attribute_auto(
                    inputs, target, additional_forward_args, perturbations_per_eval, show_progress, generator,
                    differentiable, validate, kwargs, sampler, budget,
                )
            else:
                fit, multi = self._attribute_batched(
                    inputs, target, additional_forward_args, n_samples, perturbations_per_eval,
                    show_progress, generator, masks, differentiable, validate, kwargs, sampler, stderr,
                )
        if return_fit:
            return fit
        return fit.coef

    # -- the batched engine ----------------------------------------------------------

    #: The samplers ``attribute(sampler=...)`` accepts.
    _SAMPLERS: tuple[str, ...] = LIME_SAMPLERS

    def _builtin_kind(self) -> str | None:
        """``"lime"``/``"kernel_shap"`` when ``perturb_func`` is ``Lime``'s or ``KernelShap``'s own, else None."""
        return getattr(self.perturb_func, "_torchlime_sampler_kind", None)

    def _examples(self, inputs: Any, kwargs: dict) -> list[tuple[Any, dict]]:
        """``(inputs, kwargs)`` of every example Captum's loop draws for, in its order."""
        return [(inputs, kwargs)]

    def _draw(self, inputs: Any, n_samples: int, generator: Any, masks: Any, kwargs: dict, sampler: str = "iid") -> Draw:
        """Step 1: all masks at once, ``(n, F)`` or ``(B, n, F)``, and importance weights or None.

        Sets ``self._cluster``: the independent draw of each row (see
        :func:`torchlime.functional.uncertainty.sandwich_stderr`), or None (every row).
        """
        self._cluster = None
        device = _first_tensor(inputs).device
        num_features = kwargs.get("num_interp_features")
        instances = kwargs.get("num_instances")
        if masks is not None:
            checked = check_masks(masks, num_features, batch_size=instances).to(device)
            return Draw(checked if masks.dim() == 3 or instances is not None else checked[0], None)
        kind = self._builtin_kind()
        batch_shape = (instances,) if instances is not None else ()
        if (kind is not None and (sampler != "iid" or generator is not None)) or sampler == "sobol":
            if num_features is None:
                raise ValueError(
                    f"expected num_interp_features=F among the keyword arguments with sampler={sampler!r} "
                    f"(the masks are drawn by torchlime, not by perturb_func), got none"
                )
            drawer = MaskSampler(sampler, int(num_features), kind=kind or "lime", batch_shape=batch_shape,
                                 device=device, generator=generator)
            drawn = drawer.draw(n_samples)
            self._cluster = drawer.clusters
            return drawn
        wanted = (n_samples + 1) // 2 if sampler == "paired" else n_samples
        captum_stream = generator is None and sampler == "iid"
        fast = batched_impl(self.perturb_func)
        if fast is not None and kind is None:
            Z = fast(inputs, n_samples=wanted, generator=generator, **kwargs)
            if captum_stream:
                self._take_fit_draws(1 if instances is None else instances, Z.shape[-1])
        else:
            # One example after another, as Captum's loop: its draws (built-in or perturb_func
            # per sample), then what its fit draws, then the next example.
            per_example = []
            for inp, kw in self._examples(inputs, kwargs):
                per_example.append(self._example_draws(inp, wanted, kw, kind, device))
                if captum_stream:
                    self._take_fit_draws(1, per_example[-1].shape[-1])
            rows = min(z.shape[0] for z in per_example)
            Z = torch.stack([z[:rows] for z in per_example]) if instances is not None else per_example[0]
        if sampler == "paired":
            Z = torch.stack([Z, 1 - Z], dim=-2).flatten(-3, -2)[..., :n_samples, :]
            check_masks(Z, num_features, name="masks from perturb_func (sampler='paired' needs binary ones)")
            self._cluster = torch.arange(Z.shape[-2]) // 2
        elif kind == "kernel_shap":  # Captum's first two rows: the full and the empty coalition
            self._cluster = torch.cat([torch.full((2,), -1), torch.arange(Z.shape[-2] - 2)])
        return Draw(Z, None)

    def _example_draws(self, inputs: Any, n_samples: int, kwargs: dict, kind: str | None, device: Any) -> Tensor:
        """``(n, F)`` masks of one example: Captum's built-in draws, or ``perturb_func`` per sample."""
        if kind == "lime":  # Captum: a Bernoulli(0.5) (1, F) on the CPU per sample; one (n, F) call draws the same
            return bernoulli_masks(n_samples, int(kwargs["num_interp_features"]), device="cpu").to(device)
        if kind == "kernel_shap":
            return captum_kernel_shap_masks(n_samples, int(kwargs["num_interp_features"]), device=device)
        rows = list(_per_sample(self.perturb_func, inputs, n_samples, kwargs))
        if len(rows) < n_samples:
            warnings.warn("Generator completed prior to given n_samples iterations!", stacklevel=4)
        return torch.cat([r.reshape(1, -1) for r in rows]).to(device)

    def _take_fit_draws(self, examples: int, num_features: int) -> None:
        """Take from torch's global stream what Captum's fits of ``examples`` examples take.

        Captum fits the interpretable model once per example on a ``DataLoader``: creating
        its iterator draws one number (the base seed), and Captum's scikit-learn models
        (``SkLearnLasso``, ``SkLearnRidge``, ``SkLearnLinearRegression``) then build an
        ``nn.Linear(F, 1)``, whose initialisation draws F + 1 more. torchlime's models stand
        for those and are fitted on tensors, so the same draws are made here, with the same
        calls. Any other model is fitted through a DataLoader
        (:func:`torchlime.models.fit_model`) and draws for itself.
        """
        if hasattr(self.interpretable_model, "fit_tensors"):
            for _ in range(examples):
                iter(DataLoader(_NO_DATA))
                torch.nn.Linear(num_features, 1)

    def _attribute_batched(
        self, inputs, target, additional_forward_args, n_samples, perturbations_per_eval,
        show_progress, generator, masks, differentiable, validate, kwargs, sampler="iid", stderr=False,
    ) -> tuple[SurrogateFit, bool]:
        Z, importance = self._draw(inputs, n_samples, generator, masks, kwargs, sampler)
        cluster = self._cluster
        single = Z.dim() == 2
        Z3 = Z.unsqueeze(0) if single else Z
        if Z3.dim() != 3:
            raise ValueError(f"expected perturb_func to return masks (n, F) or (B, n, F), got shape {tuple(Z.shape)}")
        B, n, F = Z3.shape
        _check_n_samples(n)
        batched_transform = batched_impl(self.from_interp_rep_transform)
        last: dict[str, Any] = {}

        def transform(zc: Tensor) -> tuple:
            model_in = batched_transform(zc[0] if single else zc, inputs, **kwargs)
            last["model_in"] = model_in
            args = expand_forward_args(additional_forward_args, zc.shape[1])
            return (*(model_in if isinstance(model_in, tuple) else (model_in,)), *(args or ()))

        done = [0]

        def chunk_weight(zc: Tensor, _: Any) -> Tensor:
            w = self._weights(inputs, last["model_in"], zc[0] if single else zc, kwargs)
            if importance is not None:  # the sampler's importance weights of this chunk's rows
                c = zc.shape[1]
                w = w.reshape(B, c) * importance.reshape(B, n)[:, done[0] : done[0] + c].to(w.device)
                done[0] += c
            return w

        sample_weight = self._weights_from_masks(Z3)  # (B, n), or None: computed per chunk
        if sample_weight is not None and importance is not None:
            sample_weight = sample_weight * importance.reshape(B, n).to(sample_weight.device)
        progress = _progress(show_progress, math.ceil(n / perturbations_per_eval), self._progress_name())
        try:
            result = explain_masks(
                self.forward_func, transform, Z3,
                lambda X, y, w: fit_model(self.interpretable_model, X, y, w, differentiable=differentiable,
                                          stderr=stderr, cluster=cluster, checked=validate),
                sample_weight=sample_weight, chunk_weight=None if sample_weight is not None else chunk_weight,
                target=target, perturbations_per_eval=perturbations_per_eval, validate=validate,
                progress=progress.update,
            )
        finally:
            progress.close()
        return result.fit, result.target.multi

    def _attribute_auto(
        self, inputs, target, additional_forward_args, perturbations_per_eval, show_progress, generator,
        differentiable, validate, kwargs, sampler, budget,
    ) -> SurrogateFit:
        """``n_samples="auto"``: rounds of ``perturbations_per_eval`` masks per example until each
        example's standard errors are under ``tol`` times its largest |weight| (the engine's
        :func:`~torchlime.functional.engine.explain_auto`), each example stopping on its own."""
        kind = self._builtin_kind()
        num_features = kwargs.get("num_interp_features")
        if (kind is None and sampler != "sobol") or num_features is None:
            raise ValueError(
                "expected torchlime to draw the masks for n_samples='auto' (Lime's or KernelShap's own "
                "perturb_func, or sampler='sobol' with num_interp_features), got a perturb_func of your own"
            )
        if not hasattr(self.interpretable_model, "stderr"):
            raise ValueError(
                f"expected one of torchlime's models (Ridge, LinearRegression, Lasso, LimeSurrogate) for "
                f"n_samples='auto': it stops on their standard errors; got {type(self.interpretable_model).__name__}"
            )
        instances = kwargs.get("num_instances")
        single = instances is None
        B = 1 if single else instances
        device = _first_tensor(inputs).device
        drawer = MaskSampler(sampler, int(num_features), kind=kind or "lime", batch_shape=(B,), device=device,
                             generator=generator)
        batched_transform = batched_impl(self.from_interp_rep_transform)

        def draw(r: int) -> tuple:
            drawn = drawer.draw(r)
            return drawn.masks, drawn.sample_weight, drawer.clusters

        def transform_for(members: list[int]) -> Any:
            sub_inputs, sub_kwargs, sub_args = inputs, kwargs, additional_forward_args
            if not single:
                idx = torch.tensor(members, device=device)
                sub_inputs, sub_args = select_examples(inputs, idx, B), select_examples(additional_forward_args, idx, B)
                sub_kwargs = {k: select_examples(v, idx, B) for k, v in kwargs.items()}
                sub_kwargs["num_instances"] = len(members)

            def transform(zc: Tensor) -> tuple:
                model_in = batched_transform(zc[0] if single else zc, sub_inputs, **sub_kwargs)
                args = expand_forward_args(sub_args, zc.shape[1])
                return (*(model_in if isinstance(model_in, tuple) else (model_in,)), *(args or ()))

            return transform

        def sample_weight(masks: Tensor, members: list[int]) -> Tensor:
            w = self._weights_from_masks(masks, members)
            if w is None:
                raise ValueError(
                    "expected a kernel computed from the masks for n_samples='auto' (Lime's and KernelShap's "
                    "defaults), got a similarity_func that needs the perturbed inputs"
                )
            return w

        def fit(X: Tensor, y: Tensor, w: Tensor, members: list[int], cluster: Any) -> SurrogateFit:
            return fit_model(self.interpretable_model, X, y, w, differentiable=differentiable, stderr=True,
                             cluster=cluster, checked=validate)

        progress = _progress(show_progress, None, self._progress_name())
        try:
            result = explain_auto(
                self.forward_func, transform_for, draw, fit, sample_weight=sample_weight, budget=budget,
                target=target, perturbations_per_eval=perturbations_per_eval, validate=validate,
                progress=progress.update,
            )
        finally:
            progress.close()
        return result.fit

    def _progress_name(self) -> str:
        """The progress bar's label before " attribution": Captum's ``get_name()`` ("Lime Base")."""
        return self.get_name()

    def _weights_from_masks(self, masks: Tensor, members: list[int] | None = None) -> Tensor | None:
        """Kernel weights ``(B, n)`` of all samples at once where they need no model input
        (``members``: the examples the masks belong to, all of them when None)."""
        return None

    def _weights(self, inputs: Any, model_in: Any, masks: Tensor, kwargs: dict) -> Tensor:
        """Step 3 for one chunk: kernel weights of its samples."""
        return batched_impl(self.similarity_func)(inputs, model_in, masks, **kwargs)


#: A dataset for the DataLoader iterators that stand in for Captum's fits (see ``_take_fit_draws``).
_NO_DATA = TensorDataset(torch.zeros(0))


def select_examples(obj: Any, index: Tensor, batch_size: int) -> Any:
    """The examples ``index`` of a per-example argument (Captum's convention: a tensor whose
    dim 0 is the batch, or a tuple of them); anything else is shared and passed as is."""
    if isinstance(obj, Tensor) and obj.dim() > 0 and obj.shape[0] == batch_size:
        return obj.index_select(0, index.to(obj.device))
    if isinstance(obj, tuple):
        return tuple(select_examples(o, index, batch_size) for o in obj)
    return obj


def _check_n_samples(n_samples: Any) -> None:
    if isinstance(n_samples, str):
        raise ValueError(f"expected n_samples as an integer >= 2 or 'auto', got {n_samples!r}")
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
