"""Every tensor function of ``torchlime.functional.__all__``: a batch equals a loop of single calls.

As torchaudio's ``batch_consistency_test.py``: for B = 1 and B = 3, calling a function on
inputs with a leading batch dim equals stacking its results on each instance alone. Device
and dtype come from the fixtures. Random draws (the samplers) are not batch-consistent by
design (a batch draws one stream): their distributions are tested in test_samplers.py.
A test at the bottom checks that every name of ``__all__`` is covered here or listed as
not a batched tensor function, so a new function cannot skip this suite.
"""

from __future__ import annotations

import pytest
import torch

import torchlime.functional as TF

N, F, K = 24, 5, 2


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def masks(B, n=N, f=F, seed=0):
    return torch.bernoulli(torch.full((B, n, f), 0.5), generator=rng(seed))


def outputs(B, n=N, k=K, seed=1):
    return torch.randn(B, n, k, generator=rng(seed))


def weights(B, n=N, seed=2):
    return torch.rand(B, n, generator=rng(seed)) + 0.1


def coef(B, f=F, seed=3):
    return torch.randn(B, f, generator=rng(seed))


# name -> (build(B) -> tuple of batched args, kwargs, indices of args that carry the batch dim)
CASES = {
    "cosine_distance": (lambda B: (masks(B), torch.ones(B, 1, F)), {}, (0, 1)),
    "euclidean_distance": (lambda B: (masks(B), torch.ones(B, 1, F)), {}, (0, 1)),
    "hamming_distance": (lambda B: (masks(B), torch.ones(B, 1, F)), {}, (0, 1)),
    "pairwise_distance": (lambda B: (masks(B), torch.ones(B, F)), {"metric": "cosine"}, (0, 1)),
    "lime_kernel": (lambda B: (torch.rand(B, N, generator=rng(4)),), {"kernel_width": 0.5}, (0,)),
    "exp_kernel": (lambda B: (torch.rand(B, N, generator=rng(4)),), {"kernel_width": 0.5}, (0,)),
    "shapley_kernel": (lambda B: (masks(B),), {}, (0,)),
    "kernel_shap_weights": (lambda B: (masks(B),), {}, (0,)),
    "mask_kernel_weights": (lambda B: (masks(B),), {"kernel_width": 0.5, "reference": "first"}, (0,)),
    "ridge": (lambda B: (masks(B), outputs(B), weights(B)), {"alpha": 1.0}, (0, 1, 2)),
    "linear_regression": (lambda B: (masks(B), outputs(B), weights(B)), {}, (0, 1, 2)),
    "lasso": (lambda B: (masks(B), outputs(B), weights(B)), {"alpha": 0.01}, (0, 1, 2)),
    "weighted_r2": (lambda B: (outputs(B), outputs(B, seed=5), weights(B)), {}, (0, 1, 2)),
    "lime_fit": (lambda B: (masks(B), outputs(B), weights(B), 3, "forward_selection"), {}, (0, 1, 2)),
    "select_features": (lambda B: (masks(B), outputs(B), weights(B), 3, "highest_weights"), {}, (0, 1, 2)),
    "sandwich_stderr": (
        lambda B: (masks(B), outputs(B), weights(B), torch.randn(B, K, F, generator=rng(6)), torch.randn(B, K, generator=rng(7))),
        {}, (0, 1, 2, 3, 4),
    ),
    "stable_top_k": (lambda B: (coef(B), coef(B, seed=8).abs() * 0.1, 2), {}, (0, 1)),
    "global_importance": (
        lambda B: (torch.rand(B, 3, F, generator=rng(9)), torch.randint(1, 5, (B, 3, F), generator=rng(10)).float()),
        {}, (0, 1),
    ),
    "global_importance_update": (
        lambda B: (torch.randn(B, 6, F, generator=rng(11)), torch.randint(0, 3, (B, 6), generator=rng(12)), 3),
        {"top_k": 2}, (0, 1),
    ),
    "feature_entropy": (lambda B: (torch.rand(B, 3, F, generator=rng(13)),), {}, (0,)),
    "feature_ranking": (lambda B: (coef(B),), {}, (0,)),
    "deletion_masks": (lambda B: (coef(B),), {}, (0,)),
    "insertion_masks": (lambda B: (coef(B),), {}, (0,)),
    "aopc": (lambda B: (torch.rand(B, F + 1, generator=rng(14)),), {}, (0,)),
    "area_under_curve": (lambda B: (torch.rand(B, F + 1, generator=rng(14)),), {}, (0,)),
    "spearman": (lambda B: (coef(B), coef(B, seed=15)), {}, (0, 1)),
    "topk_jaccard": (lambda B: (coef(B), coef(B, seed=15), 2), {}, (0, 1)),
    "compose_segments": (
        lambda B: (torch.randn(B, 3, 2, 40, generator=rng(16)), masks(B, f=3 * 4), [(0, 10), (10, 20), (20, 30), (30, 40)]),
        {}, (0, 1),
    ),
    "pcm_to_float": (lambda B: (torch.randint(-32768, 32767, (B, 2, 50), generator=rng(17), dtype=torch.int16),), {}, (0,)),
}

# Names of __all__ that are not batched tensor functions (types, constants, random draws,
# checks, or functions of Python values).
NOT_BATCHED = {
    "SurrogateFit", "FeatureSelection", "Importance", "ImportanceSums", "Draw", "MaskSampler", "Budget",
    "FEATURE_SELECTION_MODES", "SAMPLERS", "LIME_SAMPLERS",
    "bernoulli_masks", "kernel_shap_masks", "sample_masks",  # random draws
    "even_boundaries", "segment_feature_names",  # functions of Python ints and names
    "explain_masks", "model_outputs",  # take a model: batches of instances by construction
}

FLOAT_ONLY = {"pcm_to_float"}  # its input is integer PCM


def _cast(x, device, dtype):
    if isinstance(x, torch.Tensor):
        x = x.to(device)
        return x.to(dtype) if x.dtype.is_floating_point else x
    return x


def _slice(args, batched, b):
    return tuple(a[b] if i in batched else a for i, a in enumerate(args))


def _flatten(result):
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, tuple):
        return [t for r in result for t in _flatten(r)]
    return []


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_equals_loop(name, B, device, dtype):
    build, kwargs, batched = CASES[name]
    fn = getattr(TF, name)
    args = tuple(_cast(a, device, dtype) for a in build(B))
    kwargs = {k: _cast(v, device, dtype) for k, v in kwargs.items()}
    whole = _flatten(fn(*args, **kwargs))
    parts = [_flatten(fn(*_slice(args, batched, b), **kwargs)) for b in range(B)]
    assert whole and all(len(p) == len(whole) for p in parts)
    # float32 solves go through float64 and are cast back; the tolerance covers that cast
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    for i, w in enumerate(whole):
        torch.testing.assert_close(w, torch.stack([p[i] for p in parts]), **tol)


def test_every_public_function_is_covered():
    missing = sorted(set(TF.__all__) - set(CASES) - NOT_BATCHED)
    assert not missing, f"add these functional names to the batch-consistency cases: {missing}"
    stale = sorted((set(CASES) | NOT_BATCHED) - set(TF.__all__))
    assert not stale, f"names listed here but not in torchlime.functional.__all__: {stale}"
