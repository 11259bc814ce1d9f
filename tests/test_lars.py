"""lars_lasso_path against sklearn.linear_model.lars_path(method="lasso") on the same data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import lars_path

from torchlime.functional._lars import lars_lasso_gram, lars_lasso_path

# Paths computed with different summation orders agree to ~1e-13 relative on these
# problems; 1e-8 leaves room for longer paths without hiding a wrong step.
RTOL = 1e-8
# A coefficient below this fraction of the path's largest one is sklearn's rounding residue
# at a drop step (~1e-18), which torchlime writes as an exact 0.
RESIDUE = 1e-12


def _lime_problem(seed: int, n: int, F: int) -> tuple[np.ndarray, np.ndarray]:
    """lime's weighted, centred data for a random 0/1 mask matrix (first row all ones)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2, size=(n, F)).astype(np.float64)
    data[0] = 1
    distances = np.sqrt(((data - 1) ** 2).sum(1)) / np.sqrt(F) * 100
    weights = np.sqrt(np.exp(-(distances**2) / 25**2))  # lime's default kernel, width 25
    beta = rng.normal(size=F) * (rng.random(F) < 0.5)
    labels = 1 / (1 + np.exp(-(data @ beta + 0.3 * rng.normal(size=n))))
    weighted_data = (data - np.average(data, axis=0, weights=weights)) * np.sqrt(weights[:, None])
    weighted_labels = (labels - np.average(labels, weights=weights)) * np.sqrt(weights)
    return weighted_data, weighted_labels


def _gaussian_problem(seed: int, n: int, F: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, F))
    y = X @ (rng.normal(size=F) * (rng.random(F) < 0.5)) + rng.normal(size=n)
    return X, y


def _sklearn_path(X: np.ndarray, y: np.ndarray, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alphas, _, coefs = lars_path(X, y, method="lasso", **kwargs)
    return torch.from_numpy(alphas), torch.from_numpy(coefs)


def _torch_path(X: np.ndarray, y: np.ndarray, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return lars_lasso_path(torch.from_numpy(X), torch.from_numpy(y), **kwargs)


# The two walkers: numpy for one problem on the CPU (the default there), torch for batches.
WALKERS = pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])


def _assert_same_path(
    expected: tuple[torch.Tensor, torch.Tensor],
    actual: tuple[torch.Tensor, torch.Tensor],
    rtol: float = RTOL,
) -> None:
    (alphas_sk, coefs_sk), (alphas, coefs) = expected, actual
    assert alphas.shape == alphas_sk.shape
    assert coefs.shape == coefs_sk.shape
    scale = max(coefs_sk.abs().max().item(), 1e-300) if coefs_sk.numel() else 1.0
    # Same active set at every step: exact zeros in ours wherever sklearn is 0 or a residue.
    torch.testing.assert_close(coefs != 0, coefs_sk.abs() > RESIDUE * scale, rtol=0, atol=0)
    alpha_scale = max(alphas_sk.max().item(), 1e-300)
    torch.testing.assert_close(alphas, alphas_sk, rtol=rtol, atol=rtol * alpha_scale)
    torch.testing.assert_close(coefs, coefs_sk, rtol=rtol, atol=rtol * scale)


def _lime_selection_numpy(coefs: np.ndarray, num_features: int) -> list[int]:
    """lime_base.LimeBase.feature_selection, method 'lasso_path', verbatim."""
    nonzero = range(coefs.shape[0])
    for i in range(len(coefs.T) - 1, 0, -1):
        nonzero = coefs.T[i].nonzero()[0]
        if len(nonzero) <= num_features:
            break
    return [int(j) for j in nonzero]


def _lime_selection_torch(coefs: torch.Tensor, num_features: int) -> list[int]:
    nonzero = torch.ones(coefs.shape[0], dtype=torch.bool)
    for i in range(coefs.shape[1] - 1, 0, -1):
        nonzero = coefs[:, i] != 0
        if int(nonzero.sum()) <= num_features:
            break
    return torch.nonzero(nonzero).flatten().tolist()


LIME_CASES = [
    (seed, n, F)
    for seed in range(3)
    for n, F in [(50, 5), (50, 12), (100, 20), (60, 30), (50, 40), (300, 40), (1000, 8)]
]


@pytest.mark.parametrize(("seed", "n", "F"), LIME_CASES)
@WALKERS
def test_lime_masks_match_sklearn(seed: int, n: int, F: int, batched: bool) -> None:
    X, y = _lime_problem(seed, n, F)
    _assert_same_path(_sklearn_path(X, y), _torch_path(X, y, batched=batched))


@pytest.mark.parametrize(("seed", "n", "F"), LIME_CASES)
def test_lime_feature_selection_matches(seed: int, n: int, F: int) -> None:
    X, y = _lime_problem(seed, n, F)
    _, coefs_sk = _sklearn_path(X, y)
    _, coefs = _torch_path(X, y)
    for k in range(1, F + 1):
        assert _lime_selection_torch(coefs, k) == _lime_selection_numpy(coefs_sk.numpy(), k), k


@pytest.mark.parametrize(("n", "F"), [(50, 12), (300, 40), (50, 40), (1000, 8)])
def test_a_batch_walks_every_path_as_alone(n: int, F: int) -> None:
    # 3 designs x 2 targets in one lockstep walk: each path, its step count and lime's
    # support for num_features equal the problem walked alone (and sklearn's).
    problems = [_lime_problem(seed, n, F) for seed in range(3)]
    targets = [[y, _lime_problem(10 + seed, n, F)[1]] for seed, (_, y) in enumerate(problems)]
    gram = torch.from_numpy(np.stack([X.T @ X for X, _ in problems]))
    xy = torch.from_numpy(np.stack([[X.T @ y for y in ys] for (X, _), ys in zip(problems, targets)]))
    sklearn_coefs = [[_sklearn_path(X, y)[1].numpy() for y in ys] for (X, _), ys in zip(problems, targets)]
    for k in (3, F // 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            batch = lars_lasso_gram(gram, xy, n, num_features=k, return_path=True)
        assert batch.support.shape == (3, 2, F) and batch.n_iter.shape == (3, 2)
        for g in range(3):
            for t in range(2):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    alone = lars_lasso_gram(gram[g], xy[g, t].unsqueeze(0), n, num_features=k, return_path=True)
                M = int(alone.n_iter[0]) + 1
                assert int(batch.n_iter[g, t]) == M - 1
                torch.testing.assert_close(batch.support[g, t], alone.support[0], rtol=0, atol=0)
                scale = alone.coefs[0].abs().max()
                torch.testing.assert_close(batch.coefs[g, t, :, :M], alone.coefs[0], rtol=1e-9, atol=1e-9 * scale)
                torch.testing.assert_close(batch.alphas[g, t, :M], alone.alphas[0], rtol=1e-9, atol=0)
                expected = _lime_selection_numpy(sklearn_coefs[g][t], k)
                assert torch.nonzero(batch.support[g, t]).flatten().tolist() == expected


def test_batched_false_takes_one_problem() -> None:
    with pytest.raises(ValueError, match="expected a single problem for batched=False, got 2"):
        lars_lasso_gram(torch.eye(3), torch.ones(2, 3), 5, batched=False)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("n", "F"), [(30, 10), (200, 25), (5, 10), (10, 30), (15, 30)])
@WALKERS
def test_gaussian_designs_match_sklearn(seed: int, n: int, F: int, batched: bool) -> None:
    X, y = _gaussian_problem(seed, n, F)
    _assert_same_path(_sklearn_path(X, y), _torch_path(X, y, batched=batched))


# Seeds whose sklearn path is itself stable under row permutations of X: with n < F binary
# masks the last steps often tie exactly (the residual lives in a tiny subspace), and then
# sklearn's own choice follows the last bits of its BLAS sums.
@pytest.mark.parametrize("seed", [0, 1, 3, 4, 8])
def test_lime_masks_fewer_samples_than_features(seed: int) -> None:
    X, y = _lime_problem(seed, 12, 40)
    _assert_same_path(_sklearn_path(X, y), _torch_path(X, y))


@pytest.mark.parametrize("column", [0, 4, 9])
@WALKERS
def test_zero_column(column: int, batched: bool) -> None:
    X, y = _lime_problem(column, 100, 10)
    X[:, column] = 0
    expected = _sklearn_path(X, y)
    actual = _torch_path(X, y, batched=batched)
    _assert_same_path(expected, actual)
    assert not actual[1][column].any()


@WALKERS
def test_y_all_zeros(batched: bool) -> None:
    X, _ = _lime_problem(0, 50, 10)
    y = np.zeros(50)
    expected = _sklearn_path(X, y)
    actual = _torch_path(X, y, batched=batched)
    _assert_same_path(expected, actual)
    assert actual[0].shape == (1,) and actual[1].shape == (10, 1)


@WALKERS
def test_exact_duplicate_columns_tie_goes_to_first(batched: bool) -> None:
    # With exact copies beside other features, sklearn's own path depends on the last bits
    # of its BLAS sums (it changes under a row permutation of X), so only the copy alone
    # with its original is a deterministic comparison.
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    X = np.stack([a, a], 1)
    y = 2 * a + rng.normal(size=40)
    expected = _sklearn_path(X, y)
    actual = _torch_path(X, y, batched=batched)
    _assert_same_path(expected, actual)
    assert actual[1][0, -1] != 0 and not actual[1][1].any()


@pytest.mark.parametrize(
    ("seed", "n", "F"), [(1, 50, 10), (2, 50, 10), (8, 50, 20), (3, 200, 20), (9, 200, 20)]
)
@WALKERS
def test_near_duplicate_columns_degenerate_branch(seed: int, n: int, F: int, batched: bool) -> None:
    # A column 1e-9 away from another: its Cholesky pivot is below sklearn's 1e-7, so it is
    # dropped for good when it is picked. The path is ill-conditioned by construction, hence
    # the loose tolerance; the steps and supports are still exactly sklearn's.
    X, y = _lime_problem(seed, n, F)
    rng = np.random.default_rng(100 + seed)
    u = rng.normal(size=n)
    X[:, F - 1] = X[:, 0] + 1e-9 * np.linalg.norm(X[:, 0]) * u / np.linalg.norm(u)
    with pytest.warns(ConvergenceWarning, match="degenerate"):
        alphas_sk, _, coefs_sk = lars_path(X, y, method="lasso")
    with pytest.warns(RuntimeWarning, match="degenerate"):
        actual = lars_lasso_path(torch.from_numpy(X), torch.from_numpy(y), batched=batched)
    expected = torch.from_numpy(alphas_sk), torch.from_numpy(coefs_sk)
    _assert_same_path(expected, actual, rtol=1e-5)


@pytest.mark.parametrize("max_iter", [0, 1, 3, 7])
@WALKERS
def test_max_iter(max_iter: int, batched: bool) -> None:
    X, y = _lime_problem(5, 200, 15)
    expected = _sklearn_path(X, y, max_iter=max_iter)
    actual = _torch_path(X, y, max_iter=max_iter, batched=batched)
    _assert_same_path(expected, actual)
    assert actual[0].shape == (max_iter + 1,)


@pytest.mark.parametrize("eps", [1e-3, 0.5])
@WALKERS
def test_eps(eps: float, batched: bool) -> None:
    X, y = _lime_problem(6, 100, 12)
    _assert_same_path(_sklearn_path(X, y, eps=eps), _torch_path(X, y, eps=eps, batched=batched))


@WALKERS
def test_drop_step_is_exercised(batched: bool) -> None:
    # Guards the lasso modification: on this problem coefficients cross zero 8 times.
    X, y = _lime_problem(1, 50, 40)
    alphas, coefs = _torch_path(X, y, batched=batched)
    support = coefs != 0
    assert (support[:, :-1] & ~support[:, 1:]).sum() == 8
    _assert_same_path(_sklearn_path(X, y), (alphas, coefs))


def test_dtypes_follow_input() -> None:
    X, y = _lime_problem(0, 100, 10)
    X64, y64 = torch.from_numpy(X), torch.from_numpy(y)
    alphas32, coefs32 = lars_lasso_path(X64.float(), y64.float())
    assert alphas32.dtype == coefs32.dtype == torch.float32
    alphas_ref, coefs_ref = lars_lasso_path(X64.float().double(), y64.float().double())
    torch.testing.assert_close(coefs32, coefs_ref.float(), rtol=0, atol=0)
    torch.testing.assert_close(alphas32, alphas_ref.float(), rtol=0, atol=0)

    mask = torch.from_numpy(np.random.default_rng(0).integers(0, 2, size=(60, 6)).astype(bool))
    target = torch.randn(60, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alphas, coefs = lars_lasso_path(mask, target)
    assert coefs.dtype == torch.float64
    _assert_same_path(_sklearn_path(mask.double().numpy(), target.numpy()), (alphas, coefs))


def test_gradients_are_not_tracked() -> None:
    X, y = _lime_problem(0, 50, 5)
    Xt = torch.from_numpy(X).requires_grad_()
    alphas, coefs = lars_lasso_path(Xt, torch.from_numpy(y))
    assert not alphas.requires_grad and not coefs.requires_grad


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_device(device: str) -> None:
    X, y = _lime_problem(1, 300, 20)
    alphas, coefs = lars_lasso_path(torch.from_numpy(X).to(device), torch.from_numpy(y).to(device))
    assert alphas.device.type == coefs.device.type == device
    _assert_same_path(_sklearn_path(X, y), (alphas.cpu(), coefs.cpu()))


@WALKERS
def test_no_features(batched: bool) -> None:
    alphas, coefs = lars_lasso_path(torch.zeros(5, 0), torch.ones(5), batched=batched)
    assert alphas.shape == (1,) and coefs.shape == (0, 1)


_Z2, _Z = torch.zeros(3, 2), torch.zeros(3)
_NAN_X = torch.tensor([[0.0, 1.0], [float("nan"), 0.0]])
_INF_Y = torch.tensor([0.0, float("inf")])


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "error", "match"),
    [
        (np.zeros((3, 2)), _Z, {}, TypeError, "expected X to be a torch.Tensor, got ndarray"),
        (_Z2, [0.0, 0.0, 0.0], {}, TypeError, "expected y to be a torch.Tensor, got list"),
        (torch.zeros(3, 2, 1), _Z, {}, ValueError, r"expected X to be 2-D \(n, F\), got shape \(3, 2, 1\)"),
        (_Z2, torch.zeros(3, 1), {}, ValueError, r"expected y to be 1-D \(n,\), got shape \(3, 1\)"),
        (_Z2, torch.zeros(4), {}, ValueError, r"expected y to have as many rows as X \(n=3\), got 4"),
        (torch.zeros(0, 2), torch.zeros(0), {}, ValueError, "expected n >= 1 samples, got 0"),
        (_Z2.to(torch.complex128), _Z, {}, ValueError, "expected X to have a real dtype, got"),
        (_Z2, _Z.to(torch.complex64), {}, ValueError, "expected y to have a real dtype, got"),
        (_NAN_X, torch.zeros(2), {}, ValueError, "expected finite values in X, got NaN or inf"),
        (torch.zeros(2, 2), _INF_Y, {}, ValueError, "expected finite values in y, got NaN or inf"),
        (_Z2, _Z, {"max_iter": -1}, ValueError, "expected max_iter >= 0, got -1"),
        (_Z2, _Z, {"max_iter": 2.0}, TypeError, "expected max_iter to be an int, got float"),
        (_Z2, _Z, {"eps": 0.0}, ValueError, "expected eps to be None or a positive finite float, got 0.0"),
        (_Z2, _Z, {"eps": float("inf")}, ValueError, "expected eps to be None or a positive finite"),
        (_Z2, _Z, {"eps": True}, ValueError, "expected eps to be None or a positive finite"),
    ],
)
def test_errors(X, y, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        lars_lasso_path(X, y, **kwargs)
