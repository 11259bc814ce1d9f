"""GlobalImportance figures: no pyplot state, full labels, a note for empty classes."""

import json
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from torchlime import GlobalAggregator, GlobalImportance

from .test_aggregation import make_explanation

DATA = Path(__file__).resolve().parent / "data"
LONG = "and the thunder rolls across the bay while we walk the night, counting every window that burns"


def genre_result(empty_class=True):
    """The MusicLIME genre weights (9 classes), plus a class no song was predicted as."""
    data = json.loads((DATA / "musiclime_genre_weights.json").read_text())
    rows = {int(c): row for c, row in data["feature_weights"].items()}
    features = sorted({f for row in rows.values() for f in row})
    classes = [f"genre {c}" for c in sorted(rows)] + (["unseen"] if empty_class else [])
    W = torch.zeros(len(classes), len(features), dtype=torch.float64)
    for c, row in rows.items():
        for f, v in row.items():
            W[c, features.index(f)] = v
    W[0, features.index("I")] += 0.6  # a long lyric line among the top features of class 0
    features[features.index("I")] = LONG
    support = torch.tensor([5] * len(rows) + ([0] if empty_class else []))
    return GlobalImportance.from_sums(W, (W > 0).long(), features, classes, support=support)


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_figures_leave_pyplot_and_the_backend_alone(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use called")

    monkeypatch.setattr(matplotlib, "use", refuse)
    backend = matplotlib.rcParams._get_backend_or_none() if hasattr(matplotlib.rcParams, "_get_backend_or_none") else None
    had_pyplot = "matplotlib.pyplot" in sys.modules
    result = genre_result()
    png = result.save_figure(tmp_path / "global.png", k=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = result.plot("genre 0")
    assert isinstance(fig, Figure) and ax.figure is fig
    fig, axes = result.plot_grid(k=3, kinds=("lime",))
    assert axes.shape == (10, 1)
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot  # never imported by us
    if backend is not None:
        assert matplotlib.rcParams._get_backend_or_none() == backend


def test_long_names_are_wrapped_whole():
    result = genre_result()
    _, ax = result.plot(0, k=10, wrap=30)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert LONG in [label.replace("\n", " ") for label in labels]  # whole, not cut at 30
    long = next(label for label in labels if label.replace("\n", " ") == LONG)
    assert all(len(line) <= 30 for line in long.split("\n")) and long.count("\n") >= 3
    # Each bar sits beside its own label: the wrapped one gets as many rows as it has lines.
    centres = sorted(t.get_position()[1] for t in ax.get_yticklabels())
    assert len(set(centres)) == len(labels)


def test_control_characters_are_shown_escaped():
    names = ["nul\0line", "a\tb\nc", ""]
    result = GlobalImportance.from_sums(torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3), names, ["x"])
    _, ax = result.plot(0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["nul\\x00line", "a b c", "''"]  # bottom-up


def test_an_empty_class_says_no_songs():
    result = genre_result()
    fig, axes = result.plot_grid(k=5)
    empty = result.class_names.index("unseen")
    for ax in axes[empty]:
        assert texts(ax) == ["no songs"] and "(0 songs)" in ax.get_title()
    assert all(texts(ax) == [] for ax in axes[0])
    # Songs of a class whose features were all filtered out are not "no songs".
    agg = GlobalAggregator(3, components="negative", top_k=1)
    exp = make_explanation(0, ["la la"])
    exp.local_exp = {k: [(i, abs(w)) for i, w in pairs] for k, pairs in exp.local_exp.items()}  # all positive
    agg.update(exp)
    fig, axes = agg.compute().plot_grid(k=3)
    c = int(exp.prediction.argmax())
    assert texts(axes[c][0]) == ["no features kept\n(components=negative, top_k=1)"]
    assert texts(axes[(c + 1) % 3][0]) == ["no songs"]


def test_plot_draws_on_a_given_axes_and_old_files_without_support():
    result = genre_result(empty_class=False)
    fig = Figure()
    axes = fig.subplots(1, 2)
    got_fig, got_ax = result.plot("genre 3", kind="homogeneity", k=4, ax=axes[1])
    assert got_fig is fig and got_ax is axes[1] and len(axes[1].patches) == 4 and not axes[0].patches
    data = result.to_dict()
    assert data["support"] == {name: 5 for name in result.class_names}
    del data["support"]  # a file written before support was recorded
    old = GlobalImportance.from_dict(data)
    assert old.support is None
    old.plot_grid(k=2)


def test_figure_errors():
    result = genre_result()
    with pytest.raises(ValueError, match="expected k >= 1, got 0"):
        result.plot(0, k=0)
    with pytest.raises(ValueError, match="expected wrap >= 1, got 0"):
        result.plot_grid(wrap=0)
    with pytest.raises(ValueError, match="expected kind in"):
        result.plot(0, kind="max")
    with pytest.raises(ValueError, match="expected a class name in"):
        result.plot("polka")
    with pytest.raises(ValueError, match="expected at least one kind, got none"):
        result.plot_grid(kinds=())
    with pytest.raises(ValueError, match=r"expected 10 class names and 3 feature names for sums of shape \(10, 3\)"):
        GlobalImportance.from_sums(torch.zeros(10, 3), torch.zeros(10, 3), ["a"], ["c"] * 10)
    with pytest.raises(ValueError, match=r"expected support of shape \(2,\), got \(3,\)"):
        GlobalImportance.from_sums(torch.zeros(2, 1), torch.zeros(2, 1), ["a"], ["c", "d"], support=torch.ones(3))
