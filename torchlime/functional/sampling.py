"""Perturbation masks in the interpretable space: samplers, and Captum's own random stream.

Shape glossary: B instances, n perturbation samples (rows), N rows drawn so far,
F interpretable features.

Two families live here:

- generator-driven, batched samplers (:class:`MaskSampler`, :func:`sample_masks`,
  :func:`bernoulli_masks`, :func:`kernel_shap_masks`): every instance's masks in a few
  tensor calls, reproducible with a ``torch.Generator``;
- :func:`captum_kernel_shap_masks`: Captum's ``KernelShap`` draws, sample by sample, from
  torch's global random stream, so that ``torch.manual_seed(s)`` gives Captum's masks.

Samplers (``sampler=``):

- ``"iid"``: independent draws: Bernoulli(0.5) features for LIME, Captum's coalitions for
  KernelSHAP (size k with ``p(k) ∝ (F - 1) / (k (F - k))``, then k features uniformly).
- ``"paired"``: every drawn mask is followed by its complement ``1 - z`` (antithetic
  sampling; Covert & Lee 2021, "Improving KernelSHAP").
- ``"sobol"``: scrambled Sobol points (``torch.quasirandom.SobolEngine``, seeded from the
  generator, one sequence per instance). LIME: the point thresholded at 0.5. KernelSHAP:
  the point's first coordinate picks the coalition size (inverse CDF of the size
  distribution above) and the other F coordinates its members (the k largest), so the
  draws keep Captum's distribution.
- ``"leverage"`` (KernelSHAP): leverage-score sampling of coalitions, paired and without
  replacement (Musco & Witter, ICLR 2025). A coalition of size s has leverage
  ``∝ 1 / C(F, s)``, so every size gets the same share of the rows (capped by the number
  of coalitions of that size); within a size, coalitions are drawn uniformly without
  replacement, each with its complement. Rows are weighted ``mass(s) / m(s)`` (the
  Shapley kernel's mass of size s over the m(s) rows of that size drawn so far).
- ``"hybrid"`` (KernelSHAP): as R's kernelshap package, the first draw enumerates all
  coalitions of sizes 1 and F-1, then of 2 and F-2, and so on while they fit (leaving at
  least 2F rows for the rest), with their exact kernel weights; the other sizes are
  sampled paired from the kernel's size distribution restricted to them, each row weighted
  ``mass(rest) / m`` (m sampled rows so far).

KernelSHAP draws always start with the full and the empty coalition (rows 0 and 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_choice, check_int

__all__ = [
    "SAMPLERS",
    "LIME_SAMPLERS",
    "Draw",
    "MaskSampler",
    "sample_masks",
    "bernoulli_masks",
    "kernel_shap_masks",
    "captum_kernel_shap_masks",
    "shapley_size_mass",
    "check_masks",
    "check_generator",
]

#: Every sampler; KernelSHAP accepts all of them.
SAMPLERS = ("iid", "paired", "sobol", "leverage", "hybrid")
#: The samplers of LIME (and of ``LimeBase``): the ones that keep LIME's uniform masks.
LIME_SAMPLERS = ("iid", "paired", "sobol")
_KINDS = ("lime", "kernel_shap")
_SOBOL_MAX_DIM = 21201  # torch.quasirandom.SobolEngine.MAXDIM


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
    check_int(n_samples, "n_samples", 2)
    check_int(num_features, "num_features", 1)


def _device(device: torch.device | str | None, generator: torch.Generator | None) -> torch.device:
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    check_generator(generator, device)
    return device


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

    On the CPU with ``generator=None`` this consumes torch's global random stream exactly
    as Captum's ``Lime`` does for one example (one ``torch.bernoulli`` per sample).

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
    device = _device(device, generator)
    masks = _bernoulli((*batch_shape, n_samples, num_features), p, device, dtype, generator)
    if first_row_ones:
        masks[..., 0, :] = 1
    return masks


def _bernoulli(shape: tuple[int, ...], p: float, device: torch.device, dtype: torch.dtype, generator) -> Tensor:
    probs = torch.full(shape, p, device=device, dtype=torch.float32)
    return torch.bernoulli(probs, generator=generator).to(dtype)


def shapley_size_mass(num_features: int) -> Tensor:
    """The Shapley kernel's total mass of each coalition size: ``(F - 1) / (s (F - s))``.

    All ``C(F, s)`` coalitions of size s together weigh ``C(F, s) * kernel(s)``, which is
    this. Captum's ``KernelShap`` draws sizes in proportion to it.

    Args:
        num_features: F (>= 1).

    Returns:
        ``(F,)`` float64, index s = the size; sizes 0 (and F, not included) get 0.

    Example:
        >>> shapley_size_mass(4)
        tensor([0.0000, 1.0000, 0.7500, 1.0000], dtype=torch.float64)
    """
    F = check_int(num_features, "num_features", 1)
    s = torch.arange(F, dtype=torch.float64)
    mass = (F - 1) / (s * (F - s))
    mass[0] = 0.0
    return mass


def _sized_draws(
    rows: int, num_features: int, size_probs: Tensor, device: torch.device, dtype: torch.dtype, generator
) -> Tensor:
    """``rows`` coalitions: a size from ``size_probs`` (over 0..F-1), then that many features uniformly."""
    if num_features == 1:
        return torch.ones(rows, 1, device=device, dtype=dtype)
    probs = size_probs.to(device=device, dtype=torch.float32)
    # every row has the same size distribution: one draw of `rows` sizes (one row of `rows`
    # samples costs what one sample of a row costs; 1000 rows of one sample each took 5 ms)
    sizes = torch.multinomial(probs, max(rows, 1), replacement=True, generator=generator)[:rows].unsqueeze(-1)
    noise = torch.randn(rows, num_features, device=device, generator=generator)
    return _top_k(noise, sizes).to(dtype)


def _top_k(scores: Tensor, sizes: Tensor) -> Tensor:
    """Bool ``(rows, F)``: the ``sizes`` (``(rows, 1)``) largest scores of every row."""
    # one sort; the inverse permutation is a scatter, not a second sort
    order = scores.argsort(dim=-1, descending=True)
    kept = torch.arange(scores.shape[-1], device=scores.device) < sizes  # (rows, F): the first `size` places
    return torch.empty_like(kept).scatter_(-1, order, kept)


def kernel_shap_masks(
    n_samples: int,
    num_features: int,
    *,
    batch_shape: Sequence[int] = (),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw KernelSHAP coalitions with Captum's ``KernelShap`` scheme, batched.

    Row 0 is all ones, row 1 all zeros; every further row first draws a coalition size
    k with ``p(k) = (F - 1) / (k (F - k))`` for k in 1..F-1, then k features uniformly
    (the top-k of a Gaussian vector). Sampling sizes this way is equivalent to weighting
    uniform coalitions by the Shapley kernel, so the rows get weight 1 (and the two
    fixed rows a very large weight, see :func:`torchlime.functional.kernel_shap_weights`).
    All sizes are drawn in one call and all noise in another, so the random stream is not
    Captum's (see :func:`captum_kernel_shap_masks` for that).

    Args:
        n_samples: n, rows per instance (>= 2).
        num_features: F (>= 1). With F == 1 every further row is all ones.
        batch_shape: leading dims, e.g. ``(B,)``.
        device: where the masks live.
        dtype: dtype of the masks.
        generator: source of randomness; None uses torch's global RNG.

    Returns:
        Masks of shape ``(*batch_shape, n, F)``.

    Example:
        >>> m = kernel_shap_masks(5, 4, generator=torch.Generator().manual_seed(0))
        >>> m[:2].tolist(), m[2:].sum(-1).ge(1).all().item()
        ([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], True)
    """
    _check_sizes(n_samples, num_features)
    device = _device(device, generator)
    lead = (*batch_shape, n_samples - 2)
    rows = int(torch.Size(lead).numel())
    drawn = _sized_draws(rows, num_features, shapley_size_mass(num_features), device, dtype, generator)
    ones = torch.ones(*batch_shape, 1, num_features, device=device, dtype=dtype)
    return torch.cat([ones, torch.zeros_like(ones), drawn.reshape(*lead, num_features)], dim=-2)


def captum_kernel_shap_masks(
    n_samples: int,
    num_features: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """One example's KernelSHAP coalitions drawn exactly as Captum 0.9's ``KernelShap``.

    Captum's ``kernel_shap_perturb_generator`` yields the full and the empty coalition,
    then per sample draws a size from a ``Categorical`` and a ``torch.randn(1, F)`` (on
    the CPU, from torch's global random stream) and keeps the k largest values. This
    function makes the same calls in the same order (a Python loop over samples: slower
    than :func:`kernel_shap_masks`, which draws everything at once from a generator), so
    after ``torch.manual_seed(s)`` it returns Captum's masks and leaves the global stream
    where Captum leaves it. With F == 1 (where Captum's size distribution is empty) every
    further row is all ones and nothing is drawn.

    Args:
        n_samples: n, rows (>= 2).
        num_features: F (>= 1).
        device: where the masks are returned (drawn on the CPU, as Captum does).
        dtype: dtype of the masks.

    Returns:
        ``(n, F)`` masks.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> captum_kernel_shap_masks(4, 3)[:2]
        tensor([[1., 1., 1.],
                [0., 0., 0.]])
    """
    _check_sizes(n_samples, num_features)
    F = num_features
    rows = n_samples - 2
    if F == 1 or rows == 0:
        drawn = torch.ones(rows, F)
    else:
        # Captum's own expressions, so that the normalised probabilities are bit-identical.
        k = torch.arange(F, dtype=torch.float)
        probs = torch.tensor(F - 1) / (k * (F - k))
        probs[0] = 0.0
        probs_2d = torch.distributions.Categorical(probs).probs.reshape(1, -1)
        sizes, noise = [], []
        for _ in range(rows):  # Categorical.sample() is this multinomial call
            sizes.append(torch.multinomial(probs_2d, 1, True))
            noise.append(torch.randn(1, F))
        drawn = _top_k(torch.cat(noise), torch.cat(sizes))
    ones = torch.ones(1, F)
    masks = torch.cat([ones, torch.zeros_like(ones), drawn.to(ones.dtype)])
    return masks.to(device=device if device is not None else "cpu", dtype=dtype)


# -- samplers -----------------------------------------------------------------------------


class Draw(NamedTuple):
    """What a sampler returns.

    Attributes:
        masks: ``(*batch_shape, n, F)`` the masks of this draw.
        sample_weight: None when the masks follow the explainer's own sampling
            distribution (``"iid"``, ``"paired"``, ``"sobol"``: every weight 1). Otherwise
            (``"leverage"``, ``"hybrid"``) ``(*batch_shape, N)`` float64 importance weights
            of all N masks this sampler has drawn so far, this draw's last: they supersede
            the weights of earlier draws (a row's weight depends on how many rows of its
            kind were drawn in total). Multiply them into the explainer's kernel weights
            (for KernelSHAP: 1, and ``inf_weight`` for the full and empty rows, which get
            weight 1 here); they are scaled to average 1 over the other rows.
    """

    masks: Tensor
    sample_weight: Tensor | None


class MaskSampler:
    """A stateful mask sampler: successive :meth:`draw` calls continue one design.

    Made for sampling in rounds (an automatic budget): Sobol continues its sequence,
    ``"paired"`` keeps pairs within a round (an odd round ends with an unpaired mask),
    ``"hybrid"`` enumerates its exact part in the first round only, ``"leverage"`` never
    draws a coalition twice (its pairs continue across rounds: an odd round's last mask
    gets its complement first in the next round). The first round starts with the fixed
    rows (KernelSHAP: the full and the empty coalition; LIME with ``first_row_ones``: all
    ones, and for ``"paired"`` its complement, all zeros).

    With a generator, same seed, same masks. ``"sobol"`` and ``"leverage"`` draw on the CPU
    (their seeds come from the generator) and move the masks to ``device``.

    Args:
        sampler: one of :data:`SAMPLERS` (LIME: :data:`LIME_SAMPLERS`).
        num_features: F (>= 1).
        batch_shape: leading dims, e.g. ``(B,)``; every instance gets its own masks.
        kind: ``"lime"`` (uniform masks) or ``"kernel_shap"`` (Shapley-kernel coalitions).
        first_row_ones: LIME only: row 0 is all ones (the ``lime`` package's habit).
        device: where the masks live (default: the generator's device, else CPU).
        dtype: dtype of the masks.
        generator: source of randomness; None uses torch's global RNG.

    Raises:
        ValueError: unknown sampler or kind, a KernelSHAP-only sampler for LIME, F out of
            range, or a generator on another device.

    Example:
        >>> s = MaskSampler("paired", 4, batch_shape=(2,), generator=torch.Generator().manual_seed(0))
        >>> d = s.draw(6)
        >>> d.masks.shape, d.sample_weight, bool((d.masks[:, 0::2] + d.masks[:, 1::2] == 1).all())
        (torch.Size([2, 6, 4]), None, True)
        >>> s.draw(4).masks.shape, s.drawn
        (torch.Size([2, 4, 4]), 10)
    """

    def __init__(
        self,
        sampler: str,
        num_features: int,
        *,
        batch_shape: Sequence[int] = (),
        kind: str = "lime",
        first_row_ones: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        self.kind = check_choice(kind, "kind", _KINDS)
        self.sampler = check_choice(sampler, "sampler", SAMPLERS if kind == "kernel_shap" else LIME_SAMPLERS)
        self.num_features = check_int(num_features, "num_features", 1)
        self.batch_shape = tuple(int(b) for b in batch_shape)
        self.batch_size = int(torch.Size(self.batch_shape).numel())
        self.device = _device(device, generator)
        self.dtype = dtype
        self.generator = generator
        self.first_row_ones = bool(first_row_ones) and kind == "lime"
        if kind == "kernel_shap":
            self._fixed = 2
        else:
            self._fixed = (2 if sampler == "paired" else 1) if self.first_row_ones else 0
        self.drawn = 0
        self._clusters: list[Tensor] = []
        self._next_cluster = 0
        F = self.num_features
        if sampler == "sobol":
            dim = F + 1 if kind == "kernel_shap" else F
            if dim > _SOBOL_MAX_DIM:
                raise ValueError(
                    f"expected num_features <= {_SOBOL_MAX_DIM - (kind == 'kernel_shap')} for sampler='sobol' "
                    f"(torch.quasirandom.SobolEngine's limit), got {F}"
                )
            seeds = self._seeds(self.batch_size)
            self._sobol = [torch.quasirandom.SobolEngine(dim, scramble=True, seed=s) for s in seeds]
        if sampler == "leverage":
            self._leverage = _Leverage(F, self.batch_size, torch.Generator().manual_seed(self._seeds(1)[0]))
        if sampler == "hybrid":
            self._hybrid: _Hybrid | None = None  # planned at the first draw, from its size

    # -- public ---------------------------------------------------------------------------

    @property
    def clusters(self) -> Tensor:
        """``(N,)`` long: which independent draw each row drawn so far belongs to.

        -1 for rows that are not random (the fixed head, enumerated coalitions); a mask
        and its complement share an id ("paired", and the pairs of "leverage" and
        "hybrid"); every other row has its own. Standard errors count draws, not rows
        (:func:`torchlime.functional.uncertainty.sandwich_stderr`).
        """
        if not self._clusters:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat(self._clusters)

    def _record(self, fixed: int, r: int, exact: int = 0) -> None:
        """Cluster ids of a draw: ``fixed`` head rows, ``exact`` enumerated rows, ``r`` random."""
        ids = [torch.full((fixed + exact,), -1, dtype=torch.long)]
        random = r - exact
        if self.sampler in ("paired", "hybrid"):
            ids.append(self._next_cluster + torch.arange(random) // 2)
            self._next_cluster += (random + 1) // 2
        elif self.sampler == "leverage":  # pairs continue across rounds
            start = self.drawn + fixed - self._fixed
            ids.append((start + torch.arange(random)) // 2)
        else:
            ids.append(self._next_cluster + torch.arange(random))
            self._next_cluster += random
        self._clusters.append(torch.cat(ids))

    @property
    def remaining(self) -> int | None:
        """How many more rows this sampler can draw (None: no limit)."""
        if self.sampler == "leverage":
            return 2 + self._leverage.capacity - self.drawn
        if self.sampler == "hybrid":
            if self.num_features == 1:
                return 2 - self.drawn
            if self._hybrid is not None and not self._hybrid.rest:
                return self._hybrid.rows - self.drawn
        return None

    def draw(self, n: int) -> Draw:
        """The next ``n`` masks of every instance.

        Args:
            n: rows per instance (>= 1).

        Returns:
            :class:`Draw`: masks ``(*batch_shape, n, F)`` and the importance weights of
            every row drawn so far (or None).

        Raises:
            ValueError: n < 1, or more rows than a without-replacement design has left.
        """
        n = check_int(n, "n", 1)
        left = self.remaining
        if left is not None and n > left:
            raise ValueError(
                f"expected at most {left} more masks from sampler={self.sampler!r}: it draws each of the "
                f"2^{self.num_features} coalitions at most once and has drawn {self.drawn}; ask for fewer "
                f"samples (with all of them the estimate is exact)"
            )
        fixed = max(0, min(n, self._fixed - self.drawn))
        rows = self._fixed_rows(self.drawn, fixed)
        B, F = self.batch_size, self.num_features
        r = n - fixed
        weight = None
        if self.sampler == "iid":
            # Rows of a first round are drawn and then overwritten where fixed: one-shot draws
            # equal bernoulli_masks / kernel_shap_masks on the same generator.
            if self.kind == "lime":
                body = _bernoulli((B, n, F), 0.5, self.device, self.dtype, self.generator)
                if fixed:
                    body[:, :fixed] = rows
                self._record(fixed, n - fixed)
                self.drawn += n
                return Draw(body.reshape(*self.batch_shape, n, F), None)
            body = self._base(B * r).reshape(B, r, F)
        elif self.sampler == "paired":
            half = self._base(B * ((r + 1) // 2)).reshape(B, (r + 1) // 2, 1, F)
            body = torch.cat([half, 1 - half], dim=2).reshape(B, -1, F)[:, :r]
        elif self.sampler == "sobol":
            body = self._sobol_rows(r)
        elif self.sampler == "leverage":
            body = self._leverage.draw(r).to(self.device, self.dtype)
            weight = self._leverage.weights()
        else:
            if self._hybrid is None:
                self._hybrid = _Hybrid(F, n)
            before = self._hybrid.sampled
            body, weight = self._hybrid.draw(self.drawn + fixed, r, self)
            self._record(fixed, r, exact=r - (self._hybrid.sampled - before))
        if self.sampler != "hybrid":
            self._record(fixed, r)
        masks = torch.cat([rows.expand(B, fixed, F), body], dim=1) if fixed else body
        self.drawn += n
        if weight is not None:
            weight = torch.cat([torch.ones(self._fixed, dtype=torch.float64), weight])[: self.drawn]
            weight = weight.to(self.device).repeat(B, 1).reshape(*self.batch_shape, -1)
        return Draw(masks.reshape(*self.batch_shape, n, F), weight)

    # -- internals ------------------------------------------------------------------------

    def _seeds(self, count: int) -> list[int]:
        device = self.generator.device if self.generator is not None else self.device
        return torch.randint(0, 2**62, (count,), device=device, generator=self.generator).tolist()

    def _fixed_rows(self, start: int, count: int) -> Tensor:
        """Rows ``start .. start + count`` of the fixed head: ones, then zeros."""
        ones = torch.ones(1, self.num_features, device=self.device, dtype=self.dtype)
        head = torch.cat([ones, torch.zeros_like(ones)])[: self._fixed]
        return head[start : start + count].unsqueeze(0)

    def _base(self, rows: int, size_probs: Tensor | None = None) -> Tensor:
        """``(rows, F)`` independent masks of this kind (``size_probs``: KernelSHAP sizes)."""
        if self.kind == "lime":
            return _bernoulli((rows, self.num_features), 0.5, self.device, self.dtype, self.generator)
        probs = shapley_size_mass(self.num_features) if size_probs is None else size_probs
        return _sized_draws(rows, self.num_features, probs, self.device, self.dtype, self.generator)

    def _sobol_rows(self, r: int) -> Tensor:
        points = torch.stack([engine.draw(r) for engine in self._sobol]).to(torch.float64)  # (B, r, dim)
        if self.kind == "lime":
            masks = points >= 0.5
        elif self.num_features == 1:
            masks = torch.ones(*points.shape[:2], 1, dtype=torch.bool)
        else:
            mass = shapley_size_mass(self.num_features)
            cdf = (mass.cumsum(0) / mass.sum()).contiguous()
            cdf[-1] = 1.0
            sizes = torch.searchsorted(cdf, points[..., :1].contiguous(), right=True)
            masks = _top_k(points[..., 1:], sizes)
        return masks.to(self.device, self.dtype)


def sample_masks(
    n_samples: int,
    num_features: int,
    *,
    sampler: str = "iid",
    kind: str = "lime",
    batch_shape: Sequence[int] = (),
    first_row_ones: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Draw:
    """Draw ``n_samples`` masks per instance with one sampler (one round of :class:`MaskSampler`).

    ``sampler="iid"`` gives exactly :func:`bernoulli_masks` (``kind="lime"``) or
    :func:`kernel_shap_masks` (``kind="kernel_shap"``) on the same generator.

    Args:
        n_samples: n (>= 2).
        num_features: F (>= 1).
        sampler: see :data:`SAMPLERS` and the module docstring.
        kind: ``"lime"`` or ``"kernel_shap"``.
        batch_shape: leading dims, e.g. ``(B,)``.
        first_row_ones: LIME only: row 0 all ones.
        device: where the masks live.
        dtype: dtype of the masks.
        generator: source of randomness; None uses torch's global RNG.

    Returns:
        :class:`Draw` with masks ``(*batch_shape, n, F)`` and ``sample_weight``
        ``(*batch_shape, n)`` or None.

    Example:
        >>> d = sample_masks(16, 5, sampler="leverage", kind="kernel_shap",
        ...                  generator=torch.Generator().manual_seed(0))
        >>> d.masks.shape, d.sample_weight.shape, len({tuple(r) for r in d.masks.tolist()})
        (torch.Size([16, 5]), torch.Size([16]), 16)
    """
    check_int(n_samples, "n_samples", 2)
    return MaskSampler(
        sampler, num_features, batch_shape=batch_shape, kind=kind, first_row_ones=first_row_ones,
        device=device, dtype=dtype, generator=generator,
    ).draw(n_samples)


# -- leverage and hybrid designs (CPU bookkeeping, masks moved to the device) -------------


def _pack(rows: Tensor) -> list[int]:
    """One Python int per bool row ``(m, F)``: the coalition's key."""
    import numpy as np

    packed = np.packbits(rows.cpu().numpy().astype(bool), axis=1)
    return [int.from_bytes(r.tobytes(), "big") for r in packed]


class _Leverage:
    """Leverage-score design: equal rows per size, distinct pairs (z, 1 - z), nested rounds.

    A pair class is a size s < F / 2 (pairs: a size-s coalition and its complement), or
    the middle size F / 2 (pairs of two size-F/2 coalitions). Pairs go one by one to the
    class whose rows-per-size level is lowest after adding it (ties: a random priority
    drawn once), capped at the class's number of pairs; so every prefix of the sequence
    is the same design with fewer rows, and rounds never repeat a coalition.
    """

    def __init__(self, num_features: int, batch: int, generator: torch.Generator) -> None:
        F = num_features
        self.F, self.batch, self.gen = F, batch, generator
        self.classes = list(range(1, F // 2 + 1)) if F > 1 else []  # first-member sizes
        self.middle = [F % 2 == 0 and s == F // 2 for s in self.classes]
        self.caps = [math.comb(F, s) // (2 if mid else 1) for s, mid in zip(self.classes, self.middle)]
        self.capacity = 2 * sum(self.caps)  # rows besides the full and empty coalitions
        order = torch.randperm(len(self.classes), generator=generator).tolist() if self.classes else []
        self.priority = {j: p for p, j in enumerate(order)}
        self.pairs = [0] * len(self.classes)
        self.used: list[list[set[int]]] = [[set() for _ in self.classes] for _ in range(batch)]
        self.pending: Tensor | None = None  # (B, F) complements owed to the next round
        self.sizes: list[int] = []  # size of every row drawn, in order
        self.mass = shapley_size_mass(F)

    def _next_classes(self, count: int) -> list[int]:
        import heapq

        heap = []
        for j, s in enumerate(self.classes):
            if self.pairs[j] < self.caps[j]:
                inc = 2 if self.middle[j] else 1
                heapq.heappush(heap, (inc * self.pairs[j] + inc, self.priority[j], j))
        seq = []
        for _ in range(count):
            _, p, j = heapq.heappop(heap)
            seq.append(j)
            self.pairs[j] += 1
            if self.pairs[j] < self.caps[j]:
                inc = 2 if self.middle[j] else 1
                heapq.heappush(heap, (inc * self.pairs[j] + inc, p, j))
        return seq

    def _new_members(self, b: int, j: int, count: int) -> Tensor:
        """``count`` distinct first members of class j for instance b, never drawn before."""
        F, s, used = self.F, self.classes[j], self.used[b][j]
        fixed0 = self.middle[j]  # middle pairs are keyed by the member that holds feature 0
        free, k = (F - 1, s - 1) if fixed0 else (F, s)
        cap = self.caps[j]
        out: list[Tensor] = []
        if cap < 2 * (len(used) + count):  # nearly exhausted: enumerate the class
            combos = torch.combinations(torch.arange(free), k) if k > 0 else torch.zeros(1, 0, dtype=torch.long)
            rows = torch.zeros(combos.shape[0], free, dtype=torch.bool)
            rows.scatter_(1, combos, True)
            if fixed0:
                rows = torch.cat([torch.ones(rows.shape[0], 1, dtype=torch.bool), rows], 1)
            keys = _pack(rows)
            fresh = [i for i, key in enumerate(keys) if key not in used]
            pick = torch.tensor(fresh)[torch.randperm(len(fresh), generator=self.gen)[:count]]
            chosen = rows[pick]
            used.update(keys[i] for i in pick.tolist())
            return chosen
        need = count
        while need:
            scores = torch.rand(2 * need + 8, free, generator=self.gen)
            rows = _top_k(scores, torch.full((scores.shape[0], 1), k))
            if fixed0:
                rows = torch.cat([torch.ones(rows.shape[0], 1, dtype=torch.bool), rows], 1)
            for row, key in zip(rows, _pack(rows)):
                if key not in used:
                    used.add(key)
                    out.append(row)
                    need -= 1
                    if not need:
                        break
        return torch.stack(out)

    def draw(self, r: int) -> Tensor:
        """The next ``r`` rows of every instance, ``(B, r, F)`` bool."""
        B, F = self.batch, self.F
        head = []
        if self.pending is not None and r:
            head.append(self.pending.unsqueeze(1))
            self.sizes.append(int(self.pending[0].sum()))
            self.pending = None
            r -= 1
        n_pairs = (r + 1) // 2
        seq = self._next_classes(n_pairs)
        first = torch.zeros(B, n_pairs, F, dtype=torch.bool)
        for j in set(seq):
            where = [i for i, c in enumerate(seq) if c == j]
            for b in range(B):
                first[b, where] = self._new_members(b, j, len(where))
        if any(self.middle[j] for j in seq):  # a middle pair's first member: either half
            swap = torch.rand(B, n_pairs, 1, generator=self.gen) < 0.5
            swap &= torch.tensor([self.middle[j] for j in seq]).reshape(1, -1, 1)
            first = torch.where(swap, ~first, first)
        pairs = torch.stack([first, ~first], dim=2).reshape(B, 2 * n_pairs, F)
        for j in seq:
            self.sizes += [self.classes[j], F - self.classes[j]]
        if 2 * n_pairs > r:  # odd: the last complement opens the next round
            self.pending = pairs[:, -1]
            pairs = pairs[:, :-1]
            self.sizes.pop()
        return torch.cat([*head, pairs], dim=1)

    def weights(self) -> Tensor:
        """``(N,)`` float64 weights of every drawn row (besides the two fixed ones)."""
        sizes = torch.tensor(self.sizes, dtype=torch.long)
        counts = torch.bincount(sizes, minlength=self.F).to(torch.float64)
        w = self.mass[sizes] / counts[sizes]
        return w * (len(self.sizes) / float(self.mass.sum())) if len(self.sizes) else w


class _Hybrid:
    """R kernelshap's hybrid: sizes 1, F-1, 2, F-2, ... enumerated while they fit, the rest sampled.

    Planned from the first round's size: degree d (sizes 1..d and F-d..F-1) is enumerated
    when its rows fit in that round and leave at least 2F rows to sample the other sizes
    (or none are left). Enumerated rows weigh their exact kernel weight; sampled rows share
    the other sizes' kernel mass equally.
    """

    def __init__(self, num_features: int, first_round: int) -> None:
        F = num_features
        self.F = F
        self.mass = shapley_size_mass(F)
        exact_rows = degree = 0
        for d in range(1, F // 2 + 1):
            add = math.comb(F, d) * (1 if 2 * d == F else 2)
            left = first_round - 2 - exact_rows - add
            if left < 0 or (F - 1 - 2 * d > 0 and left < 2 * F):
                break
            exact_rows, degree = exact_rows + add, d
        self.degree = degree
        self.rest = [s for s in range(1, F) if degree < s < F - degree]
        self.rows = 2 + exact_rows  # the full and empty coalitions, then the enumerated ones
        self.rest_mass = float(self.mass[self.rest].sum()) if self.rest else 0.0
        self.rest_probs = torch.zeros(F, dtype=torch.float64)
        self.rest_probs[self.rest] = self.mass[self.rest]
        self.exact_weight = torch.zeros(0, dtype=torch.float64)
        self.sampled = 0

    def _enumerate(self) -> Tensor:
        """Every coalition of sizes 1..d, each followed by its complement: ``(rows - 2, F)`` bool."""
        F, rows = self.F, []
        for s in range(1, self.degree + 1):
            if 2 * s == F:  # pairs of halves: the half holding feature 0, then its complement
                rest = torch.combinations(torch.arange(1, F), s - 1) if s > 1 else torch.zeros(1, 0, dtype=torch.long)
                combos = torch.cat([torch.zeros(rest.shape[0], 1, dtype=torch.long), rest], 1)
            else:
                combos = torch.combinations(torch.arange(F), s)
            z = torch.zeros(combos.shape[0], F, dtype=torch.bool).scatter_(1, combos, True)
            rows.append(torch.stack([z, ~z], 1).reshape(-1, F))
        return torch.cat(rows) if rows else torch.zeros(0, F, dtype=torch.bool)

    def draw(self, start: int, r: int, sampler: MaskSampler) -> tuple[Tensor, Tensor]:
        """Rows ``start .. start + r`` (``(B, r, F)``) and the weights of all rows after the fixed two."""
        B, F = sampler.batch_size, self.F
        parts = []
        if start < self.rows:  # the first round holds the whole enumerated part
            exact = self._enumerate()
            sizes = exact.sum(-1)
            binom = torch.tensor([float(math.comb(F, s)) for s in range(F + 1)], dtype=torch.float64)
            self.exact_weight = self.mass[sizes.clamp(max=F - 1)] / binom[sizes]
            parts.append(exact.to(sampler.device, sampler.dtype).unsqueeze(0).expand(B, -1, -1))
            r -= exact.shape[0]
        if r:
            if not self.rest:
                raise ValueError(
                    f"expected at most {self.rows} masks from sampler='hybrid' with {F} features: it has "
                    f"enumerated every coalition"
                )
            half = sampler._base(B * ((r + 1) // 2), self.rest_probs).reshape(B, (r + 1) // 2, 1, F)
            parts.append(torch.cat([half, 1 - half], dim=2).reshape(B, -1, F)[:, :r])
            self.sampled += r
        body = torch.cat(parts, dim=1) if parts else torch.zeros(B, 0, F, device=sampler.device, dtype=sampler.dtype)
        sampled_w = torch.full((self.sampled,), self.rest_mass / max(self.sampled, 1), dtype=torch.float64)
        w = torch.cat([self.exact_weight, sampled_w])
        return body, w * (w.numel() / float(self.mass.sum())) if w.numel() else w


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
