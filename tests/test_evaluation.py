"""torchlime.evaluation and torchlime.functional.evaluation: metrics where the answer is known."""

import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import r2_score

from torchlime import Lime
from torchlime.evaluation import (
    Faithfulness,
    evaluate_explanation,
    evaluation_report,
    explanation_forward,
    faithfulness,
    fidelity,
    load_explanation,
    stability,
    stability_from_weights,
)
from torchlime.functional import (
    aopc,
    area_under_curve,
    check_weights,
    deletion_masks,
    feature_ranking,
    insertion_masks,
    rankdata,
    spearman,
    topk_jaccard,
)
from torchlime.models import LinearRegression, Ridge
from torchlime.music import LyricsFactorization, MusicLime, StemFactorization

from .conftest import FakeGenerator
from .test_music_explainer import LYRICS, make_stems, predict_fn


def tied(shape, seed, levels=4, dtype=torch.float64):
    """Random values with many ties (few levels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, shape, generator=g).to(dtype)


# -- functional: masks, curves ---------------------------------------------------------------


def test_deletion_and_insertion_masks_follow_the_weight_ranking(device, dtype):
    w = torch.tensor([0.2, 0.9, -0.5, 0.9, 0.0], device=device, dtype=dtype)
    # highest first, ties by the lower index: 1, 3, 0, 4, 2
    assert feature_ranking(w).tolist() == [1, 3, 0, 4, 2]
    assert feature_ranking(w, absolute=True).tolist() == [1, 3, 2, 0, 4]
    d = deletion_masks(w)
    assert d.shape == (6, 5) and d.dtype == dtype and d.device.type == device.type
    expected = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [1, 0, 1, 0, 1],
                             [0, 0, 1, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=dtype, device=device)
    torch.testing.assert_close(d, expected, atol=0, rtol=0)
    torch.testing.assert_close(insertion_masks(w), 1 - expected, atol=0, rtol=0)
    torch.testing.assert_close(deletion_masks(w, max_k=2), expected[:3], atol=0, rtol=0)
    torch.testing.assert_close(insertion_masks(w, 2, absolute=True)[2],
                               torch.tensor([0, 1, 0, 1, 0], dtype=dtype, device=device), atol=0, rtol=0)
    assert deletion_masks(torch.tensor([3, 1, 2]), dtype=torch.bool).dtype == torch.bool
    assert deletion_masks(torch.tensor([3, 1, 2])).dtype == torch.float32


def test_masks_batch_equals_loop():
    w = tied((3, 2, 7), seed=0)
    batch = deletion_masks(w, max_k=5)
    ins = insertion_masks(w)
    assert batch.shape == (3, 2, 6, 7) and ins.shape == (3, 2, 8, 7)
    for i, j in itertools.product(range(3), range(2)):
        torch.testing.assert_close(batch[i, j], deletion_masks(w[i, j], max_k=5), atol=0, rtol=0)
        torch.testing.assert_close(ins[i, j], insertion_masks(w[i, j]), atol=0, rtol=0)


def test_aopc_and_area_known_values():
    curve = torch.tensor([[1.0, 0.4, 0.1, 0.1], [0.5, 0.5, 0.5, 0.5]])
    # Samek: mean over k = 0..L of f(x) - f(x^(k)) = (0 + 0.6 + 0.9 + 0.9) / 4
    torch.testing.assert_close(aopc(curve), torch.tensor([0.6, 0.0]), atol=1e-7, rtol=0)
    # trapezoid on x = k / 3: a flat curve has area equal to its value
    torch.testing.assert_close(area_under_curve(curve), torch.tensor([(0.7 + 0.25 + 0.1) / 3, 0.5]), atol=1e-7, rtol=0)
    torch.testing.assert_close(area_under_curve(torch.tensor([0.0, 1.0])), torch.tensor(0.5))


# -- functional: ranks, spearman, jaccard ----------------------------------------------------


def test_rankdata_equals_scipy_with_ties():
    x = tied((6, 11), seed=1, levels=3)
    ours = rankdata(x)
    for row, r in zip(x, ours):
        np.testing.assert_array_equal(r.numpy(), scipy.stats.rankdata(row.numpy()))
    assert ours.dtype == torch.float64


@pytest.mark.parametrize("levels", [3, 10, 1000])
def test_spearman_equals_scipy(levels, dtype):
    a = tied((20, 9), seed=2, levels=levels, dtype=dtype)
    b = tied((20, 9), seed=3, levels=levels, dtype=dtype)
    b[:5] = a[:5] * 2 + 1  # same ranking: exactly 1
    ours = spearman(a, b)
    assert ours.dtype == dtype
    for i in range(20):
        ref = scipy.stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic
        if np.isnan(ref):
            assert torch.isnan(ours[i])
        else:
            assert float(ours[i]) == pytest.approx(ref, abs=1e-6 if dtype == torch.float32 else 1e-12)
    assert (ours[:5] == 1).all()
    assert (spearman(a, -a + 0.5)[(a != a[:, :1]).any(-1)] == -1).all()


def test_spearman_undefined_cases_match_scipy():
    const = torch.ones(5)
    x = torch.arange(5.0)
    with pytest.warns(Warning):
        ref = scipy.stats.spearmanr(const.numpy(), x.numpy()).statistic
    assert np.isnan(ref) and torch.isnan(spearman(const, x))
    with_nan = torch.tensor([1.0, float("nan"), 3.0, 4.0, 5.0])
    assert torch.isnan(spearman(with_nan, x))  # scipy's nan_policy="propagate"


def test_spearman_batch_equals_loop_and_broadcasts():
    a = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(4))
    b = torch.randn(3, 8, generator=torch.Generator().manual_seed(5))
    batch = spearman(a, b)
    assert batch.shape == (4, 3)
    for i, j in itertools.product(range(4), range(3)):
        assert batch[i, j] == spearman(a[i, j], b[j])


def _reference_jaccard(a, b, k):
    top = lambda w: set(sorted(range(len(w)), key=lambda i: (-w[i], i))[:k])  # noqa: E731
    A, B = top(a.tolist()), top(b.tolist())
    return len(A & B) / len(A | B)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_topk_jaccard_equals_sets(k):
    a = tied((30, 8), seed=6, levels=4)
    b = tied((30, 8), seed=7, levels=4)
    ours = topk_jaccard(a, b, k)
    for i in range(30):
        assert float(ours[i]) == pytest.approx(_reference_jaccard(a[i], b[i], k), abs=1e-12)
    assert (topk_jaccard(a, a, k) == 1).all()
    a, b = torch.tensor([0.0, -3.0, 1.0]), torch.tensor([0.0, 5.0, 6.0])
    assert topk_jaccard(a, b, 2, absolute=True) == 1 and topk_jaccard(a, b, 2) == pytest.approx(1 / 3)


def test_functional_errors():
    w = torch.tensor([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"expected finite weights, got nan at index \(1,\)"):
        check_weights(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"expected finite coef, got inf at index \(0, 0\)"):
        check_weights(torch.tensor([[float("inf")]]), name="coef")
    with pytest.raises(TypeError, match="expected weights to be a torch.Tensor, got list"):
        check_weights([0.1])
    with pytest.raises(ValueError, match=r"expected weights of shape \(..., F\) with F >= 1, got shape \(\)"):
        deletion_masks(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"expected 1 <= max_k <= F = 3, got 0"):
        deletion_masks(w, max_k=0)
    with pytest.raises(ValueError, match=r"expected 1 <= max_k <= F = 3, got 4"):
        insertion_masks(w, max_k=4)
    with pytest.raises(ValueError, match=r"expected 1 <= k <= F = 3, got 0"):
        topk_jaccard(w, w, 0)
    with pytest.raises(ValueError, match=r"expected 1 <= k <= F = 3, got 4"):
        topk_jaccard(w, w, 4)
    with pytest.raises(ValueError, match=r"expected a and b with the same number of features \(last dim\), got shapes \(3,\) and \(4,\)"):
        spearman(w, torch.ones(4))
    with pytest.raises(ValueError, match=r"expected a and b of broadcastable shapes \(..., F\), got shapes \(2, 3\) and \(4, 3\)"):
        topk_jaccard(torch.ones(2, 3), torch.ones(4, 3), 1)
    with pytest.raises(ValueError, match="expected at least 2 features to correlate, got F = 1"):
        spearman(torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"expected a curve of shape \(..., L\+1\) with L >= 1, got shape \(1,\)"):
        aopc(torch.ones(1))
    with pytest.raises(ValueError, match=r"expected a curve of shape"):
        area_under_curve(torch.ones(3, 1))


# -- faithfulness ----------------------------------------------------------------------------


W_TRUE = torch.tensor([0.3, 2.0, -0.4, 1.5, 0.1, 1.8, -1.0, 0.05])  # planted: features 1, 5, 3
PLANTED = [1, 5, 3]


def linear(z):
    return z @ W_TRUE.to(z) + 0.25


def test_faithfulness_on_a_linear_model_is_the_closed_form(device):
    w = W_TRUE.to(device)
    result = faithfulness(lambda z: z @ w + 0.25, w)
    order = torch.argsort(-W_TRUE).tolist()
    assert order[:3] == PLANTED and result.order.tolist() == order
    sorted_w = W_TRUE[order]
    full = W_TRUE.sum() + 0.25
    deletion = torch.cat([full.reshape(1), full - sorted_w.cumsum(0)]).to(device)
    insertion = torch.cat([torch.zeros(1), sorted_w.cumsum(0)]).to(device) + 0.25
    torch.testing.assert_close(result.deletion, deletion, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.insertion, insertion, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.aopc, (deletion[0] - deletion).mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.deletion_auc, area_under_curve(deletion), atol=1e-6, rtol=0)
    assert result.random_aopc is None and result.random_deletion is None


def test_deleting_the_planted_features_drops_the_prediction_most():
    """Every step k of the curve is the lowest output over all k-subsets (brute force)."""
    result = faithfulness(linear, W_TRUE, n_random=20, generator=torch.Generator().manual_seed(0))
    F = W_TRUE.shape[0]
    for k in range(1, F):
        lowest = min(float(linear(torch.ones(F).index_fill(0, torch.tensor(s), 0))) for s in itertools.combinations(range(F), k))
        assert float(result.deletion[k]) == pytest.approx(lowest, abs=1e-6)
    # the planted features first: the deletion curve is below the random orders' mean everywhere
    assert (result.deletion[1:-1] < result.random_deletion[1:-1]).all()
    assert (result.insertion[1:-1] > result.random_insertion[1:-1]).all()
    assert result.aopc > result.random_aopc
    worst = faithfulness(linear, -W_TRUE)  # the reverse order
    assert result.aopc > worst.aopc and result.deletion_auc < worst.deletion_auc


def test_faithfulness_targets_batch_equals_loop_and_chunks():
    W = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    A = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    calls = []

    def model(z):
        calls.append(z.shape[0])
        return torch.tanh(z @ A)

    targets = [2, 0, -1]
    batch = faithfulness(model, W, targets, n_random=3, generator=torch.Generator().manual_seed(3), batch_size=1000)
    assert calls == [3 * 2 * 7 + 3 * 2 * 7]  # one forward for every row
    assert batch.deletion.shape == (3, 7) and batch.random_aopc.shape == (3,) and batch.order.shape == (3, 6)
    for k, t in enumerate(targets):
        one = faithfulness(model, W[k], t, n_random=3, generator=torch.Generator().manual_seed(3))
        for name, a, b in zip(Faithfulness._fields, batch, one):
            torch.testing.assert_close(a[k], b, atol=0, rtol=0, msg=name)
    calls.clear()
    chunked = faithfulness(model, W, targets, n_random=3, generator=torch.Generator().manual_seed(3), batch_size=5)
    assert max(calls) == 5 and sum(calls) == 84
    for a, b in zip(batch, chunked):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # target None: the output's columns are the targets
    cols = faithfulness(lambda z: torch.tanh(z @ A)[:, targets], W)
    torch.testing.assert_close(cols.deletion, batch.deletion, atol=1e-6, rtol=0)
    scalar = faithfulness(lambda z: torch.tanh(z @ A)[:, 2], W[0])
    torch.testing.assert_close(scalar.deletion, batch.deletion[0], atol=1e-6, rtol=0)


def test_faithfulness_random_baseline_is_deterministic_under_a_generator():
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = faithfulness(linear, W_TRUE, n_random=4, generator=g(7))
    b = faithfulness(linear, W_TRUE, n_random=4, generator=g(7))
    c = faithfulness(linear, W_TRUE, n_random=4, generator=g(8))
    assert torch.equal(a.random_deletion, b.random_deletion) and torch.equal(a.random_aopc, b.random_aopc)
    assert not torch.equal(a.random_deletion, c.random_deletion)


def test_faithfulness_errors():
    with pytest.raises(ValueError, match=r"expected finite weights, got nan at index \(2,\)"):
        faithfulness(linear, torch.tensor([0.1, 0.2, float("nan"), 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"target 2 is out of range for forward output with per-example shape \(2,\) \(2 classes\)"):
        faithfulness(lambda z: torch.stack([linear(z), -linear(z)], 1), W_TRUE, 2)
    with pytest.raises(ValueError, match=r"expected 2 target\(s\) \(one per row of weights\), got 1"):
        faithfulness(linear, torch.ones(2, 8), [0])
    with pytest.raises(ValueError, match="expected integer class indices as target, got"):
        faithfulness(linear, W_TRUE, [0.5])
    with pytest.raises(ValueError, match=r"expected weights of shape \(F,\) or \(K, F\), got shape \(1, 2, 8\)"):
        faithfulness(linear, torch.ones(1, 2, 8))
    with pytest.raises(ValueError, match=r"expected 1 <= max_k <= F = 8, got 9"):
        faithfulness(linear, W_TRUE, max_k=9)
    with pytest.raises(ValueError, match=r"expected forward_func to return one output per perturbed input \(18 rows\), got shape \(9,\)"):
        faithfulness(lambda z: linear(z)[::2], W_TRUE)
    with pytest.raises(ValueError, match=r"expected forward to return \(m,\) or \(m, K\) = \(m, 1\) outputs when no target is given"):
        faithfulness(lambda z: torch.stack([linear(z), linear(z)], 1), W_TRUE)
    with pytest.raises(ValueError, match=r"forward_func returned NaN or inf for the masks sample 0, the masks sample 17"):
        faithfulness(lambda z: torch.where(z.sum(-1) == 8, float("nan"), linear(z)), W_TRUE)  # the all-ones rows
    with pytest.raises(ValueError, match="expected batch_size >= 1, got 0"):
        faithfulness(linear, W_TRUE, batch_size=0)
    with pytest.raises(ValueError, match="expected n_random >= 0, got -1"):
        faithfulness(linear, W_TRUE, n_random=-1)
    with pytest.raises(ValueError, match="expected a torch.Generator on cpu"):
        faithfulness(linear, W_TRUE, n_random=1, generator=FakeGenerator("cuda"))


# -- stability -------------------------------------------------------------------------------


def test_stability_is_one_for_a_deterministic_linear_model(device):
    """Different seeds draw different masks, but an exact fit recovers the same weights."""
    w_true = torch.tensor([[3.0, -1.0, 0.5, 2.0, -2.5, 1.0, 0.25, 4.0]], device=device)
    lime = Lime(lambda x: x @ w_true.T + 1.0, interpretable_model=LinearRegression())
    x = torch.ones(1, 8, device=device)
    result = stability(lambda g: lime.attribute(x, target=0, n_samples=64, generator=g)[0], seeds=[3, 11, 42, 7],
                       k=3, device=device)
    assert result.spearman.shape == (6,) and result.pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert (result.spearman == 1.0).all() and (result.jaccard == 1.0).all()
    assert float(result.mean_spearman) == 1.0 and float(result.mean_jaccard) == 1.0
    assert result.seeds == [3, 11, 42, 7] and result.weights.shape == (4, 8)


def test_stability_on_the_same_masks_is_one():
    audio = StemFactorization(make_stems(), sample_rate=4000, num_segments=10)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    masks = torch.bernoulli(torch.full((120, 45), 0.5), generator=torch.Generator().manual_seed(0))
    masks[0] = 1
    explainer = MusicLime(predict_fn=predict_fn)
    result = stability(lambda g: explainer.explain(audio, lyrics, target=[0, 1], masks=masks), seeds=2, k=5)
    assert result.spearman.shape == (1, 2)
    assert (result.mean_spearman == 1).all() and (result.mean_jaccard == 1).all()


def test_stability_from_weights_pairs_equal_scipy():
    w = torch.randn(4, 2, 10, generator=torch.Generator().manual_seed(9))
    result = stability_from_weights(w, k=4)
    assert result.spearman.shape == (6, 2) and result.mean_jaccard.shape == (2,) and result.seeds is None
    for p, (i, j) in enumerate(result.pairs.tolist()):
        for t in range(2):
            ref = scipy.stats.spearmanr(w[i, t].numpy(), w[j, t].numpy()).statistic
            assert float(result.spearman[p, t]) == pytest.approx(ref, abs=1e-6)
            assert float(result.jaccard[p, t]) == pytest.approx(_reference_jaccard(w[i, t], w[j, t], 4), abs=1e-7)
    torch.testing.assert_close(result.mean_spearman, result.spearman.mean(0))


def test_stability_is_deterministic_and_reruns_with_each_seed():
    seen = []

    def noisy(g):
        seen.append(g.initial_seed())
        return W_TRUE + 0.5 * torch.randn(8, generator=g)

    a = stability(noisy, seeds=[5, 6, 7], k=3)
    b = stability(noisy, seeds=[5, 6, 7], k=3)
    assert seen == [5, 6, 7, 5, 6, 7]
    assert torch.equal(a.spearman, b.spearman) and torch.equal(a.jaccard, b.jaccard)
    assert (a.spearman < 1).any()


def test_stability_errors():
    run = lambda g: torch.randn(5, generator=g)  # noqa: E731
    with pytest.raises(ValueError, match=r"expected at least 2 seeds \(R >= 2 reruns to compare\), got 1"):
        stability(run, seeds=1)
    with pytest.raises(ValueError, match=r"expected at least 2 seeds \(R >= 2 reruns to compare\), got 1"):
        stability(run, seeds=[4])
    with pytest.raises(ValueError, match=r"expected distinct seeds, got \[1, 1, 2\]"):
        stability(run, seeds=[1, 1, 2])
    with pytest.raises(ValueError, match="expected integer seeds, got"):
        stability(run, seeds=[1, "2"])
    with pytest.raises(ValueError, match=r"expected 1 <= k <= F = 5, got 6"):
        stability(run, seeds=2, k=6)
    with pytest.raises(ValueError, match=r"expected every run to return weights of shape \(5,\) \(as seed 0\), got shape \(6,\) for seed 1"):
        stability(lambda g: torch.randn(5 + g.initial_seed(), generator=g), seeds=2)
    with pytest.raises(ValueError, match=r"run with seed 1: expected finite weights, got nan"):
        stability(lambda g: torch.full((3,), float("nan") if g.initial_seed() else 1.0), seeds=2)
    with pytest.raises(TypeError, match="expected explain to return weights .* got str"):
        stability(lambda g: "weights", seeds=2)
    with pytest.raises(ValueError, match=r"expected weights of shape \(R, ..., F\) from at least 2 runs \(R >= 2\), got shape \(1, 4\)"):
        stability_from_weights(torch.ones(1, 4))


# -- fidelity --------------------------------------------------------------------------------


def test_fidelity_equals_sklearn_r2_and_is_one_for_an_exact_surrogate():
    g = torch.Generator().manual_seed(0)
    masks = torch.bernoulli(torch.full((50, 6), 0.5), generator=g).double()
    coef = torch.randn(2, 6, generator=g, dtype=torch.float64)
    intercept = torch.tensor([0.5, -1.0], dtype=torch.float64)
    exact = masks @ coef.T + intercept
    w = torch.rand(50, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fidelity(exact, masks, coef, intercept, w), torch.ones(2, dtype=torch.float64))
    noisy = exact + torch.randn(50, 2, generator=g, dtype=torch.float64)
    ours = fidelity(noisy, masks, coef, intercept, w)
    for k in range(2):
        ref = r2_score(noisy[:, k].numpy(), exact[:, k].numpy(), sample_weight=w.numpy())
        assert float(ours[k]) == pytest.approx(ref, abs=1e-12)
    assert float(fidelity(noisy[:, 1], masks, coef[1], intercept[1], w)) == pytest.approx(float(ours[1]), abs=1e-12)
    batch = fidelity(noisy.expand(3, 50, 2), masks, coef, intercept, w)
    assert batch.shape == (3, 2)
    with pytest.raises(ValueError, match=r"expected coef of shape \(..., 2, 6\) \(K targets, F features\), got shape \(2, 5\)"):
        fidelity(noisy, masks, coef[:, :5], intercept)
    with pytest.raises(ValueError, match=r"expected outputs of shape \(..., 50, K\) or \(..., 50\)"):
        fidelity(noisy[:40], masks, coef, intercept)
    with pytest.raises(ValueError, match=r"expected sample_weight of shape \(..., 50\), got shape \(49,\)"):
        fidelity(noisy, masks, coef, intercept, w[:49])


# -- MusicLime explanations ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_song():
    audio = StemFactorization(make_stems(), sample_rate=4000, num_segments=10)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    masks = torch.bernoulli(torch.full((150, 45), 0.5), generator=torch.Generator().manual_seed(1))
    masks[0] = 1
    explainer = MusicLime(predict_fn=predict_fn)
    exp = explainer.explain(audio, lyrics, target=[0, 1], masks=masks)
    return audio, lyrics, masks, explainer, exp


def test_explanation_forward_reproduces_the_explainers_outputs_and_score(small_song):
    audio, lyrics, masks, explainer, exp = small_song
    forward = explanation_forward(exp, explainer)
    out = forward(masks)
    assert out.shape == (150, 3)
    torch.testing.assert_close(out[0], exp.prediction.to(out.dtype), atol=1e-6, rtol=0)
    # the explanation's own score is the weighted R^2 of its surrogate on its masks
    from torchlime.functional import cosine_distance, lime_kernel

    kernel = lime_kernel(cosine_distance(masks, masks[:1]), 25.0)
    intercept = torch.tensor([exp.intercept[0], exp.intercept[1]])
    ours = fidelity(out[:, [0, 1]], masks, exp.weights, intercept, kernel)
    torch.testing.assert_close(ours, torch.tensor([exp.score[0], exp.score[1]], dtype=ours.dtype), atol=1e-6, rtol=0)


def test_evaluate_explanation_batch_equals_faithfulness(small_song):
    audio, lyrics, masks, explainer, exp = small_song
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ev = evaluate_explanation(exp, explainer, n_random=2, n_heldout=40, generator=g(), max_k=10, batch_size=64)
    assert ev.labels == [0, 1] and ev.faithfulness.deletion.shape == (2, 11) and ev.heldout_score.shape == (2,)
    assert ev.score.tolist() == pytest.approx([exp.score[0], exp.score[1]])
    # same as faithfulness on the composed forward (held-out masks drawn first, then the random orders)
    gen = g()
    torch.bernoulli(torch.full((40, 45), 0.5), generator=gen)
    direct = faithfulness(explanation_forward(exp, explainer), exp.weights, [0, 1], n_random=2, generator=gen, max_k=10)
    for a, b in zip(ev.faithfulness, direct):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    again = evaluate_explanation(exp, explainer, labels=[1], n_random=2, n_heldout=40, generator=g(), max_k=10)
    torch.testing.assert_close(again.faithfulness.deletion[0], ev.faithfulness.deletion[1], atol=1e-6, rtol=0)
    report = evaluation_report(ev, label_names={0: "zero"})
    assert report["labels"]["label_0"]["label_name"] == "zero" and len(report["labels"]["label_1"]["deletion_curve"]) == 11
    assert report["labels"]["label_0"]["deletion_order"][0] == exp.feature_names[int(ev.faithfulness.order[0, 0])]


def test_load_explanation_round_trip_and_mismatch(small_song, tmp_path):
    audio, lyrics, masks, explainer, exp = small_song
    path = exp.save_json(tmp_path / "e.json")
    loaded = load_explanation(path, audio=audio, lyrics=lyrics)
    torch.testing.assert_close(loaded.weights, exp.weights.float(), atol=0, rtol=0)  # the JSON keeps float32
    assert loaded.audio_factorization is audio and loaded.lyrics_factorization is lyrics
    a = evaluate_explanation(exp, explainer, max_k=5)
    b = evaluate_explanation(loaded, explainer, max_k=5)
    assert torch.equal(a.faithfulness.order, b.faithfulness.order)
    torch.testing.assert_close(a.faithfulness.deletion, b.faithfulness.deletion.to(a.faithfulness.deletion.dtype), atol=1e-6, rtol=0)
    other = StemFactorization(make_stems(), sample_rate=4000, num_segments=5)
    with pytest.raises(ValueError, match=r"expected the audio factorization to have the 40 audio features of .*e.json', got 20 that differ at position 20"):
        load_explanation(path, audio=other)  # segment-major names: the first 20 agree
    with pytest.raises(ValueError, match=r"expected the lyrics factorization to have the 5 lyrics features of .*, got 5 that differ at position 0 \('one' vs 'neon thunder rising over the bay'\)"):
        load_explanation(path, audio=audio, lyrics=LyricsFactorization("one\ntwo\nthree\nfour\nfive", None))
    with pytest.raises(ValueError, match="expected an explanation JSON file, got .*missing.json', which does not exist"):
        load_explanation(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="expected an explanation that carries its audio factorization"):
        evaluate_explanation(load_explanation(path), explainer)
    with pytest.raises(ValueError, match=r"expected labels among the explained labels \[0, 1\], got 2"):
        evaluate_explanation(exp, explainer, labels=[2])
    with pytest.raises(ValueError, match="expected n_heldout = 0 \\(no held-out R\\^2\\) or >= 2, got 1"):
        evaluate_explanation(exp, explainer, n_heldout=1)
    bad = load_explanation(exp)
    bad.weights = exp.weights.clone()
    bad.weights[0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"expected finite weights, got nan at index \(0, 3\)"):
        evaluate_explanation(bad, explainer)


@pytest.fixture(scope="module")
def demo():
    from torchlime.music.demo import DEMO_MAX_LENGTH, load_demo, make_song

    model, tokenizer = load_demo("cpu")
    song = make_song(1, 7)
    audio = StemFactorization(song.stems, sample_rate=song.sample_rate, num_segments=10)
    lyrics = LyricsFactorization(song.lyrics, tokenizer, unit="line", max_length=DEMO_MAX_LENGTH)
    planted = song.cause_features + [song.lines[i] for i in song.cause_lines]
    return MusicLime(model, apply_softmax=True), audio, lyrics, planted


def test_demo_deleting_the_planted_cause_drops_the_positive_class_more_than_random(demo):
    """The demo model's class 1 needs drums_T2..T4 and two trigger lines: remove them and it falls."""
    explainer, audio, lyrics, planted = demo
    names = audio.feature_names + lyrics.feature_names
    weights = torch.tensor([1.0 if n in planted else 0.0 for n in names])
    forward = lambda z: explainer.forward_masks(z, audio, lyrics)  # noqa: E731
    result = faithfulness(forward, weights, 1, max_k=5, n_random=4, generator=torch.Generator().manual_seed(0))
    assert [names[i] for i in result.order[:5]] == [n for n in names if n in planted]
    assert result.deletion[0] > 0.9  # the song is positive
    assert (result.deletion[1:] < 0.1).all()  # any planted feature removed: no longer positive
    assert (result.deletion[1:] < result.random_deletion[1:] - 0.3).all()
    assert result.aopc > result.random_aopc + 0.3
    assert result.insertion[-1] > result.random_insertion[-1]  # the cause alone vs 5 random features


def test_demo_explanation_is_more_faithful_than_random(demo):
    explainer, audio, lyrics, planted = demo
    exp = explainer.explain(audio, lyrics, target=[1], n_samples=150, generator=torch.Generator().manual_seed(0))
    ev = evaluate_explanation(exp, explainer, max_k=6, n_random=3, generator=torch.Generator().manual_seed(1))
    assert ev.faithfulness.aopc[0] > ev.faithfulness.random_aopc[0]
    assert ev.faithfulness.deletion[0, 5] < 0.1


def test_stability_of_ridge_on_explicit_masks_with_cuda_variant(device):
    """Ridge on the same masks: the seed changes nothing, so stability is exactly 1."""
    from torchlime import LimeBase, batched

    masks = torch.bernoulli(torch.full((80, 6), 0.5), generator=torch.Generator().manual_seed(2)).to(device)

    @batched
    def perturb(x, *, n_samples, generator=None, **kw):
        return torch.bernoulli(torch.full((n_samples, 6), 0.5, device=device), generator=generator)

    @batched
    def to_input(z, x, **kw):
        return z * x

    @batched
    def sim(x, xp, z, **kw):
        return torch.ones(z.shape[:-1], device=device).reshape(-1)

    w_true = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, -1.0], device=device)
    lb = LimeBase(lambda x: x @ w_true, Ridge(alpha=1.0), sim, perturb, True, to_input, None)
    x = torch.ones(1, 6, device=device)
    result = stability(lambda g: lb.attribute(x, n_samples=80, masks=masks, generator=g)[0], seeds=3, k=2, device=device)
    assert result.mean_spearman.device.type == device.type
    assert float(result.mean_spearman) == 1.0 and float(result.mean_jaccard) == 1.0
    ev = faithfulness(lambda z: z @ w_true, result.weights[0], n_random=2, generator=torch.Generator(device).manual_seed(0))
    assert ev.deletion.device.type == device.type and ev.aopc > ev.random_aopc
