"""``torchlime evaluate``: metrics JSON for the demo song and for a song file, and its errors."""

import json

import pytest
import torch

from torchlime.cli import main

from .test_cli import song  # noqa: F401 - the song-file fixture (audio, lyrics, Open-Unmix checkpoint, model)

FAST = ["--n-samples", "40", "--quiet", "--device", "cpu", "--perturbations-per-eval", "64"]


def test_evaluate_demo_writes_metrics(tmp_path, capsys):
    rc = main(["evaluate", "--demo", *FAST, "--seeds", "2", "--n-random", "2", "--heldout", "10", "--max-k", "8",
               "--out", str(tmp_path / "m")])
    out = tmp_path / "m" / "demo_metrics.json"
    assert rc == 0
    printed = capsys.readouterr().out
    assert "label 1 (positive): AOPC" in printed and "(random orders" in printed
    assert "stability over 2 seeds: Spearman" in printed and f"wrote {out}" in printed
    data = json.loads(out.read_text())
    entry = data["labels"]["label_1"]
    assert len(entry["deletion_curve"]) == 9 and len(entry["insertion_curve"]) == 9 and len(entry["deletion_order"]) == 8
    assert entry["deletion_curve"][0] > 0.9  # the demo song is positive
    assert entry["aopc"] > entry["random_aopc"]
    assert entry["stability"]["seeds"] == [0, 1] and len(entry["stability"]["pairs"]) == 1
    assert -1 <= entry["stability"]["mean_spearman"] <= 1 and 0 <= entry["stability"]["mean_jaccard"] <= 1
    assert entry["r2_heldout"] is not None and entry["r2_in_sample"] is not None
    assert data["settings"]["ranking"].startswith("by weight for the explained label, highest first")
    assert data["settings"]["song_info"]["planted_cause"][:3] == ["drums_T2", "drums_T3", "drums_T4"]
    assert len(data["feature_names"]) == 52
    assert not list(out.parent.glob(".*"))  # written atomically, no temporary file left


@pytest.fixture(scope="module")
def demo_explanation(tmp_path_factory):
    from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
    from torchlime.music.demo import DEMO_MAX_LENGTH, load_demo, make_song

    model, tokenizer = load_demo("cpu")
    s = make_song(1, 7)
    audio = StemFactorization(s.stems, sample_rate=s.sample_rate, num_segments=10)
    lyrics = LyricsFactorization(s.lyrics, tokenizer, unit="line", max_length=DEMO_MAX_LENGTH)
    exp = MusicLime(model, apply_softmax=True).explain(audio, lyrics, target=[0, 1], n_samples=40,
                                                       generator=torch.Generator().manual_seed(3))
    return exp, exp.save_json(tmp_path_factory.mktemp("exp") / "demo.json")


def test_evaluate_passes_the_sampler_and_budget_on(tmp_path, capsys):
    """The explanation and its stability reruns use --sampler and --n-samples auto; with
    --explanation, the reruns are made as the explanation was (its sampler and budget)."""
    quick = ["--quiet", "--device", "cpu", "--perturbations-per-eval", "32", "--n-random", "0", "--heldout", "0",
             "--max-k", "3"]
    assert main(["evaluate", "--demo", *quick, "--n-samples", "auto", "--tol", "0.5", "--max-samples", "64",
                 "--sampler", "paired", "--seeds", "2", "--out", str(tmp_path / "m")]) == 0
    data = json.loads((tmp_path / "m" / "demo_metrics.json").read_text())
    assert data["settings"]["explain"] == dict(n_samples="auto", sampler="paired", tol=0.5, max_samples=64,
                                               num_features=20, modality="both", feature_selection="auto")
    assert main(["demo", "--n-samples", "auto", "--tol", "0.5", "--max-samples", "64", "--sampler", "sobol",
                 "--perturbations-per-eval", "32", "--quiet", "--device", "cpu", "--out", str(tmp_path / "e")]) == 0
    assert "(auto: " in capsys.readouterr().out
    assert main(["evaluate", "--explanation", str(tmp_path / "e" / "demo.json"), *quick, "--seeds", "2",
                 "--out", str(tmp_path / "m")]) == 0
    data = json.loads((tmp_path / "m" / "demo_metrics.json").read_text())
    assert data["settings"]["explain"] == dict(n_samples="auto", sampler="sobol", tol=0.5, max_samples=64,
                                               num_features=20, modality="both", feature_selection="auto")


def test_evaluate_an_existing_explanation(demo_explanation, tmp_path, capsys):
    exp, path = demo_explanation
    rc = main(["evaluate", "--demo", "--explanation", str(path), *FAST, "--seeds", "0", "--n-random", "0",
               "--heldout", "0", "--max-k", "3", "--out", str(tmp_path)])
    out = tmp_path / "demo_metrics.json"  # named after the explanation file
    assert rc == 0
    printed = capsys.readouterr().out
    assert "label 0 (negative)" in printed and "label 1 (positive)" in printed and "stability" not in printed
    data = json.loads(out.read_text())
    assert set(data["labels"]) == {"label_0", "label_1"}
    assert data["labels"]["label_1"]["r2_in_sample"] == pytest.approx(exp.score[1], abs=1e-6)
    assert data["labels"]["label_1"]["r2_heldout"] is None and "random_aopc" not in data["labels"]["label_1"]
    assert data["settings"]["explanation"] == str(path) and data["settings"]["explain"]["n_samples"] == 40
    top = [exp.feature_names[i] for i, _ in sorted(enumerate(exp.weights[1].tolist()), key=lambda p: (-p[1], p[0]))[:3]]
    assert data["labels"]["label_1"]["deletion_order"] == top


@pytest.mark.parametrize("extra,message", [
    (["--audio", "x.wav"], "expected either --demo or --audio/--lyrics/--model, got --demo and --audio"),
    (["--seeds", "1"], r"expected --seeds 0 \(no stability\) or >= 2 \(reruns to compare\), got 1"),
    (["--n-random", "-1"], "expected --n-random >= 0, got -1"),
    (["--max-k", "0"], r"expected 1 <= --max-k <= F = 52 \(the song's features\), got 0"),
    (["--top-k", "60"], r"expected 1 <= --top-k <= F = 52 \(the song's features\), got 60"),
    (["--modality", "lyrics", "--max-k", "13"], r"expected 1 <= --max-k <= F = 12 \(the song's features\), got 13"),
    (["--heldout", "1"], r"expected --heldout 0 \(no held-out R\^2\) or >= 2, got 1"),
    (["--target", "2"], r"target 2 is out of range for a model with 2 classes"),
    (["--target", "x"], r"expected --target as class indices \(0, 1, ...\) or all, got 'x'"),
    (["--out", "m/metrics.json"], r"expected --out to be a folder \(evaluate writes <out>/<song>_metrics.json\)"),
    (["--n-samples", "1"], r"expected --n-samples to be an integer >= 2 or 'auto', got '1'"),
    (["--max-samples", "64"], r"expected --tol and --max-samples only with --n-samples auto .* got --max-samples 64 "
                              r"with --n-samples 8"),
    (["--explanation", "missing.json"], "expected an explanation JSON file, got 'missing.json', which does not exist"),
])
def test_evaluate_demo_errors(extra, message, capsys, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--demo", *FAST, "--n-samples", "8", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchlime evaluate: error: ") and re.search(message, err), err


def test_evaluate_explanation_of_another_song_layout(demo_explanation, capsys):
    _, path = demo_explanation
    assert main(["evaluate", "--demo", "--explanation", str(path), "--segments", "5", *FAST]) == 2
    assert "expected the audio factorization to have the 40 audio features of" in capsys.readouterr().err


def test_evaluate_needs_a_song(capsys):
    assert main(["evaluate", "--audio", "song.wav"]) == 2
    assert ("expected --audio, --lyrics and --model (or --demo, or an --explanation that records them), missing "
            "--lyrics, --model") in capsys.readouterr().err


def test_evaluate_song_file(song, monkeypatch, capsys):  # noqa: F811 - the fixture
    monkeypatch.chdir(song)
    rc = main(["evaluate", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory",
               "--separator", str(song / "umx"), "--segments", "4", "--target", "0", "1", "--seeds", "2",
               "--n-random", "1", "--heldout", "10", *FAST, "--out", "out"])
    assert rc == 0
    assert "label 0 (calm)" in capsys.readouterr().out
    data = json.loads((song / "out" / "song_metrics.json").read_text())
    assert set(data["labels"]) == {"label_0", "label_1"}
    assert len(data["labels"]["label_0"]["deletion_curve"]) == 16 + 5 + 1  # 4 stems x 4 segments + 5 lines
    assert data["settings"]["song_info"] == {
        "audio": str(song / "song.wav"), "lyrics": str(song / "song.txt"), "stems": None, "model": "my_model:factory",
        "separator": str(song / "umx"), "segments": 4, "unit": "line", "keep_residual": False,
        "sample_rate": 44100, "channels": 2}  # the fixture's file: 2 s of stereo at 44.1 kHz
