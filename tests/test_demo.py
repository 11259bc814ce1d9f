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
        audio, lyrics, target=[1], n_samples=600, generator=torch.Generator().manual_seed(explain_seed)
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
    assert "explained in " in out and "(200 samples, 40 audio + 12 lyric features)" in out
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["explanations"]["label_1"]["prediction_label"] == "positive"
    assert (tmp_path / "demo_label1.png").exists() and (tmp_path / "demo_label1_top_audio.wav").exists()


def test_demo_factory_takes_a_song_of_any_length():
    from torchlime.music.demo.factory import factory

    spec = factory("cpu")
    model = spec["forward"].__self__
    song = make_song(1, 7)
    ids = spec["tokenizer"]([song.lyrics] * 2, return_tensors="pt", padding=True)
    ids, mask = ids["input_ids"], ids["attention_mask"]
    with torch.no_grad():
        # up to the model's 256 frames the factory's forward is the model's own
        short = song.mixture.expand(2, 1, -1)
        assert torch.equal(spec["forward"](short, ids, mask), model(short, ids, mask))
        with pytest.raises(ValueError, match="expected at most 256 frames"):
            model(torch.zeros(1, 1, 8000 * 24), ids[:1], mask[:1])
        # 24 s: 751 frames in 3 windows of 250-251 frames, each encoded alone, mean over all frames
        long = 0.1 * torch.randn(2, 1, 8000 * 24, generator=torch.Generator().manual_seed(0))
        frames = model.log_mel(long)
        edges = [0, 250, 500, 751]
        assert frames.shape[1] == 751
        sums = [model.audio_encoder(inputs_embeds=model.frame_proj(frames[:, a:b])).last_hidden_state.sum(1)
                for a, b in zip(edges, edges[1:])]
        expected = model.head(torch.cat([sum(sums) / 751, model.embed_text(ids, mask)], -1))
        torch.testing.assert_close(spec["forward"](long, ids, mask), expected, rtol=0, atol=1e-5)  # padded vs unpadded windows


def test_evaluate_reads_the_demo_song_from_the_explanation(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-samples", "40", "--quiet", "--device", "cpu"]) == 0
    assert main(["evaluate", "--explanation", str(tmp_path / "demo.json"), "--seeds", "0", "--n-random", "0",
                 "--heldout", "0", "--quiet", "--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "demo_metrics.json").read_text())
    assert report["settings"]["song_info"]["demo_song_seed"] == 7 and set(report["labels"]) == {"label_1"}
    assert "planted cause" not in capsys.readouterr().err
