"""Global aggregation: the MusicLIME notebook's formulas, GlobalAggregator, files, errors."""

import json
import math
import random
from pathlib import Path

import pytest
import torch

from torchlime import GlobalAggregator, GlobalImportance
from torchlime.functional import global_importance
from torchlime.music import Explanation

# Copies of ../shared/data (the MusicLIME notebooks' published results), so a fresh clone tests them.
DATA = Path(__file__).resolve().parent / "data"


def notebook(W, N):
    """The notebook's computation on dicts class -> feature -> value (written as it is there)."""
    classes = sorted(W)
    features = sorted({j for c in classes for j in W[c]})
    lime = {c: {j: math.sqrt(W[c][j]) for j in W[c]} for c in classes}
    avg = {c: {j: W[c][j] / N[c][j] for j in W[c] if N[c].get(j, 0) > 0} for c in classes}
    H = {}
    for j in features:
        total = sum(lime[c].get(j, 0.0) for c in classes)
        if total == 0:
            continue
        ps = [lime[c].get(j, 0.0) / total for c in classes]
        H[j] = -sum(p * math.log2(p) for p in ps if p > 0)
    h_min, h_max = min(H.values()), max(H.values())
    hom = {
        c: {j: ((1 - (H[j] - h_min) / (h_max - h_min)) if h_max != h_min else 1.0) * lime[c][j]
            for j in W[c] if j in H}
        for c in classes
    }
    return lime, avg, hom


def dense(table, classes, features):
    index = {f: j for j, f in enumerate(features)}
    out = torch.zeros(len(classes), len(features), dtype=torch.float64)
    for c, row in enumerate(classes):
        for f, v in table[row].items():
            out[c, index[f]] = v
    return out


def check_against_notebook(W, N):
    classes = sorted(W)
    features = sorted({j for c in classes for j in W[c]})
    ours = global_importance(dense(W, classes, features), dense(N, classes, features))
    for got, want in zip(ours, notebook(W, N)):
        torch.testing.assert_close(got, dense(want, classes, features), rtol=1e-12, atol=1e-12)


def random_tables(seed, C=4, F=30, density=0.5):
    rng = random.Random(seed)
    W, N = {}, {}
    for c in range(C):
        W[c], N[c] = {}, {}
        for j in range(F):
            if rng.random() < density:
                N[c][f"f{j}"] = rng.randint(1, 9)
                W[c][f"f{j}"] = rng.random() * N[c][f"f{j}"]
    return W, N


@pytest.mark.parametrize("seed", range(5))
def test_formulas_equal_the_notebook_on_random_tables(seed):
    check_against_notebook(*random_tables(seed))


def test_formulas_on_the_real_genre_weights():
    data = json.loads((DATA / "musiclime_genre_weights.json").read_text())
    W = {int(c): row for c, row in data["feature_weights"].items()}
    N = {c: {j: 1 for j in row} for c, row in W.items()}  # counts are not published: W/N = W
    check_against_notebook(W, N)
    classes = sorted(W)
    features = sorted({j for c in classes for j in W[c]})
    ours = global_importance(dense(W, classes, features), dense(N, classes, features))
    assert torch.isfinite(ours.homogeneity).all() and ours.homogeneity.shape == (9, len(features))


def test_formulas_on_the_real_emotion_counts():
    data = json.loads((DATA / "musiclime_emotion_counts.json").read_text())
    N = {int(c): row for c, row in data["feature_counts"].items()}
    rng = random.Random(0)
    W = {c: {j: n * rng.uniform(0.01, 0.3) for j, n in row.items()} for c, row in N.items()}
    check_against_notebook(W, N)
    check_against_notebook(N, N)  # the counts themselves as importances


def test_equal_entropies_give_lime_importance():
    # Every feature only ever seen for one class: H = 0 everywhere, H_max == H_min.
    W = torch.tensor([[4.0, 0.0, 9.0], [0.0, 1.0, 0.0]])
    out = global_importance(W, (W > 0).float())
    torch.testing.assert_close(out.homogeneity, out.lime)
    assert torch.isfinite(out.homogeneity).all()
    empty = global_importance(torch.zeros(2, 3), torch.zeros(2, 3))
    assert all(torch.equal(t, torch.zeros(2, 3)) for t in empty)
    none = global_importance(torch.zeros(4, 2, 0), torch.zeros(4, 2, 0))  # no feature at all
    assert all(t.shape == (4, 2, 0) for t in none)


def test_leading_dims_equal_a_loop():
    g = torch.Generator().manual_seed(0)
    W = torch.rand(3, 2, 4, 6, generator=g) * (torch.rand(3, 2, 4, 6, generator=g) > 0.4)
    N = (W > 0).float() * 3
    batched = global_importance(W, N)
    for i in range(3):
        for k in range(2):
            for got, want in zip(batched, global_importance(W[i, k], N[i, k])):
                torch.testing.assert_close(got[i, k], want)


def test_formula_errors():
    with pytest.raises(ValueError, match=r"expected counts of the same shape as weight_sums \(2, 3\), got \(2, 4\)"):
        global_importance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"expected weight_sums of shape \(..., C, F\), got shape \(3,\)"):
        global_importance(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="expected weight_sums and counts to be tensors, got list and Tensor"):
        global_importance([[1.0]], torch.zeros(1, 1))


# -- GlobalAggregator ----------------------------------------------------------------------

AUDIO = [f"{s}_T{g}" for g in range(3) for s in ("vocals", "drums")]


def make_explanation(seed, lines, labels=(0, 1, 2), classes=3, zero_frac=0.4):
    """An Explanation over AUDIO + the given lyric lines, random weights, a random prediction."""
    g = torch.Generator().manual_seed(seed)
    names = AUDIO + list(lines)
    types = ["audio"] * len(AUDIO) + ["lyrics"] * len(lines)
    weights = torch.randn(len(labels), len(names), generator=g)
    weights[torch.rand(weights.shape, generator=g) < zero_frac] = 0
    prediction = torch.rand(classes, generator=g).softmax(0)
    local_exp = {
        label: sorted(((i, float(w)) for i, w in enumerate(weights[k].tolist()) if w != 0), key=lambda p: -abs(p[1]))
        for k, label in enumerate(labels)
    }
    fill = {label: 0.5 for label in labels}
    return Explanation(list(labels), names, types, weights, fill, fill, fill, local_exp, prediction, {})


def notebook_loop(exps, label="predicted", sign="positive", top_k=None, keep=lambda e, i: True):
    """The notebook's loop over explanations into dicts W[c][name], N[c][name]."""
    W, N = {c: {} for c in range(3)}, {c: {} for c in range(3)}
    for e in exps:
        pairs = [(int(e.prediction.argmax()),)] if label == "predicted" else [(k,) for k in e.labels]
        for (c,) in pairs:
            items = [(e.feature_names[i], w) for i, w in e.local_exp[c] if keep(e, i)]
            items = [(n, w) for n, w in items if (w > 0 if sign == "positive" else w < 0 if sign == "negative" else w != 0)]
            items.sort(key=lambda p: -abs(p[1]))
            for name, w in items[:top_k]:
                W[c][name] = W[c].get(name, 0.0) + abs(w)
                N[c][name] = N[c].get(name, 0) + 1
    return W, N


def result_as_dicts(result):
    W = {c: {} for c in range(len(result.class_names))}
    N = {c: {} for c in range(len(result.class_names))}
    for c in range(len(result.class_names)):
        for j, name in enumerate(result.feature_names):
            if result.counts[c, j] > 0:
                W[c][name] = float(result.weight_sums[c, j])
                N[c][name] = int(result.counts[c, j])
    return W, N


SONG_LINES = [["la la", "thunder", "night sky"], ["thunder", "rain", "la la", "la la"], ["sun"], ["night sky", "moon"]]


@pytest.mark.parametrize("label", ["predicted", "explained"])
@pytest.mark.parametrize("components", ["positive", "negative", "both"])
@pytest.mark.parametrize("top_k", [None, 3])
def test_open_space_equals_the_notebook_loop(label, components, top_k):
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    agg = GlobalAggregator(3, label=label, components=components, top_k=top_k)
    agg.update(exps[:2])
    for e in exps[2:]:
        agg.update(e)
    result = agg.compute()
    W, N = notebook_loop(exps, label, components, top_k)
    gotW, gotN = result_as_dicts(result)
    assert gotN == N
    for c in W:
        assert gotW[c] == pytest.approx(W[c], rel=1e-12)
    lime, avg, hom = notebook(W, N)
    for got, want in zip((result.lime, result.average, result.homogeneity), (lime, avg, hom)):
        torch.testing.assert_close(got, dense(want, list(range(3)), result.feature_names), rtol=1e-12, atol=1e-12)


def test_fixed_space_audio_only_equals_the_open_space():
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    fixed = GlobalAggregator(3, AUDIO, feature_types="audio", label="explained")
    fixed.update(exps)
    W, N = notebook_loop(exps, "explained", keep=lambda e, i: e.feature_types[i] == "audio")
    got = fixed.compute()
    assert got.feature_names == AUDIO
    assert result_as_dicts(got)[1] == N
    opened = GlobalAggregator(3, feature_types="audio", label="explained")
    opened.update(exps)
    other = opened.compute()
    order = [other.feature_names.index(f) for f in AUDIO if f in other.feature_names]
    torch.testing.assert_close(got.lime[:, got.lime.sum(0) > 0], other.lime[:, order])


def test_tensor_updates_equal_explanation_updates():
    exps = [make_explanation(s, []) for s in range(6)]
    by_exp = GlobalAggregator(3, AUDIO, label="explained", components="both", top_k=4)
    by_exp.update(exps)
    by_tensor = GlobalAggregator(3, AUDIO, components="both", top_k=4)
    weights = torch.stack([e.weights for e in exps])  # (B, K, F)
    classes = torch.tensor([e.labels for e in exps])  # (B, K)
    by_tensor.update(coef=weights[:3], labels=classes[:3])
    by_tensor.update(coef=weights[3:].reshape(-1, len(AUDIO)), labels=classes[3:].reshape(-1))
    a, b = by_exp.compute(), by_tensor.compute()
    torch.testing.assert_close(a.weight_sums, b.weight_sums)
    assert torch.equal(a.counts, b.counts)


def test_names_rankings_and_files(tmp_path):
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    agg = GlobalAggregator(3, class_names=["calm", "happy", "sad"], label="explained")
    agg.update(exps)
    result = agg.compute()
    top = result.top("happy", k=3, kind="homogeneity")
    row = result.homogeneity[1]
    best = sorted(range(row.numel()), key=lambda j: -float(row[j]))[:3]
    assert top == [(result.feature_names[j], float(row[j])) for j in best if row[j] > 0]
    assert set(result.ranking("average", k=2)) == {"calm", "happy", "sad"}
    path = result.save_json(tmp_path / "global.json")
    back = GlobalImportance.load_json(path)
    assert back.feature_names == result.feature_names and back.class_names == result.class_names
    for kind in ("lime", "average", "homogeneity", "weight_sums", "counts"):
        torch.testing.assert_close(getattr(back, kind).double(), getattr(result, kind).double())
    png = result.save_figure(tmp_path / "global.png", k=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_explanations_aggregate_like_the_objects(tmp_path):
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    loaded = []
    for i, e in enumerate(exps):
        e.save_json(tmp_path / f"{i}.json")
        loaded.append(Explanation.load_json(tmp_path / f"{i}.json"))
    a, b = GlobalAggregator(3), GlobalAggregator(3)
    a.update(exps)
    b.update(loaded)
    ra, rb = a.compute(), b.compute()
    assert ra.feature_names == rb.feature_names
    torch.testing.assert_close(ra.weight_sums, rb.weight_sums)
    # duplicate lyric lines (a chorus) survive the file: weights are a list, not a name -> value dict
    assert loaded[1].feature_names.count("la la") == 2
    torch.testing.assert_close(loaded[1].weights, exps[1].weights)


def test_aggregator_errors():
    exps = [make_explanation(s, lines) for s, lines in enumerate(SONG_LINES)]
    fixed = GlobalAggregator(3, AUDIO)
    with pytest.raises(ValueError, match="expected explanations over the aggregator's fixed feature space"):
        fixed.update(exps[0])
    agg = GlobalAggregator(3, AUDIO)
    bad = torch.zeros(2, len(AUDIO))
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"expected finite coef, got nan at index \(1, 2\)"):
        agg.update(coef=bad, labels=torch.tensor([0, 1]))
    nan_exp = make_explanation(9, ["x"], labels=(0, 1, 2))
    nan_exp.metadata["song_info"] = {"id": "s9", "audio": "s9.wav"}
    nan_exp.local_exp[int(nan_exp.prediction.argmax())].append((0, float("nan")))
    with pytest.raises(ValueError, match=r"song 's9' \(s9.wav\), label \d: expected finite coef, got nan for feature 'vocals_T0'"):
        GlobalAggregator(3).update(nan_exp)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 3\), got \[3\]"):
        agg.update(coef=torch.ones(2, len(AUDIO)), labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"expected explanations of a model with num_classes=2 classes, got a prediction over 3"):
        GlobalAggregator(2, label="explained").update(exps[0])
    partial = make_explanation(3, ["x"], labels=(0,))
    partial.prediction = torch.tensor([0.1, 0.8, 0.1])
    with pytest.raises(ValueError, match=r"expected the predicted class 1 among the explained labels \[0\]"):
        GlobalAggregator(3).update(partial)
    with pytest.raises(ValueError, match=r"expected labels of shape \(2,\) \(one per row of coef\), got \(3,\)"):
        agg.update(coef=torch.ones(2, len(AUDIO)), labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected labels= \(a tensor of shape \(2,\)\) with coef=, got NoneType"):
        agg.update(coef=torch.ones(2, len(AUDIO)))
    with pytest.raises(ValueError, match="expected coef of shape \\(..., F\\) with at least one row dim"):
        agg.update(coef=torch.ones(len(AUDIO)), labels=torch.tensor(0))
    with pytest.raises(ValueError, match="expected coef over the fixed feature space of 6 features, got 2 columns"):
        agg.update(coef=torch.ones(1, 2), labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="expected feature_names equal to the aggregator's fixed feature_names"):
        agg.update(coef=torch.ones(1, len(AUDIO)), labels=torch.tensor([0]), feature_names=AUDIO[::-1])
    with pytest.raises(ValueError, match="expected 2 feature_names for the columns of coef"):
        GlobalAggregator(3).update(coef=torch.ones(1, 2), labels=torch.tensor([0]))
    with pytest.raises(TypeError, match="expected integer labels, got torch.float32"):
        agg.update(coef=torch.ones(1, len(AUDIO)), labels=torch.tensor([0.0]))
    with pytest.raises(TypeError, match="expected torchlime.music.Explanation objects, got Tensor"):
        agg.update([torch.ones(3)])
    with pytest.raises(ValueError, match="expected either explanations or coef="):
        agg.update()
    with pytest.raises(ValueError, match="expected label in"):
        GlobalAggregator(3, label="top")
    with pytest.raises(ValueError, match="expected components in"):
        GlobalAggregator(3, components="all")
    with pytest.raises(ValueError, match="expected top_k >= 1, got 0"):
        GlobalAggregator(3, top_k=0)
    with pytest.raises(ValueError, match="expected num_classes >= 1, got 0"):
        GlobalAggregator(0)
    with pytest.raises(ValueError, match=r"expected unique feature names, got duplicates \['a'\]"):
        GlobalAggregator(3, ["a", "a"])
    with pytest.warns(UserWarning, match="called before the ``update``"):
        result = GlobalAggregator(3, AUDIO).compute()
    with pytest.raises(ValueError, match=r"expected a class index in \[0, 3\), got 5"):
        result.top(5)
    with pytest.raises(ValueError, match="expected kind in"):
        result.top(0, kind="max")
    with pytest.raises(ValueError, match="expected torchlime's explanation JSON"):
        Explanation.from_dict({"metadata": {}})
    # Nothing of a failed update is kept: the good explanation before the bad one is not added.
    agg = GlobalAggregator(3, label="explained")
    with pytest.raises(ValueError, match="expected finite coef"):
        agg.update([exps[0], nan_exp])
    agg.update(exps[1])
    only = GlobalAggregator(3, label="explained")
    only.update(exps[1])
    assert torch.equal(agg.compute().counts, only.compute().counts)


def test_reset_and_device_moves():
    agg = GlobalAggregator(3)
    agg.update(make_explanation(0, ["a"]))
    agg.reset()
    agg.update(make_explanation(1, ["b"]))
    assert "a" not in agg.compute().feature_names
