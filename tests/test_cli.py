"""The console script end to end: explain a song file with a local Open-Unmix checkpoint."""

import json
import textwrap

import numpy as np
import pytest

from torchlime.cli import main

from .test_music_explainer import LYRICS, build_wordpiece
from .test_separator import write_checkpoint

FACTORY = '''
import torch
from transformers import AutoTokenizer

def factory(device):
    tokenizer = AutoTokenizer.from_pretrained({tok!r})
    thunder = tokenizer.convert_tokens_to_ids("thunder")

    def forward(audio, input_ids, attention_mask):
        energy = audio[:, 0].pow(2).mean(-1)
        count = ((input_ids == thunder) & attention_mask.bool()).sum(-1).float()
        return torch.stack([energy + count, 1 - energy], 1)

    return dict(forward=forward, sample_rate=16000, tokenizer=tokenizer, max_length=64,
                labels=["calm", "stormy"], apply_softmax=True)
'''


@pytest.fixture()
def song(tmp_path):
    import soundfile as sf

    t = np.arange(44100 * 2) / 44100
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).normal(size=t.size)
    sf.write(tmp_path / "song.wav", np.stack([wave, wave], 1).astype(np.float32), 44100)
    (tmp_path / "song.txt").write_text(LYRICS)
    write_checkpoint(tmp_path / "umx")
    build_wordpiece(tmp_path / "tok")
    (tmp_path / "my_model.py").write_text(textwrap.dedent(FACTORY.format(tok=str(tmp_path / "tok"))))
    return tmp_path


def test_explain_writes_json_png_wav(song, monkeypatch, capsys):
    monkeypatch.chdir(song)
    rc = main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory",
               "--separator", str(song / "umx"), "--n-samples", "64", "--batch-size", "32", "--targets", "0",
               "--out", "out", "--device", "cpu", "--quiet", "--segments", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "label 0 (calm)" in out
    data = json.loads((song / "out" / "song.json").read_text())
    assert data["explanations"]["label_0"]["prediction_label"] == "calm"
    assert data["metadata"]["model_info"]["total_audio_components"] == 16
    assert (song / "out" / "song_label0.png").exists() and (song / "out" / "song_label0_top_audio.wav").exists()


def test_explain_errors(song, monkeypatch, capsys):
    monkeypatch.chdir(song)
    base = ["explain", "--lyrics", "song.txt", "--separator", str(song / "umx"), "--n-samples", "8", "--quiet"]
    assert main(base + ["--audio", "song.wav", "--model", "no_such_module:factory"]) == 2
    assert "could not import module 'no_such_module' for --model 'no_such_module:factory'" in capsys.readouterr().err
    assert main(base + ["--audio", "song.wav", "--model", "my_model"]) == 2
    assert "expected --model as module:factory" in capsys.readouterr().err
    assert main(base + ["--audio", "song.wav", "--model", "my_model:nothing"]) == 2
    assert "has no callable 'nothing'" in capsys.readouterr().err
    (song / "broken.wav").write_bytes(b"not audio at all")
    assert main(base + ["--audio", "broken.wav", "--model", "my_model:factory"]) == 2
    assert "could not read audio file" in capsys.readouterr().err
    assert main(base + ["--audio", "missing.wav", "--model", "my_model:factory"]) == 2
    assert "does not exist" in capsys.readouterr().err
