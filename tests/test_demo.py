"""``torchlime demo``: the explanation recovers the planted cause of the demo songs."""

import json

import pytest
import torch

from torchlime.cli import main
from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
from torchlime.music.demo import DEMO_MAX_LENGTH, load_demo, make_song


@pytest.mark.slow
@pytest.mark.parametrize("song_seed,explain_seed", [(7, 0), (11, 1), (23, 2)])
def test_planted_cause_ranks_on_top(song_seed, explain_seed):
    model, tokenizer = load_demo("cpu")
    song = make_song(1, song_seed)
    audio = StemFactorization(song.stems, sample_rate=song.sample_rate, num_segments=10)
    lyrics = LyricsFactorization(song.lyrics, tokenizer, unit="line", max_length=DEMO_MAX_LENGTH)
    exp = MusicLime(model, apply_softmax=True).explain(
        audio, lyrics, targets=[1], n_samples=600, generator=torch.Generator().manual_seed(explain_seed)
    )
    planted = set(song.cause_features) | {song.lines[i] for i in song.cause_lines}
    top = {item["feature"] for item in exp.get_explanation(1, len(planted))}
    assert top == planted
    assert all(item["weight"] > 0 for item in exp.get_explanation(1, len(planted)))


def test_demo_command_writes_outputs(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path), "--n-samples", "200", "--quiet", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "planted cause: drums in segments [2, 3, 4]" in out
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["explanations"]["label_1"]["prediction_label"] == "positive"
    assert (tmp_path / "demo_label1.png").exists() and (tmp_path / "demo_label1_top_audio.wav").exists()
