"""A real-length song end to end, offline: 24 s of stereo 44.1 kHz audio through ``torchlime
explain`` with the shipped demo model, without separation and with stems you already have."""

import json

import numpy as np
import pytest
import torch

from torchlime.cli import main

sf = pytest.importorskip("soundfile")

RATE = 44100
SECONDS = 24
DEMO = "torchlime.music.demo.factory:factory"
# A BOM (Windows editors), annotations, an empty line, a chorus line three times, accents and an emoji.
LYRICS = "\ufeff[Verse]\nI walk the line tonight\nthunder on the radio\n\n[Chorus]\nI'm on fire\nI'm on fire\n" \
         "Déjà vu 🔥\n[Chorus]\nI'm on fire\n"
LINES = ["I walk the line tonight", "thunder on the radio", "I'm on fire", "I'm on fire (2)", "Déjà vu 🔥",
         "I'm on fire (3)"]


def synthesize(seconds=SECONDS, rate=RATE, seed=0):
    """Four stereo stems (T, 2): a vowel-like voice, a bass line, a drum pattern and a pad."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * rate) / rate
    voice = 0.2 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * (np.sin(2 * np.pi * t / 4) > 0)
    bass = 0.3 * np.sin(2 * np.pi * (55 + 27.5 * (np.floor(t) % 2)) * t)
    beat = (t % 0.5) < 0.05
    drums = 0.2 * rng.normal(size=t.size) * beat * np.exp(-((t % 0.5) * 60))
    pad = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    pan = [(1.0, 0.8), (0.9, 0.9), (0.7, 1.0), (0.8, 0.6)]
    return {name: np.stack([a * wave, b * wave], 1).astype(np.float32)
            for (name, wave), (a, b) in zip(dict(vocals=voice, bass=bass, drums=drums, pad=pad).items(), pan)}


@pytest.fixture(scope="module")
def long_song(tmp_path_factory):
    root = tmp_path_factory.mktemp("long_song")
    stems = synthesize()
    (root / "stems").mkdir()
    for name, wave in stems.items():
        sf.write(root / "stems" / f"{name}.wav", wave, RATE, subtype="FLOAT")
    mixture = sum(stems.values())
    sf.write(root / "song.wav", mixture / np.abs(mixture).max() * 0.9, RATE)
    sf.write(root / "song_raw.wav", mixture, RATE, subtype="FLOAT")  # the exact sum, for --keep-residual
    (root / "song.txt").write_text(LYRICS, encoding="utf-8")
    return root


@pytest.fixture()
def offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


FAST = ["--n-samples", "24", "--perturbations-per-eval", "24", "--segments", "6", "--device", "cpu", "--quiet"]


def read_outputs(out, name):
    data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    labels = [int(k.split("_")[1]) for k in data["explanations"]]
    for label in labels:
        assert (out / f"{name}_label{label}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        wave, rate = sf.read(out / f"{name}_label{label}_top_audio.wav")
        assert wave.shape[0] == pytest.approx(rate * SECONDS, abs=rate // 100)  # the whole song
    return data


def test_explain_without_separation(long_song, offline, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", "--audio", str(long_song / "song.wav"), "--lyrics", str(long_song / "song.txt"),
               "--model", DEMO, "--separator", "none", "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    data = read_outputs(out, "song")
    names = data["metadata"]["feature_names"]
    assert names == [f"mixture_T{g}" for g in range(6)] + LINES
    assert len(set(names)) == len(names)
    info = data["metadata"]["song_info"]
    assert info["separator"] == "none" and info["audio"] == str(long_song / "song.wav") and info["model"] == DEMO
    predicted = int(np.argmax(data["metadata"]["model_info"]["prediction"]))
    assert list(data["explanations"]) == [f"label_{predicted}"]  # the predicted class by default
    printed = capsys.readouterr().out
    assert f"label {predicted} (" in printed and "(predicted)" in printed


def test_explain_with_stems_you_have(long_song, offline, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", "--stems", str(long_song / "stems"), "--audio", str(long_song / "song_raw.wav"),
               "--keep-residual", "--lyrics", str(long_song / "song.txt"), "--model", DEMO, "--target", "0", "1",
               "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    data = read_outputs(out, "song_raw")
    stems = ["bass", "drums", "pad", "vocals"]  # the file names, in file-name order
    assert data["metadata"]["feature_names"] == [f"{s}_T{g}" for g in range(6) for s in stems] + LINES
    assert set(data["explanations"]) == {"label_0", "label_1"}
    assert data["metadata"]["song_info"]["stems"] == str(long_song / "stems")
    # without --audio the outputs are named after the stems folder
    assert main(["explain", "--stems", str(long_song / "stems"), "--lyrics", str(long_song / "song.txt"),
                 "--model", DEMO, "--out", str(out), *FAST]) == 0
    assert read_outputs(out, "stems")["metadata"]["song_info"]["audio"] is None


def test_stems_equal_the_mixture_resampled_once(long_song):
    from torchlime.cli._common import ModelSpec, SongFiles, SongOptions, prepare_song
    from torchlime.music.demo.factory import factory

    spec = ModelSpec.from_factory(factory("cpu"))
    song = SongFiles(lyrics=long_song / "song.txt", audio=long_song / "song_raw.wav", stems=long_song / "stems")
    audio, lyrics = prepare_song(spec, None, song, SongOptions(segments=6, keep_residual=True), torch.device("cpu"))
    # resampling is linear: the resampled stems sum to the resampled mixture; the residual is what is left
    torch.testing.assert_close(audio.stems.sum(0) + audio.residual, audio.mixture, rtol=0, atol=1e-6)
    assert audio.stems.shape == (4, 1, 8000 * SECONDS) and audio.residual.abs().max() < 1e-6
    assert lyrics.feature_names == LINES


@pytest.mark.parametrize("files,message", [
    ({}, r"expected stem audio files \(.wav, .flac, .ogg, .oga, ...\) in '.*', got none"),
    ({"a.wav": (RATE, 1000), "b.wav": (22050, 1000)}, r"expected every stem at one sample rate, got 44100 Hz for a.wav "
                                                      r"and 22050 Hz for b.wav"),
    ({"a.wav": (RATE, 1000), "b.wav": (RATE, 999)}, r"expected stems of equal length, got 1000 samples for a.wav and "
                                                    r"999 for b.wav"),
    ({"a.wav": (RATE, 1000), "a.flac": (RATE, 1000)}, r"expected one file per stem name in '.*', got several for \['a'\]"),
])
def test_stems_folder_errors(tmp_path, capsys, files, message):
    import re

    (tmp_path / "stems").mkdir()
    (tmp_path / "stems" / "notes.txt").write_text("not a stem")
    for name, (rate, length) in files.items():
        sf.write(tmp_path / "stems" / name, np.zeros((length, 2), np.float32) + 0.1, rate)
    (tmp_path / "l.txt").write_text("la la")
    assert main(["explain", "--stems", str(tmp_path / "stems"), "--lyrics", str(tmp_path / "l.txt"), "--model", DEMO,
                 "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchlime explain: error: ") and re.search(message, err), err


def test_stems_with_a_separator_or_neither(long_song, tmp_path, capsys):
    base = ["explain", "--lyrics", str(long_song / "song.txt"), "--model", DEMO, "--out", str(tmp_path), *FAST]
    assert main(base + ["--stems", str(long_song / "stems"), "--separator", "umxl"]) == 2
    assert "expected --stems or --separator, got both (--separator umxl)" in capsys.readouterr().err
    assert main(base) == 2
    assert "expected --audio (a song file) or --stems (a folder of stem files), got neither" in capsys.readouterr().err
    assert main(base + ["--stems", str(long_song / "stems"), "--keep-residual"]) == 2
    assert "expected --audio (the mixture) with --stems and --keep-residual" in capsys.readouterr().err
    assert main(base + ["--stems", str(long_song / "stems"), "--audio", str(long_song / "stems" / "bass.wav"),
                        "--segments", "2"]) == 0  # a mixture of the right length and rate is accepted
