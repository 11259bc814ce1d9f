"""The one aggregation update (functional.global_importance_update): both paths, ties, names."""

import random
import warnings

import pytest
import torch

from torchlime import GlobalAggregator
from torchlime.functional import global_importance_update
from torchlime.music import Explanation

from .test_aggregation import AUDIO, SONG_LINES, make_explanation, notebook_loop, result_as_dicts


def explanation(coef, local_exp=None, prediction=None, names=None):
    """An Explanation of label 0 with these coefficients; local_exp as lime lists it unless given."""
    coef = torch.tensor([coef], dtype=torch.float32)
    F = coef.shape[-1]
    if local_exp is None:  # lime's order: |w| descending, a stable sort (ties keep index order)
        local_exp = sorted(((i, float(w)) for i, w in enumerate(coef[0].tolist()) if w != 0), key=lambda p: -abs(p[1]))
    names = names or [f"f{j}" for j in range(F)]
    prediction = torch.tensor([0.9, 0.1]) if prediction is None else prediction
    return Explanation([0], names, ["audio"] * F, coef, {0: 0.0}, {0: 1.0}, {0: 0.5}, {0: local_exp}, prediction, {})


def counts_by_name(result, cls=0):
    W, N = result_as_dicts(result)
    return N[cls]


# -- the tie rule --------------------------------------------------------------------------


def test_tie_case_gives_one_answer_on_both_paths(tmp_path):
    coef = [0.5, 0.5, 0.5, 0.1]
    names = [f"f{j}" for j in range(4)]
    exp = explanation(coef)
    exp.save_json(tmp_path / "tie.json")
    loaded = Explanation.load_json(tmp_path / "tie.json")
    results = []
    for update in (
        lambda a: a.update(coef=torch.tensor([coef]), labels=torch.tensor([0])),
        lambda a: a.update(exp),
        lambda a: a.update(loaded),
    ):
        agg = GlobalAggregator(2, names, top_k=2)
        update(agg)
        results.append(agg.compute())
    # The notebook's loop over local_exp (tests.test_aggregation.notebook_loop, 3 classes there).
    W, N = notebook_loop([exp], top_k=2)
    for result in results:
        assert counts_by_name(result) == N[0]
        assert torch.equal(result.counts, results[0].counts)
        torch.testing.assert_close(result.weight_sums, results[0].weight_sums)
    assert N[0] == {"f0": 1, "f1": 1}  # the two tied features listed first


def test_ties_follow_local_exp_order_when_it_is_not_the_index_order():
    # A feature selection can list tied features in another order; the notebook keeps the
    # first ones local_exp lists, and so does the Explanation path.
    coef = [0.5, 0.5, 0.5, 0.1]
    exp = explanation(coef, local_exp=[(2, 0.5), (0, 0.5), (1, 0.5), (3, 0.1)])
    agg = GlobalAggregator(2, [f"f{j}" for j in range(4)], top_k=2)
    agg.update(exp)
    assert counts_by_name(agg.compute()) == notebook_loop([exp], top_k=2)[1][0] == {"f2": 1, "f0": 1}
    # The tensor path takes the same order through the functional's order=.
    out = global_importance_update(torch.tensor([coef]), torch.tensor([0]), 2, top_k=2,
                                   order=torch.tensor([[2, 0, 1, 3]]))
    assert torch.equal(out.counts, agg.compute().counts)


@pytest.mark.parametrize("components", ["positive", "negative", "both"])
@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_many_ties_equal_the_notebook_on_both_paths(components, top_k):
    # Coefficients from {0, +-0.25, +-0.5}: ties everywhere.
    rng = random.Random(top_k)
    exps = []
    for s in range(12):
        coef = [rng.choice([0.0, 0.25, -0.25, 0.5, -0.5]) for _ in AUDIO]
        e = make_explanation(s, [])
        e.weights = torch.tensor([coef] * 3)
        e.local_exp = {
            k: sorted(((i, w) for i, w in enumerate(coef) if w != 0), key=lambda p: -abs(p[1])) for k in e.labels
        }
        exps.append(e)
    by_exp = GlobalAggregator(3, AUDIO, label="explained", components=components, top_k=top_k)
    by_exp.update(exps)
    by_tensor = GlobalAggregator(3, AUDIO, components=components, top_k=top_k)
    by_tensor.update(coef=torch.stack([e.weights for e in exps]), labels=torch.tensor([e.labels for e in exps]))
    W, N = notebook_loop(exps, "explained", components, top_k)
    for result in (by_exp.compute(), by_tensor.compute()):
        gotW, gotN = result_as_dicts(result)
        assert gotN == N
        for c in W:
            assert gotW[c] == pytest.approx(W[c], rel=1e-12)


# -- the functional ------------------------------------------------------------------------


def test_update_leading_dims_equal_a_loop():
    g = torch.Generator().manual_seed(0)
    coef = torch.randn(3, 2, 5, 7, generator=g) * (torch.rand(3, 2, 5, 7, generator=g) > 0.3)
    coef[0, 0, 0, :3] = 0.5  # a tie
    labels = torch.randint(0, 4, (3, 2, 5), generator=g)
    order = torch.rand(3, 2, 5, 7, generator=g).argsort(-1)
    for kwargs in ({}, {"top_k": 2, "components": "both"}, {"top_k": 3, "order": order}):
        batched = global_importance_update(coef, labels, 4, **kwargs)
        assert batched.weight_sums.shape == (3, 2, 4, 7) and batched.support.shape == (3, 2, 4)
        for i in range(3):
            for k in range(2):
                one = {**kwargs, "order": kwargs["order"][i, k]} if "order" in kwargs else kwargs
                single = global_importance_update(coef[i, k], labels[i, k], 4, **one)
                for got, want in zip(batched, single):
                    assert torch.equal(got[i, k], want)


def test_update_sums_equal_a_python_loop():
    g = torch.Generator().manual_seed(1)
    coef = torch.randn(20, 9, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (20,), generator=g)
    out = global_importance_update(coef, labels, 3, components="negative", top_k=4)
    W = torch.zeros(3, 9, dtype=torch.float64)
    N = torch.zeros(3, 9, dtype=torch.int64)
    for r in range(20):
        neg = sorted((j for j in range(9) if coef[r, j] < 0), key=lambda j: (-abs(float(coef[r, j])), j))[:4]
        for j in neg:
            W[labels[r], j] += abs(float(coef[r, j]))
            N[labels[r], j] += 1
    torch.testing.assert_close(out.weight_sums, W, rtol=1e-12, atol=1e-12)
    assert torch.equal(out.counts, N)
    assert torch.equal(out.support, torch.bincount(labels, minlength=3))


def test_update_errors():
    coef, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(TypeError, match="expected coef and labels to be tensors, got list and Tensor"):
        global_importance_update([[0.0]], labels, 2)
    with pytest.raises(ValueError, match="expected num_classes >= 1, got 0"):
        global_importance_update(coef, labels, 0)
    with pytest.raises(ValueError, match="expected components in"):
        global_importance_update(coef, labels, 2, components="all")
    with pytest.raises(ValueError, match="expected top_k >= 1, got 0"):
        global_importance_update(coef, labels, 2, top_k=0)
    with pytest.raises(ValueError, match=r"expected real coef of shape \(..., R, F\), got torch.float32 of shape \(3,\)"):
        global_importance_update(torch.zeros(3), labels, 2)
    with pytest.raises(ValueError, match=r"expected labels of shape \(2,\) \(one per row of coef\), got \(1,\)"):
        global_importance_update(coef, torch.tensor([0]), 2)
    with pytest.raises(TypeError, match="expected integer labels, got torch.float32"):
        global_importance_update(coef, labels.float(), 2)
    with pytest.raises(TypeError, match="expected order to be an int64 tensor, got torch.int32"):
        global_importance_update(coef, labels, 2, order=torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"expected order of the shape of coef \(2, 3\), got \(2, 2\)"):
        global_importance_update(coef, labels, 2, order=torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected each row of order to be a permutation"):
        global_importance_update(coef, labels, 2, order=torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"expected labels in \[0, 2\), got \[-1, 5\]"):
        global_importance_update(coef, torch.tensor([-1, 5]), 2)
    with pytest.raises(ValueError, match=r"expected finite coef, got inf at index \(1, 0\)"):
        global_importance_update(torch.tensor([[0.0, 1.0, 0.0], [float("inf"), 0.0, 0.0]]), labels, 2)
    # validate_args=False looks at no value: an out-of-range label counts for no class.
    out = global_importance_update(torch.ones(1, 3), torch.tensor([7]), 2, validate_args=False)
    assert out.counts.sum() == 0 and out.support.sum() == 0


# -- renamed keywords ----------------------------------------------------------------------


def test_old_keyword_names_still_work_with_a_deprecation_warning():
    coef, labels = torch.tensor([[0.5, -0.25, 0.0], [0.0, 1.0, 0.5]]), torch.tensor([1, 0])
    new = GlobalAggregator(2, ["a", "b", "c"])
    new.update(coef=coef, labels=labels)
    old = GlobalAggregator(2, ["a", "b", "c"])
    with pytest.warns(DeprecationWarning, match=r"update\(weights=...\) is deprecated .* use coef="):
        with pytest.warns(DeprecationWarning, match=r"update\(classes=...\) is deprecated .* use labels="):
            old.update(weights=coef, classes=labels)
    assert torch.equal(old.compute().counts, new.compute().counts)
    with warnings.catch_warnings(record=True) as caught:  # the warning points at the caller
        warnings.simplefilter("always")
        old.update(weights=coef, labels=labels)
    assert caught[0].filename == __file__
    with pytest.raises(ValueError, match="expected coef= or its deprecated name weights=, got both"):
        old.update(coef=coef, weights=coef, labels=labels)
    with pytest.raises(ValueError, match="expected labels= or its deprecated name classes=, got both"):
        old.update(coef=coef, labels=labels, classes=labels)


# -- names: any character, any digit run ---------------------------------------------------

ODD_LINES = ["nul\0line", "a\0", "\0", "", "9" * 5000, "1" + "0" * 5000, "line 10", "line 2", "line 02",
             "déjà vu 🎵", "x²", "٣ arabic-indic three", "tab\there"]


@pytest.mark.parametrize("split", [False, True], ids=["one-update", "an-update-per-song"])
def test_open_space_keeps_any_name(split):
    exps = [make_explanation(s, ODD_LINES[s::2], zero_frac=0.0) for s in range(2)]
    agg = GlobalAggregator(3, label="explained", components="both")
    for part in ([exps[:1], exps[1:]] if split else [exps]):
        agg.update(part)
    result = agg.compute()
    assert sorted(result.feature_names) == sorted(set(AUDIO + ODD_LINES))
    W, N = notebook_loop(exps, "explained", "both")
    assert result_as_dicts(result)[1] == N


def test_natural_order_of_names():
    lines = ["line 10", "line 2", "line 02", "line 1", "9" * 5000, "1" + "0" * 5000, "8" * 4999, "b", "a7", "a07", "a"]
    agg = GlobalAggregator(1)
    agg.update(coef=torch.ones(1, len(lines)), labels=torch.tensor([0]), feature_names=lines)
    got = agg.compute().feature_names
    # Numbers compare as numbers (4999 eights < 5000 nines < 1 and 5000 zeros), "a7" and
    # "a07" (equal numbers) by the name itself, so no input order changes the result.
    assert got == ["8" * 4999, "9" * 5000, "1" + "0" * 5000, "a", "a07", "a7", "b", "line 1", "line 02", "line 2",
                   "line 10"]
    again = GlobalAggregator(1)
    again.update(coef=torch.ones(1, len(lines)), labels=torch.tensor([0]), feature_names=lines[::-1])
    assert again.compute().feature_names == got


def test_open_space_lists_the_kept_features_on_both_paths():
    # Features no explanation kept (zero, or filtered out) are not listed, whichever path.
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    by_exp = GlobalAggregator(3, label="explained", top_k=2)
    by_exp.update(exps)
    by_tensor = GlobalAggregator(3, top_k=2)
    for e in exps:
        by_tensor.update(coef=e.weights, labels=torch.tensor(e.labels), feature_names=e.feature_names)
    a, b = by_exp.compute(), by_tensor.compute()
    assert a.feature_names == b.feature_names
    assert torch.equal(a.counts, b.counts) and torch.equal(a.support, b.support)
    assert bool((a.counts.sum(0) > 0).all())
    torch.testing.assert_close(a.weight_sums, b.weight_sums, rtol=1e-12, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_update_on_cuda_equals_cpu_and_makes_no_host_sync():
    g = torch.Generator().manual_seed(2)
    coef = (torch.randint(-2, 3, (4, 50, 30), generator=g) * 0.25).float()  # many ties
    labels = torch.randint(0, 5, (4, 50), generator=g)
    order = torch.rand(4, 50, 30, generator=g).argsort(-1)
    cpu = global_importance_update(coef, labels, 5, components="both", top_k=7, order=order)
    dev = [t.cuda() for t in (coef, labels, order)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        cuda = global_importance_update(*dev[:2], 5, components="both", top_k=7, order=dev[2], validate_args=False)
        agg = GlobalAggregator(5, [f"f{j}" for j in range(30)], components="both", top_k=7,
                               validate_args=False).cuda()
        agg.update(coef=dev[0], labels=dev[1])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for got, want in zip(cuda, cpu):
        assert got.device.type == "cuda" and torch.equal(got.cpu(), want)
    plain = global_importance_update(coef, labels, 5, components="both", top_k=7)
    assert torch.equal(agg.compute().counts.cpu(), plain.counts.sum(0))


def test_explanations_of_other_sizes_in_one_update_equal_the_notebook():
    # More than one batch of 256, songs with 0-5 lines and 1-3 explained labels: padding
    # rows and columns count for nothing (support included).
    rng = random.Random(0)
    lines = ["la la", "thunder", "night sky", "rain", "moon"]
    exps = []
    for s in range(300):
        labels = tuple(sorted(rng.sample(range(3), rng.randint(1, 3))))
        exps.append(make_explanation(s, rng.sample(lines, rng.randint(0, 5)), labels=labels))
    agg = GlobalAggregator(3, label="explained", components="both", top_k=4)
    agg.update(exps)
    result = agg.compute()
    W, N = notebook_loop(exps, "explained", "both", 4)
    gotW, gotN = result_as_dicts(result)
    assert gotN == N
    for c in W:
        assert gotW[c] == pytest.approx(W[c], rel=1e-12)
    assert result.support.tolist() == [sum(c in e.labels for e in exps) for c in range(3)]
