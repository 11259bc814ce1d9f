"""What an Explanation shows a person: its JSON, its figure and its top-components WAV."""

import json
import math
import warnings

import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from torchlime.functional import FeatureSelection, SurrogateFit
from torchlime.functional.engine import stable_top_k
from torchlime.music import Explanation, LyricsFactorization, MusicLime, StemFactorization

LYRICS = "\n".join([
    "Déjà vu, ça va 🎸🔥 naïve café",
    "we paid $5 and $10 for the night",
    "日本語の歌詞 and a 👍🏽 thumbs up",
    "a plain line with a zero weight",
    "a line the selection dropped",
])
NAMES = {0: "calm", 1: "stormy"}


def make_audio(S=4, C=1, T=4000, rate=8000, G=4, boundaries=None, scale=1.0):
    g = torch.Generator().manual_seed(0)
    stems = torch.randn(S, C, T, generator=g) * scale
    kwargs = dict(boundaries=boundaries) if boundaries is not None else dict(num_segments=G)
    return StemFactorization(stems, sample_rate=rate, **kwargs)


def make_explanation(coef, *, stderr=None, selected=None, audio=None, lyrics=None, prediction=(0.3, 0.7),
                     n_samples=None, song_info=None, label_names=None, top_k=5, labels=(0, 1)):
    """An Explanation from a hand-made fit: ``coef`` (K, F); ``selected`` (K, F) bool."""
    coef = torch.as_tensor(coef, dtype=torch.float32)
    K, F = coef.shape
    selected = torch.ones(K, F, dtype=torch.bool) if selected is None else torch.as_tensor(selected)
    coef = torch.where(selected, coef, torch.zeros(()))
    order = torch.stack([torch.cat([torch.nonzero(row).flatten(), torch.nonzero(~row).flatten()]) for row in selected])
    selection = FeatureSelection(selected[None], order[None], selected.sum(-1)[None])
    fit = SurrogateFit(coef[None], torch.zeros(1, K), torch.full((1, K), 0.5), torch.full((1, K), 0.6),
                       stderr=None if stderr is None else torch.as_tensor(stderr, dtype=torch.float32)[None],
                       selection=selection, n_samples=None if n_samples is None else torch.tensor([n_samples]))
    names = (audio.feature_names if audio is not None else []) + (lyrics.feature_names if lyrics is not None else [])
    types = ["audio"] * (audio.num_features if audio is not None else 0) + ["lyrics"] * (lyrics.num_features if lyrics else 0)
    assert len(names) == F
    return Explanation.from_fit(fit, selection, list(labels), names, types, torch.tensor(prediction),
                                audio_factorization=audio, lyrics_factorization=lyrics,
                                metadata=dict(n_samples=n_samples or 100, lyrics_unit="line", song_info=song_info or {}),
                                top_k=top_k, label_names=label_names)


def texts(fig):
    """Every string drawn on the figure (titles, labels, tick labels, annotations, legends)."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


# -- coef, stderr, n_samples, stable top-k, JSON ------------------------------------------------


def test_from_fit_keeps_coef_stderr_n_samples_and_weights_is_an_alias():
    audio = make_audio(G=2)
    coef = torch.linspace(-1, 1, 16).reshape(2, 8)
    se = torch.full((2, 8), 0.01)
    exp = make_explanation(coef, stderr=se, audio=audio, n_samples=640)
    torch.testing.assert_close(exp.coef, coef, rtol=0, atol=0)
    assert exp.weights is exp.coef
    torch.testing.assert_close(exp.stderr, se, rtol=0, atol=0)
    assert exp.n_samples == 640 and exp.top_k == 5
    exp.weights = coef * 2  # the alias writes through
    torch.testing.assert_close(exp.coef, coef * 2, rtol=0, atol=0)


def test_stable_top_k_is_the_engines_flag_with_dropped_features_at_zero():
    audio = make_audio(G=2)
    coef = [[3.0, -2.0, 0.1, 0.05, 0, 0, 0, 0], [3.0, -2.0, 1.9, 0.05, 0, 0, 0, 0]]
    selected = [[True] * 4 + [False] * 4] * 2
    se = torch.full((2, 8), 0.1)
    se[:, 4:] = math.nan  # no interval for dropped features
    exp = make_explanation(coef, stderr=se, selected=selected, audio=audio, top_k=2)
    assert exp.stable_top_k == {0: True, 1: False}
    expected = stable_top_k(torch.tensor(coef, dtype=torch.float64),
                            torch.where(torch.tensor(selected), se.double(), 0.0), 2)
    assert exp.stable_top_k == {0: bool(expected[0]), 1: bool(expected[1])}
    # a kept feature without a finite standard error cannot be called stable
    se2 = se.clone()
    se2[0, 1] = math.nan
    assert make_explanation(coef, stderr=se2, selected=selected, audio=audio, top_k=2).stable_top_k[0] is False
    assert make_explanation(coef, audio=audio).stable_top_k is None
    data = exp.to_dict()
    assert data["metadata"]["uncertainty"]["stable_top_k"] == {"0": True, "1": False}
    assert data["metadata"]["uncertainty"]["top_k"] == 2


def test_json_round_trip_keeps_stderr_selection_times_and_feature_space(tmp_path):
    audio = make_audio(G=4, boundaries=[(0, 1000), (1000, 2000), (2500, 3500), (3500, 4000)])
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    F = audio.num_features + lyrics.num_features
    g = torch.Generator().manual_seed(1)
    coef = torch.randn(2, F, generator=g)
    coef[0, 3] = 0.0  # kept by the selection, with an exact zero weight
    selected = torch.ones(2, F, dtype=torch.bool)
    selected[:, [5, F - 1]] = False
    se = torch.rand(2, F, generator=g) * 0.1
    exp = make_explanation(coef, stderr=se, selected=selected, audio=audio, lyrics=lyrics, n_samples=300,
                           label_names=NAMES)
    path = exp.save_json(tmp_path / "e.json")
    data = json.loads(path.read_text())
    label0 = data["explanations"]["label_0"]
    assert label0["prediction_label"] == "calm"
    assert label0["selected_features"] == [i for i in range(F) if i not in (5, F - 1)]
    assert label0["stderr"][5] is not None and len(label0["stderr"]) == F
    space = data["metadata"]["feature_space"]["audio"]
    assert space["segment_times"] == [[a / 8000, b / 8000] for a, b in audio.boundaries]
    assert space["boundaries"] == [list(b) for b in audio.boundaries] and space["sample_rate"] == 8000
    assert space["stem_names"] == audio.stem_names and space["duration_s"] == 0.5
    assert data["metadata"]["feature_space"]["lyrics"]["num_units"] == lyrics.num_features
    for item in label0["top_features"]:
        if item["type"] == "audio":
            g_ = audio.feature_names.index(item["feature"]) // audio.num_stems
            a, b = audio.boundaries[g_]
            assert (item["start_s"], item["end_s"]) == (a / 8000, b / 8000)
    back = Explanation.load_json(path)
    torch.testing.assert_close(back.coef, exp.coef, rtol=0, atol=0)
    torch.testing.assert_close(back.stderr, exp.stderr, rtol=0, atol=0)
    assert back.n_samples == 300 and back.local_exp == exp.local_exp  # the zero-weight kept feature too
    assert back.segment_times == exp.segment_times == [(a / 8000, b / 8000) for a, b in audio.boundaries]
    assert back.metadata["segment_times"] == space["segment_times"] and back.metadata["duration_s"] == 0.5
    assert back.stable_top_k == exp.stable_top_k
    assert back.label_name(0) == "'calm' (class 0)"
    again = back.to_dict()  # a loaded explanation re-saves what it loaded
    assert again["metadata"]["feature_space"] == data["metadata"]["feature_space"]
    assert again["explanations"]["label_1"]["top_audio"] == data["explanations"]["label_1"]["top_audio"]
    assert "feature_space" not in again["metadata"]["explanation_params"]


def test_old_json_without_the_new_fields_still_loads():
    audio = make_audio(G=2)
    coef = torch.tensor([[0.5, 0.0, -0.25, 0, 0, 0, 0, 0.1]] * 2)
    data = make_explanation(coef, stderr=torch.full((2, 8), 0.1), audio=audio).to_dict()
    del data["metadata"]["feature_space"], data["metadata"]["uncertainty"]
    for entry in data["explanations"].values():
        for key in ("stderr", "selected_features", "notes", "top_audio"):
            del entry[key]
        for item in entry["top_features"]:
            item.pop("start_s", None), item.pop("end_s", None)
    old = Explanation.from_dict(data)
    assert old.stderr is None and old.stable_top_k is None and old.n_samples is None
    assert [i for i, _ in old.local_exp[0]] == [0, 2, 7]  # selected = non-zero, as before
    assert old.segment_times is None
    fig, _ = old.plot(0)  # no layout: the audio panel says so instead of guessing
    assert "the stems x segments layout is unknown" in texts(fig)


def test_bad_json_and_arguments_are_named():
    audio = make_audio(G=2)
    exp = make_explanation(torch.ones(2, 8), stderr=torch.ones(2, 8), audio=audio)
    data = exp.to_dict()
    data["explanations"]["label_0"]["stderr"] = [0.1] * 3
    with pytest.raises(ValueError, match="got a dict without 8 standard errors per label"):
        Explanation.from_dict(data)
    data = exp.to_dict()
    data["explanations"]["label_0"]["selected_features"] = [0, 9]
    with pytest.raises(ValueError, match=r"selected_features within \[0, 8\)"):
        Explanation.from_dict(data)
    with pytest.raises(ValueError, match=r"expected stderr of the shape of coef \(2, 8\), got \(2, 7\)"):
        Explanation([0, 1], exp.feature_names, exp.feature_types, exp.coef, {}, {}, {}, {}, exp.prediction, {},
                    stderr=torch.ones(2, 7))
    with pytest.raises(ValueError, match="expected top_k >= 1, got 0"):
        make_explanation(torch.ones(2, 8), audio=audio, top_k=0)
    with pytest.raises(ValueError, match=r"expected one of the explained labels \[0, 1\], got 4"):
        exp.plot(4)
    with pytest.raises(TypeError, match="expected ax as None or three matplotlib Axes"):
        exp.plot(0, ax=Figure().subplots())
    with pytest.raises(ValueError, match=r"expected the fit of one song \(one n_samples\), got n_samples of shape \(2,\)"):
        fit = SurrogateFit(torch.ones(1, 2, 8), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2),
                           n_samples=torch.tensor([10, 20]))
        sel = FeatureSelection(torch.ones(1, 2, 8, dtype=torch.bool), torch.arange(8).expand(1, 2, 8),
                               torch.full((1, 2), 8))
        Explanation.from_fit(fit, sel, [0, 1], exp.feature_names, exp.feature_types, exp.prediction)


# -- the figure --------------------------------------------------------------------------------


def figure_case(stderr=True, prediction=(0.3, 0.7), scale=1.0, label_names=NAMES):
    audio = make_audio(G=4)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    F = audio.num_features + lyrics.num_features  # 16 audio + 5 lyric lines
    coef = torch.linspace(-0.2, 0.3, F).repeat(2, 1) * scale
    coef[:, 16 + 3] = 0.0  # "a plain line with a zero weight": kept, weight 0
    selected = torch.ones(2, F, dtype=torch.bool)
    selected[:, [1, 6, 11, 16 + 4]] = False  # three audio cells and one lyric line dropped
    se = torch.full((2, F), 0.01 * scale) if stderr else None
    exp = make_explanation(coef, stderr=se, selected=selected, audio=audio, lyrics=lyrics, prediction=prediction,
                           n_samples=500, label_names=label_names)
    return exp, coef, selected


def test_figure_reads_without_the_code():
    exp, coef, selected = figure_case()
    fig, (heat, audio_bars, lyric_bars) = exp.plot(1)
    strings = texts(fig)
    assert "Explanation of 'stormy' (class 1)" in strings
    assert heat.get_xlabel() == "time (s)" and heat.get_xlim() == (0.0, 0.5)
    colourbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert "surrogate weight" in colourbar.get_ylabel() and "'stormy'" in colourbar.get_ylabel()
    # one symmetric scale: colours and both bar panels
    mesh = [c for c in heat.collections if isinstance(c, QuadMesh)][0]
    limit = coef[1][selected[1]].abs().max().item()
    assert mesh.norm.vmin == pytest.approx(-limit) and mesh.norm.vmax == pytest.approx(limit)
    assert audio_bars.get_xlim() == lyric_bars.get_xlim() and audio_bars.get_xlim()[0] == -audio_bars.get_xlim()[1]
    # dropped cells are hatched, not drawn as zero weights
    hatched = [p for p in heat.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == 3
    assert "not selected by the feature selection (no weight estimated)" in strings
    # zero-weight and dropped lyric lines are left out of the bars
    shown = [t.get_text() for t in lyric_bars.get_yticklabels()]
    assert len(shown) == 3 and not any("zero weight" in s or "dropped" in s for s in shown)
    assert "top lyric lines\n3 of 3 with a non-zero weight, 1 of 5 not selected" in strings
    # intervals and the stable flag
    bars = [c for c in audio_bars.containers + lyric_bars.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(c.errorbar is not None for c in bars)
    assert any(s.startswith("top-5 stable: ") for s in strings)
    assert not any("saturated" in s for s in strings)


def test_figure_without_names_or_stderr():
    exp, _, _ = figure_case(stderr=False, label_names=None)
    fig, (_, audio_bars, _) = exp.plot(0)
    strings = texts(fig)
    assert "Explanation of class 0" in strings
    bars = [c for c in audio_bars.containers if isinstance(c, BarContainer)]
    assert len(bars) == 1 and bars[0].errorbar is None
    assert not any("stable" in s for s in strings) and not any("95% interval" in s for s in strings)
    assert "Explanation of 'quiet' (class 0)" in texts(exp.plot(0, label_names={0: "quiet"})[0])


def test_saturated_model_is_said_and_weights_keep_their_digits():
    exp, coef, _ = figure_case(prediction=(1e-5, 1 - 1e-5), scale=1e-5)
    assert exp.notes(1) and exp.notes(1)[0].startswith("model saturated: weights are tiny")
    fig, (heat, _, _) = exp.plot(1)
    strings = texts(fig)
    assert any("model saturated: weights are tiny" in s and "the explanation says little" in s for s in strings)
    assert f"{coef[1, -2].item():+.3g}" in strings and "+0.0000" not in strings  # e.g. +3e-06
    mesh = [c for c in heat.collections if isinstance(c, QuadMesh)][0]
    assert mesh.norm.vmax == pytest.approx(1e-3 * (1 - 1e-5))  # tiny weights stay pale
    assert exp.to_dict()["explanations"]["label_1"]["notes"] == exp.notes(1)


def test_poor_fit_is_said():
    exp, _, _ = figure_case()
    exp.score[1] = 0.01
    assert exp.notes(1) == ["the surrogate fits poorly (weighted R\u00b2 0.01): the weights explain little of the "
                            "model's output"]


def test_lyrics_characters_draw_without_glyph_warnings(tmp_path):
    exp, _, _ = figure_case()
    exp.coef[:, 16:] = torch.tensor([0.3, 0.2, 0.1, 0.05, 0.0])
    exp.local_exp = {label: [(i, float(exp.coef[k, i])) for i in range(exp.coef.shape[1]) if i != 16 + 4]
                     for k, label in enumerate(exp.labels)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" and mathtext errors would raise
        exp.save_figure(tmp_path / "f.png", 1)
        fig, (_, _, lyric_bars) = exp.plot(1)
        fig.savefig(tmp_path / "g.png")
    shown = [t.get_text() for t in lyric_bars.get_yticklabels()]
    assert any(s.startswith("Déjà vu, ça va \ufffd naïve café") for s in shown)  # emoji: one placeholder
    assert any(r"\$5 and \$10" in s for s in shown)  # dollars drawn, not read as mathtext
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_on_given_axes_without_pyplot_or_the_global_backend(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("the explanation must not touch pyplot or the global backend")

    for name in ("figure", "subplots", "gcf", "gca", "close"):
        monkeypatch.setattr(plt, name, refuse)
    monkeypatch.setattr(matplotlib, "use", refuse)
    exp, _, _ = figure_case()
    fig = Figure(figsize=(12, 4))
    given = list(fig.subplots(1, 3))
    got_fig, got_axes = exp.plot(1, ax=given)
    assert got_fig is fig and got_axes == given
    assert given[0].get_title(loc="left").startswith("Explanation of 'stormy' (class 1)\n")
    fig2, axes = exp.plot(0)
    assert isinstance(fig2, Figure) and len(axes) == 3 and all(a is not None for a in axes)


def test_a_lyrics_only_explanation_gets_one_panel():
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    exp = make_explanation(torch.tensor([[0.3, -0.2, 0.1, 0.0, 0.05]] * 2), lyrics=lyrics)
    fig, (heat, audio_bars, lyric_bars) = exp.plot(1)
    assert heat is None and audio_bars is None
    assert len(lyric_bars.get_yticklabels()) == 4  # the zero-weight line is left out
    assert exp.to_dict()["metadata"]["feature_space"]["audio"] is None


def test_uneven_segments_draw_at_their_times():
    exp = make_explanation(torch.linspace(-1, 1, 8).repeat(2, 1), audio=make_audio(G=2, boundaries=[(0, 1000), (3000, 4000)]))
    fig, (heat, audio_bars, _) = exp.plot(0)
    mesh = [c for c in heat.collections if isinstance(c, QuadMesh)][0]
    edges = mesh.get_coordinates()[0, :, 0]
    assert edges.tolist() == [0.0, 0.125, 0.375, 0.5]  # segment, gap, segment (seconds)
    labels = [t.get_text() for t in audio_bars.get_yticklabels()]
    assert "other T1  0.38\u20130.50 s" in labels


def test_segment_times_come_from_the_factorization_when_it_has_them():
    class Timed(StemFactorization):
        @property
        def segment_times(self):
            return [(0.0, 0.25), (0.25, 0.5)]

    audio = Timed(torch.randn(4, 1, 4000), sample_rate=8000, num_segments=2)
    exp = make_explanation(torch.ones(2, 8), audio=audio)
    assert exp.segment_times == [(0.0, 0.25), (0.25, 0.5)]


# -- the top-components WAV --------------------------------------------------------------------


def test_wav_at_the_songs_rate_and_channels_normalised_and_listed(tmp_path):
    import soundfile as sf
    import torchaudio.functional as AF

    audio = make_audio(G=4, scale=3.0)  # loud: the sum of components exceeds full scale
    coef = torch.tensor([[0.5, -0.2, 0.4, 0.1] + [0.0] * 12, [0.0] * 16])
    exp = make_explanation(coef, audio=audio, song_info={"sample_rate": 44100, "channels": 2})
    path = exp.save_audio(tmp_path / "top.wav", 0, num_components=2)
    data, rate = sf.read(path, always_2d=True)
    assert rate == 44100 and data.shape == (4000 * 44100 // 8000, 2)
    source = audio.component_audio(["vocals_T0", "bass_T0"])
    reference = AF.resample(source, 8000, 44100)[0]
    gain = 0.99 / reference.abs().max().item()
    assert gain < 1 and abs(data).max() <= 0.99 + 1 / 32768
    torch.testing.assert_close(torch.from_numpy(data[:, 0]).float(), reference * gain, rtol=0, atol=1.5 / 32768)
    torch.testing.assert_close(torch.from_numpy(data[:, 1]).float(), reference * gain, rtol=0, atol=1.5 / 32768)
    record = exp.to_dict(audio_components=2)["explanations"]["label_0"]["top_audio"]
    assert [c["feature"] for c in record["components"]] == ["vocals_T0", "bass_T0"]
    assert [c["weight"] for c in record["components"]] == pytest.approx([0.5, 0.4])
    assert record["label"] == 0 and record["sample_rate"] == 44100 and record["channels"] == 2
    assert record["gain"] == pytest.approx(gain, rel=1e-5) and record["source_sample_rate"] == 8000
    assert "vocals_T0, bass_T0" in sf.SoundFile(path).comment


def test_quiet_wav_is_not_scaled_up_and_follows_explicit_settings(tmp_path):
    import soundfile as sf

    audio = make_audio(C=2, G=4, scale=0.05)
    coef = torch.tensor([[0.5, -0.2, 0.4, 0.1] + [0.0] * 12, [0.0] * 16])
    exp = make_explanation(coef, audio=audio)
    top = exp.top_audio(0, 5)
    assert top.gain == 1.0 and top.sample_rate == 8000 and top.components == ["vocals_T0", "bass_T0", "other_T0"]
    torch.testing.assert_close(top.audio, audio.component_audio(top.components), rtol=0, atol=0)
    mono = exp.top_audio(0, 5, channels=1)
    torch.testing.assert_close(mono.audio, top.audio.mean(0, keepdim=True), rtol=0, atol=0)
    data, rate = sf.read(exp.save_audio(tmp_path / "neg.wav", 0, positive=False, sample_rate=16000), always_2d=True)
    assert rate == 16000 and data.shape == (8000, 2)
    silent = exp.top_audio(1)  # label 1 has no positive component: silence at the song's length
    assert silent.components == [] and silent.audio.abs().max() == 0 and silent.audio.shape == (2, 4000)


def test_wav_errors():
    audio = make_audio(C=2, G=2)
    exp = make_explanation(torch.ones(2, 8), audio=audio)
    with pytest.raises(ValueError, match="expected channels 1 or 2 for stems with 2 channels, got 3"):
        exp.top_audio(0, channels=3)
    with pytest.raises(ValueError, match=r"expected sample_rate \(the song's rate for the top-components WAV\) >= 1, got 0"):
        exp.top_audio(0, sample_rate=0)
    loaded = Explanation.from_dict(exp.to_dict())
    with pytest.raises(ValueError, match="expected an explanation with an audio factorization, got none"):
        loaded.top_audio(0)


def test_music_lime_explanation_end_to_end(tmp_path):
    """A real explanation: the figure and the JSON agree with the fit it came from."""
    audio = make_audio(G=4)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")

    def model(texts, waves):
        import numpy as np

        rows = [[float(np.mean(w[:1000] ** 2)) + t.count("night"), 1.0] for t, w in zip(texts, waves)]
        return np.asarray(rows)

    exp = MusicLime(predict_fn=model).explain(audio, lyrics, target=[0], n_samples=200, num_features=6,
                                               generator=torch.Generator().manual_seed(0),
                                               song_info={"id": "song-1"})
    fig, (heat, _, _) = exp.plot(0, label_names={0: "loud start"})
    assert "Explanation of 'loud start' (class 0) for song-1" in texts(fig)
    hatched = [p for p in heat.patches if isinstance(p, Rectangle) and p.get_hatch()]
    kept_audio = sum(1 for i, _ in exp.local_exp[0] if exp.feature_types[i] == "audio")
    assert len(hatched) == audio.num_features - kept_audio
    data = exp.to_dict()
    assert data["explanations"]["label_0"]["selected_features"] == sorted(i for i, _ in exp.local_exp[0])
    assert data["metadata"]["feature_space"]["audio"]["segment_times"] == [[a / 8000, b / 8000] for a, b in audio.boundaries]
