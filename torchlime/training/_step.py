"""``ExplainStep``: a LIME explanation of fixed size, built once and called every training step.

Shape glossary: B instances, n perturbation samples, c samples per forward chunk,
F interpretable features, K targets, S stems, G segments, C channels, T audio samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_int
from ..functional import surrogate as S
from ..functional.engine import explain_masks, model_outputs, parse_target, select_targets
from ..functional.kernels import mask_kernel_weights
from ..functional.sampling import bernoulli_masks
from ..functional.audio import pcm_to_float
from ..functional.segments import compose_segments, even_boundaries, segment_feature_names
from ..models import Lasso, LinearRegression, Ridge, check_differentiable, fit_model

__all__ = ["ExplainStep", "StemsTransform", "check_differentiable"]


class ExplainStep:
    """One LIME explanation of a fixed size: masks, model inputs, forward, kernel, surrogate fit.

    Built once for ``n_samples`` masks over ``num_features`` features and called on a batch
    of B instances every training step. It is a thin layer over torchlime's engine
    (:func:`torchlime.functional.engine.explain_masks`) with every host sync switched
    off: for a fixed B the call has static shapes and no host-device synchronisation (no
    ``.item()``, no branch on tensor values), so it runs under
    ``torch.compile(step, fullgraph=True)`` and inside a CUDA graph. With
    ``differentiable=True`` the coefficients keep the autograd graph to the model's
    parameters: the weighted ridge solution is linear in the model's outputs.

    Random masks come from a ``torch.Generator`` on the instances' device through
    :meth:`draw`. Dynamo cannot trace a ``torch.Generator`` argument (it breaks the graph),
    so under ``torch.compile`` draw the masks outside the compiled call and pass them in:
    ``fit = compiled(original, step.draw(B, generator=g))``. Eagerly,
    ``step(original, generator=g)`` draws them itself.

    Weights are lime's kernel on the cosine distance between each mask and the all-ones
    mask (:func:`torchlime.functional.mask_kernel_weights`), or a kernel of your own.

    Args:
        forward: the model: ``forward(*inputs)`` returns ``(rows, K_out)`` or ``(rows,)`` for
            the ``rows = B * c`` model inputs of a chunk.
        transform: batched, as for :class:`torchlime.LimeBase`: ``transform(masks (B, c, F),
            original)`` returns the model inputs (a tensor or a tuple of them) of the B * c
            perturbed samples, rows instance-major (row ``b * c + s``).
        num_features: F.
        n_samples: n masks per instance (>= 2).
        interpretable_model: ``torchlime.models.Ridge`` (default ``Ridge(alpha=1.0)``;
            with alpha > 0 solved by a Cholesky factor and two triangular solves, which CUDA
            graphs capture), ``LinearRegression`` (iterated Tikhonov on a Cholesky factor,
            the sync-free minimum-norm solve), or ``Lasso`` (its sync-free FISTA; not
            differentiable, and too long a loop to compile well). The model fits itself
            (:meth:`torchlime.models.TorchLinearModel.fit_tensors` with ``sync_free=True``).
        kernel_width: w of the default kernel (lime's image explainer: 0.25).
        kernel: ``kernel(masks (B, n, F)) -> (B, n)`` weights, instead of the default.
        first_row_ones: :meth:`draw` sets row 0 of every instance to all ones (the
            unperturbed instance, so ``outputs[:, 0]`` is the model's prediction).
        perturbations_per_eval: at most this many samples per instance per forward call
            (None: all n; ``chunk_size`` is its deprecated alias).
        differentiable: keep the autograd graph from the model's outputs to the coefficients.

    Raises:
        ValueError: bad sizes, or an interpretable model that cannot do what is asked
            (see :func:`torchlime.models.check_differentiable`).

    Example:
        >>> import torch
        >>> from torchlime.training import ExplainStep
        >>> net = torch.nn.Linear(4, 2)
        >>> step = ExplainStep(net, lambda z, x: (z * x.unsqueeze(1)).flatten(0, 1),
        ...                    num_features=4, n_samples=64)
        >>> x = torch.randn(3, 4)
        >>> masks = step.draw(3, generator=torch.Generator().manual_seed(0))
        >>> fit = step(x, masks)
        >>> fit.coef.shape  # (B, K, F)
        torch.Size([3, 2, 4])
        >>> compiled = torch.compile(step, fullgraph=True)  # same result, one graph
    """

    def __init__(
        self,
        forward: Callable[..., Tensor],
        transform: Callable[[Tensor, Any], Any],
        *,
        num_features: int,
        n_samples: int,
        interpretable_model: Ridge | LinearRegression | Lasso | None = None,
        kernel_width: float = 0.25,
        kernel: Callable[[Tensor], Tensor] | None = None,
        first_row_ones: bool = True,
        perturbations_per_eval: int | None = None,
        differentiable: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        if not callable(forward):
            raise TypeError(f"expected forward to be callable, got {type(forward).__name__}")
        if not callable(transform):
            raise TypeError(f"expected transform to be callable, got {type(transform).__name__}")
        self.num_features = check_int(num_features, "num_features", 1)
        self.n_samples = check_int(n_samples, "n_samples", 2)
        if chunk_size is not None:
            warnings.warn("ExplainStep(chunk_size=...) is deprecated; use perturbations_per_eval=",
                          DeprecationWarning, stacklevel=2)
            check_int(chunk_size, "chunk_size", 1)
            perturbations_per_eval = chunk_size if perturbations_per_eval is None else perturbations_per_eval
        if perturbations_per_eval is not None:
            check_int(perturbations_per_eval, "perturbations_per_eval", 1)
        if not kernel_width > 0:
            raise ValueError(f"expected kernel_width > 0, got {kernel_width}")
        if kernel is not None and not callable(kernel):
            raise TypeError(f"expected kernel to be callable or None, got {type(kernel).__name__}")
        model = Ridge(alpha=1.0) if interpretable_model is None else interpretable_model
        if differentiable:
            check_differentiable(model)
        if not getattr(model, "supports_sync_free", False):
            raise ValueError(
                f"expected an interpretable model that fits without host synchronisation "
                f"(torchlime.models.Ridge, LinearRegression or Lasso), got {type(model).__name__}"
            )
        self.forward = forward
        self.transform = transform
        self.interpretable_model = model
        self.kernel_width = float(kernel_width)
        self.kernel = kernel
        self.first_row_ones = bool(first_row_ones)
        self.perturbations_per_eval = perturbations_per_eval
        self.differentiable = bool(differentiable)

    @property
    def chunk_size(self) -> int | None:
        """Deprecated name of :attr:`perturbations_per_eval`."""
        return self.perturbations_per_eval

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_features={self.num_features}, n_samples={self.n_samples}, "
            f"interpretable_model={type(self.interpretable_model).__name__}, "
            f"differentiable={self.differentiable})"
        )

    # -- the parts -----------------------------------------------------------------------

    def draw(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Bernoulli(0.5) masks ``(B, n, F)`` (row 0 all ones with ``first_row_ones``).

        One random op on the generator's device, no host sync. Call it outside a compiled
        region (dynamo cannot trace a generator).

        Args:
            batch_size: B.
            generator: source of randomness (None: torch's global RNG).
            device: where the masks live (default: the generator's device, else CPU).
            dtype: dtype of the masks.
        """
        check_int(batch_size, "batch_size", 1)
        return bernoulli_masks(
            self.n_samples, self.num_features, batch_shape=(batch_size,), first_row_ones=self.first_row_ones,
            device=device, dtype=dtype, generator=generator,
        )

    def outputs(self, original: Any, masks: Tensor) -> Tensor:
        """The model's outputs on every perturbed sample: ``(B, n, K_out)``.

        Runs in the caller's grad mode (``__call__`` sets it from ``differentiable``).

        Args:
            original: what ``transform`` receives (the B instances).
            masks: ``(B, n, F)``.

        Raises:
            ValueError: masks of the wrong shape, or a forward with the wrong number of rows.
        """
        self._check_masks(masks)
        return model_outputs(
            self.forward, lambda z: self.transform(z, original), masks, target="all",
            perturbations_per_eval=self.perturbations_per_eval,
        ).outputs

    def sample_weight(self, masks: Tensor) -> Tensor:
        """Kernel weights ``(B, n)`` of the masks (scikit-learn's ``sample_weight``)."""
        if self.kernel is not None:
            return self.kernel(masks)
        return mask_kernel_weights(masks, self.kernel_width)

    def weights(self, masks: Tensor) -> Tensor:
        """Deprecated name of :meth:`sample_weight`."""
        warnings.warn("ExplainStep.weights is deprecated; use sample_weight", DeprecationWarning, stacklevel=2)
        return self.sample_weight(masks)

    def _fit(self, X: Tensor, y: Tensor, w: Tensor) -> S.SurrogateFit:
        return fit_model(self.interpretable_model, X, y, w, differentiable=self.differentiable, sync_free=True)

    def fit(self, masks: Tensor, outputs: Tensor, target: int | Tensor | None = None) -> S.SurrogateFit:
        """Kernel weights and the surrogate fit for given outputs.

        Args:
            masks: ``(B, n, F)``.
            outputs: ``(B, n, K_out)`` from :meth:`outputs`.
            target: None (explain every output: coefficients ``(B, K_out, F)``, or ``(B, F)``
                for a single output), an int (one output for all: ``(B, F)``), a ``(B,)``
                integer tensor (one output per instance, e.g. its label: ``(B, F)``) or a
                ``(B, K)`` integer tensor (``(B, K, F)``). Tensor targets are gathered on the
                device, unchecked (checking their values would sync).

        Returns:
            :class:`torchlime.functional.SurrogateFit` in the outputs' float dtype.
        """
        self._check_masks(masks)
        if not isinstance(outputs, Tensor) or outputs.dim() != 3:
            shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(f"expected outputs of shape (B, n, K), got shape {shape}")
        if not outputs.dtype.is_floating_point:
            outputs = outputs.float()
        B, n, K = outputs.shape
        parsed = parse_target(_step_target(target, K), B, (K,), default="all", device=outputs.device)
        y = select_targets(outputs.reshape(B * n, K), parsed, B, n)
        fit = self._fit(masks.to(y.dtype), y, self.sample_weight(masks))
        return fit if parsed.multi else type(fit)(*(None if v is None else v[:, 0] for v in fit))

    def __call__(
        self,
        original: Any,
        masks: Tensor | None = None,
        *,
        target: int | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> S.SurrogateFit:
        """Explain B instances: the engine's loop with no host sync.

        Args:
            original: what ``transform`` receives (the B instances).
            masks: ``(B, n, F)`` from :meth:`draw` (required under ``torch.compile``).
            target: see :meth:`fit`.
            generator: draws the masks when ``masks`` is None (eager only); B is read from
                the first tensor in ``original``.

        Returns:
            :class:`torchlime.functional.SurrogateFit`: ``coef`` ``(B, K, F)`` or ``(B, F)``,
            ``intercept``, ``score`` (weighted R^2), ``local_pred``.
        """
        if masks is None:
            first = _first_tensor(original)
            masks = self.draw(first.shape[0], generator=generator, device=first.device)
        self._check_masks(masks)
        grad = torch.enable_grad() if self.differentiable else torch.no_grad()
        with grad:
            return explain_masks(
                self.forward, lambda z: self.transform(z, original), masks, self._fit,
                sample_weight=self.sample_weight, target=lambda first: _step_target(target, first.reshape(first.shape[0], -1).shape[1]),
                default_target="all", perturbations_per_eval=self.perturbations_per_eval, validate=False,
            ).fit

    def _check_masks(self, masks: Tensor) -> None:
        if not isinstance(masks, Tensor):
            raise TypeError(f"expected masks to be a torch.Tensor, got {type(masks).__name__}")
        if masks.dim() != 3 or masks.shape[1:] != (self.n_samples, self.num_features):
            raise ValueError(
                f"expected masks of shape (B, {self.n_samples}, {self.num_features}), got shape "
                f"{tuple(masks.shape)}"
            )


def _step_target(target: Any, num_outputs: int) -> Any:
    """ExplainStep's None: every output, or the one output as a single target (no K dim)."""
    if target is None and num_outputs == 1:
        return 0
    return target


def _first_tensor(obj: Any) -> Tensor:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        for item in obj:
            try:
                return _first_tensor(item)
            except TypeError:
                continue
    raise TypeError(f"expected a tensor (or a tuple, list or dict holding one), got {type(obj).__name__}")


class StemsTransform:
    """Batched transform for songs given as stems: features are stems x segments.

    ``original`` is ``(stems, *extra)``: stems ``(B, S, C, T)`` of B songs of the same
    length (floating point, or integer PCM scaled as soundfile reads it), and further model inputs (lyric ``input_ids`` and ``attention_mask``, say) that
    are held fixed and repeated for every sample. Features are ordered segment-major and
    named like :class:`torchlime.music.StemFactorization` names them (``vocals_T3`` is
    feature ``3 * S + 0``); segments are even. Composition is
    :func:`torchlime.functional.compose_segments` (shape-static under ``torch.compile`` and
    autograd, in place otherwise).

    Args:
        stem_names: the S stem names.
        num_segments: G.

    Example:
        >>> t = StemsTransform(["vocals", "drums"], num_segments=2)
        >>> t.feature_names
        ['vocals_T0', 'drums_T0', 'vocals_T1', 'drums_T1']
        >>> audio, ids = t(torch.ones(3, 5, 4), (torch.randn(3, 2, 1, 100), torch.zeros(3, 7)))
        >>> audio.shape, ids.shape
        (torch.Size([15, 1, 100]), torch.Size([15, 7]))
    """

    def __init__(
        self, stem_names: Sequence[str] = ("vocals", "drums", "bass", "other"), num_segments: int = 10
    ) -> None:
        self.stem_names = [str(s) for s in stem_names]
        if not self.stem_names:
            raise ValueError("expected at least one stem name, got none")
        self.num_segments = check_int(num_segments, "num_segments", 1)

    @property
    def num_features(self) -> int:
        """S * G."""
        return len(self.stem_names) * self.num_segments

    @property
    def feature_names(self) -> list[str]:
        """``<stem>_T<g>``, segment-major (:func:`torchlime.functional.segment_feature_names`)."""
        return segment_feature_names(self.stem_names, self.num_segments)

    def __call__(self, masks: Tensor, original: Any) -> tuple[Tensor, ...]:
        """Model inputs ``(audio (B * c, C, T), *extra repeated)`` for masks ``(B, c, S * G)``."""
        stems, *extra = original if isinstance(original, (tuple, list)) else (original,)
        if stems.dim() != 4 or stems.shape[1] != len(self.stem_names):
            raise ValueError(
                f"expected stems of shape (B, {len(self.stem_names)}, C, T), got shape {tuple(stems.shape)}"
            )
        c = masks.shape[1]
        boundaries = even_boundaries(stems.shape[-1], self.num_segments)
        audio = compose_segments(pcm_to_float(stems), masks, boundaries).flatten(0, 1)
        return (audio, *(e.repeat_interleave(c, dim=0) for e in extra))
