"""GlobalAggregator refuses explanations over another feature space than the ones it holds."""

import pytest
import torch

from torchlime import GlobalAggregator
from torchlime.cli import main
from torchlime.music import Explanation, StemFactorization

STEMS = ("vocals", "drums")


def song(sid, segments=2, classes=3, lines=("la la", "thunder"), unit="line", modality="both", label_names=None,
         factorization=None, **metadata):
    """A saved-and-loaded-like explanation of song ``sid`` (labels 0..classes-1), as `aggregate` reads them."""
    audio = [f"{s}_T{g}" for g in range(segments) for s in STEMS]
    names = audio + list(lines)
    types = ["audio"] * len(audio) + ["lyrics"] * len(lines)
    g = torch.Generator().manual_seed(len(sid) + segments + classes)
    labels = list(range(classes))
    weights = torch.randn(classes, len(names), generator=g)
    local_exp = {k: sorted(enumerate(weights[k].tolist()), key=lambda p: -abs(p[1])) for k in labels}
    meta = {"song_info": {"id": sid, "audio": f"{sid}.wav"}, "modality": modality, "num_audio_features": len(audio),
            "lyrics_unit": unit if lines else None, **metadata}
    if label_names is not None:
        meta["label_names"] = dict(enumerate(label_names))
    fill = dict.fromkeys(labels, 0.5)
    return Explanation(labels, names, types, weights, fill, fill, fill, local_exp,
                       torch.arange(classes, dtype=torch.float32).softmax(0), meta, audio_factorization=factorization)


def factorization(length, segments=2, boundaries=None):
    stems = torch.ones(len(STEMS), 1, length)
    return StemFactorization(stems, sample_rate=8000, stem_names=list(STEMS), num_segments=segments,
                             boundaries=boundaries)


def test_other_segments_are_refused_naming_both_songs():
    agg = GlobalAggregator(3)
    agg.update(song("a", segments=4))
    with pytest.raises(ValueError, match=(
        r"song 'b' \(b.wav\) is over another feature space than the explanations already aggregated: "
        r"expected 8 audio features \(vocals_T0, drums_T0, ..., drums_T3\) \(as in song 'a' \(a.wav\)\), "
        r"got 4 audio features \(vocals_T0, drums_T0, vocals_T1, drums_T1\): other stems or segments"
    )):
        agg.update(song("b", segments=2))
    agg.update(song("c", segments=4))  # the refused one left nothing behind
    assert agg.compute().support.tolist() == [0, 0, 2]


def test_other_number_of_classes_is_refused():
    agg = GlobalAggregator(2, label="explained")
    agg.update(song("a", classes=2))
    with pytest.raises(ValueError, match=r"song 'b' \(b.wav\): expected explanations of a model with "
                                         r"num_classes=2 classes, got a prediction over 3 classes"):
        agg.update(song("b", classes=3))


def test_other_lyrics_unit_modality_or_class_names_are_refused():
    cases = [
        (dict(unit="word"), r"expected lyrics unit 'line' \(as in song 'a' \(a.wav\)\), got 'word'"),
        (dict(modality="audio", lines=()), r"expected modality 'both' \(as in song 'a' \(a.wav\)\), got 'audio'"),
        (dict(label_names=["rock", "jazz", "folk"]), r"expected class 1 named 'pop' \(as in song 'a' \(a.wav\)\), got 'jazz'"),
    ]
    for kwargs, message in cases:
        agg = GlobalAggregator(3)
        agg.update(song("a", label_names=["rock", "pop", "folk"]))
        with pytest.raises(ValueError, match="song 'b' \\(b.wav\\) is over another feature space.*" + message):
            agg.update(song("b", **kwargs))
    # Class names that are only the class index are no names: they match any.
    agg = GlobalAggregator(3)
    agg.update([song("a", label_names=["rock", "pop", "folk"]), song("b", label_names=["0", "1", "2"]), song("c")])


def test_only_the_counted_features_must_match():
    # feature_types="lyrics" does not look at the audio segmentation, "audio" not at the lyrics unit.
    lyrics = GlobalAggregator(3, feature_types="lyrics")
    lyrics.update([song("a", segments=4), song("b", segments=2)])
    audio = GlobalAggregator(3, feature_types="audio")
    audio.update([song("a", unit="line"), song("b", unit="word")])
    with pytest.raises(ValueError, match="expected lyrics unit 'line'"):
        GlobalAggregator(3, feature_types="lyrics").update([song("a", unit="line"), song("b", unit="word")])


def test_segments_are_compared_relative_to_the_song():
    # Even segments of songs of other lengths are the same stretches (halves); segments cut
    # elsewhere are not, though they carry the same names.
    agg = GlobalAggregator(3)
    agg.update([song("a", factorization=factorization(1000)), song("b", factorization=factorization(1601))])
    agg.update(song("loaded"))  # a file records no boundaries: nothing to compare
    with pytest.raises(ValueError, match=(
        r"song 'c' \(c.wav\) is over another feature space.*expected audio segments at \[0.000-0.500, 0.500-1.000\] of the song "
        r"\(as in song 'a' \(a.wav\)\), got \[0.000-0.250, 0.250-1.000\]"
    )):
        agg.update(song("c", factorization=factorization(1000, boundaries=[(0, 250), (250, 1000)])))
    # The same from the times a JSON may record (metadata segment_times, optional duration_s).
    agg.update(song("d", segment_times=[[0.0, 5.0], [5.0, 10.0]]))
    with pytest.raises(ValueError, match=r"got \[0.000-0.300, 0.300-1.000\]"):
        agg.update(song("e", segment_times=[[0.0, 3.0], [3.0, 10.0]]))
    with pytest.raises(ValueError, match=r"got \[0.000-0.250, 0.250-0.500\]"):
        agg.update(song("f", segment_times=[[0.0, 3.0], [3.0, 6.0]], duration_s=12.0))
    agg.update(song("g", segment_times="not a list of pairs"))  # unreadable: not compared


def test_tensor_updates_and_reset_start_a_new_space():
    agg = GlobalAggregator(3)
    agg.update(song("a", segments=4))
    agg.reset()
    agg.update(song("b", segments=2))
    assert "vocals_T3" not in agg.compute().feature_names


def test_torchlime_aggregate_refuses_mixed_files(tmp_path, capsys):
    # Issue 15 item 3: 4 and 2 segments, and a 2- with a 3-class explanation, were merged with exit 0.
    for sid, kwargs in [("four", dict(segments=4)), ("two", dict(segments=2)), ("c2", dict(classes=2))]:
        song(sid, **kwargs).save_json(tmp_path / f"{sid}.json")
    assert main(["aggregate", str(tmp_path / "four.json"), str(tmp_path / "two.json"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "two.json: song 'two' (two.wav) is over another feature space" in err and "(as in song 'four' (four.wav))" in err
    assert main(["aggregate", str(tmp_path / "c2.json"), str(tmp_path / "four.json"), "--out", str(tmp_path)]) == 2
    assert "four.json: song 'four' (four.wav): expected explanations of a model with num_classes=2" in capsys.readouterr().err
    assert not (tmp_path / "global_importance.json").exists()
    assert main(["aggregate", str(tmp_path / "four.json"), "--out", str(tmp_path)]) == 0
