"""The console script end to end: explain a song file with a local Open-Unmix checkpoint."""

import json
import shutil
import textwrap

import numpy as np
import pytest

from torchlime.cli import main

from .test_music_explainer import LYRICS, build_wordpiece
from .test_separator import write_checkpoint
from .test_dataset_cli import read_only  # noqa: F401 - a fixture

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
               "--separator", str(song / "umx"), "--n-samples", "64", "--perturbations-per-eval", "32", "--target", "0",
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


# -- options and their defaults -----------------------------------------------------------------


def subparsers():
    import argparse

    from torchlime.cli import build_parser

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, prefix + [name])
        yield prefix, parser

    return [(" ".join(name), p) for name, p in walk(build_parser(), []) if name]


def test_every_option_says_its_default_in_help():
    import argparse

    from torchlime.cli._common import HelpFormatter

    checked = 0
    for name, parser in subparsers():
        formatter = HelpFormatter(parser.prog)
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._expand_help(action)
            assert action.required or "(default: " in text, f"torchlime {name} {action.option_strings[0]}: {text!r}"
            checked += 1
    assert checked > 80
    helps = dict(subparsers())
    explain = " ".join(helps["explain"].format_help().split())
    for shown in ("--separator NAME|DIR|none", "(default: umxl)", "--n-samples N|auto perturbations per song (>= 2), "
                  "or auto:", "(default: 1000)", "--sampler {iid,paired,sobol}",
                  "(default: iid)", "--tol TOL with --n-samples auto:", "(default: 0.05)",
                  "--max-samples N with --n-samples auto: the most perturbations per song (default: 10000)",
                  "(default: 10)", "(default: line)", "(default: the predicted class only)",
                  "--keep-residual", "(default: off)", "--perturbations-per-eval N", "(default: 100)"):
        assert shown in explain, shown
    assert "--batch-size" not in explain and "--targets" not in explain  # deprecated aliases are not advertised
    for command in ("demo", "explain-dataset", "evaluate"):
        text = " ".join(helps[command].format_help().split())
        assert "--n-samples N|auto" in text and "--sampler {iid,paired,sobol}" in text and "--tol TOL" in text, command


def test_auto_budget_defaults_are_musiclimes():
    """The CLI writes MusicLime.explain's defaults out (it may not import torchlime.music to
    build its parser): they must stay the same."""
    import inspect

    from torchlime.cli._common import DEFAULT_MAX_SAMPLES, DEFAULT_TOL
    from torchlime.music import MusicLime

    params = inspect.signature(MusicLime.explain).parameters
    assert params["tol"].default == DEFAULT_TOL and params["max_samples"].default == DEFAULT_MAX_SAMPLES
    assert params["sampler"].default == "iid"


def test_deprecated_aliases_still_work(song, monkeypatch, capsys):
    monkeypatch.chdir(song)
    with pytest.warns(DeprecationWarning) as warned:
        rc = main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory",
                   "--separator", "none", "--n-samples", "16", "--batch-size", "8", "--targets", "1", "--out", "out",
                   "--device", "cpu", "--quiet", "--segments", "2"])
    assert rc == 0
    assert sorted(str(w.message) for w in warned) == [
        "--batch-size is deprecated, use --perturbations-per-eval (same meaning)",
        "--targets is deprecated, use --target (same meaning)"]
    err = capsys.readouterr().err
    assert "torchlime: warning: --batch-size is deprecated, use --perturbations-per-eval (same meaning)" in err
    data = json.loads((song / "out" / "song.json").read_text())
    assert set(data["explanations"]) == {"label_0", "label_1"}  # the predicted class 0, and 1 asked for
    assert data["metadata"]["explanation_params"]["perturbations_per_eval"] == 8


@pytest.mark.parametrize("extra,message", [
    (["--model", "my_model"], r"expected --model as module:factory \(e.g. torchlime.music.demo.factory:factory\)"),
    (["--model", "my_model:nothing"], r"has no callable 'nothing' .*the demo model is torchlime.music.demo.factory:factory"),
    (["--n-samples", "1"], r"expected --n-samples to be an integer >= 2 or 'auto', got '1'"),
    (["--n-samples", "x"], r"expected --n-samples to be an integer >= 2 or 'auto', got 'x'"),
    (["--n-samples", "2.5"], r"expected --n-samples to be an integer >= 2 or 'auto', got '2.5'"),
    (["--tol", "0.1"], r"expected --tol and --max-samples only with --n-samples auto \(they say when its rounds "
                       r"stop\), got --tol 0.1 with --n-samples 8"),
    (["--max-samples", "100", "--tol", "0.1"], r"got --tol 0.1 and --max-samples 100 with --n-samples 8"),
    (["--n-samples", "auto", "--tol", "0"], r"expected --tol > 0, got 0.0"),
    (["--n-samples", "auto", "--tol", "nan"], r"expected --tol > 0, got nan"),
    (["--n-samples", "auto", "--max-samples", "1"], r"expected --max-samples >= 2, got 1"),
    (["--segments", "0"], "expected --segments >= 1, got 0"),
    (["--perturbations-per-eval", "0"], "expected --perturbations-per-eval >= 1, got 0"),
    (["--target", "2"], r"target 2 is out of range for a model with 2 classes"),
    (["--target", "all", "1"], r"expected --target all alone or class indices, got \['all', '1'\]"),
    (["--lyrics", "latin1.txt"], r"expected UTF-8 text in the lyrics file 'latin1.txt'"),
    (["--separator", "no_such_folder/"], r"expected a published Open-Unmix model name .* got 'no_such_folder'"),
    (["--device", "gpu:x"], r"expected --device as a torch device such as cpu, cuda or cuda:1, got 'gpu:x'"),
])
def test_explain_option_errors(song, monkeypatch, capsys, extra, message):
    import re

    monkeypatch.chdir(song)
    (song / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            "none", "--segments", "2", "--out", "out", "--n-samples", "8", "--quiet", "--device", "cpu"]
    assert main(base + extra) == 2  # a repeated option: the last one counts
    err = capsys.readouterr().err
    assert err.startswith("torchlime explain: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_sampler_and_auto_budget_end_to_end(song, monkeypatch, capsys):
    monkeypatch.chdir(song)
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            "none", "--segments", "2", "--perturbations-per-eval", "16", "--device", "cpu", "--quiet"]

    def written(out):
        data = json.loads((song / out / "song.json").read_text())
        return data["metadata"]["explanation_params"], data["metadata"]["song_info"]["settings"], data["metadata"]

    assert main(base + ["--n-samples", "16", "--sampler", "paired", "--out", "paired"]) == 0
    assert "Explained song in " in (printed := capsys.readouterr().out)
    assert "(16 samples, paired sampler, 2 audio + " in printed
    params, settings, _ = written("paired")
    assert params["sampler"] == "paired" and params["n_samples"] == 16 and "n_samples_rule" not in params
    assert settings["sampler"] == "paired" and settings["n_samples"] == 16 and "tol" not in settings

    assert main(base + ["--n-samples", "auto", "--tol", "0.5", "--max-samples", "48", "--out", "auto"]) == 0
    params, settings, metadata = written("auto")
    used = params["n_samples"]  # rounds of --perturbations-per-eval, as many as --max-samples allows
    assert used in (16, 32, 48) and metadata["uncertainty"]["n_samples_used"] == used
    assert params["n_samples_rule"] == "auto" and params["tol"] == 0.5 and params["max_samples"] == 48
    assert params["sampler"] == "iid"
    assert (settings["n_samples"], settings["sampler"], settings["tol"], settings["max_samples"]) == (
        "auto", "iid", 0.5, 48)
    assert f"(auto: {used} of at most 48 samples, 2 audio + " in capsys.readouterr().out


def test_outputs_of_two_songs_with_one_name_do_not_overwrite_each_other(song, monkeypatch, capsys):
    import soundfile as sf

    monkeypatch.chdir(song)

    wave, rate = sf.read(song / "song.wav")
    sf.write(song / "song.flac", wave, rate)
    base = ["explain", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator", "none", "--segments", "2",
            "--n-samples", "8", "--quiet", "--device", "cpu", "--out", "out"]
    assert main(base + ["--audio", "song.wav"]) == 0
    assert main(base + ["--audio", "song.wav", "--n-samples", "12"]) == 0  # the same song again: replaced
    before = (song / "out" / "song.json").read_bytes()
    capsys.readouterr()
    assert main(base + ["--audio", "song.flac"]) == 2
    err = capsys.readouterr().err
    assert (f"expected --out to hold no other song's outputs, got 'out/song.json', which was written for "
            f"{song / 'song.wav'}, not {song / 'song.flac'}") in err and "pass another --out" in err
    assert (song / "out" / "song.json").read_bytes() == before


# -- the stems cache ----------------------------------------------------------------------------


def test_a_second_explanation_does_not_separate_again(song, monkeypatch, capsys, tmp_path):
    from torchlime.music import OpenUnmixSeparator

    calls = []
    separate = OpenUnmixSeparator.separate

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("show_progress"))
        return separate(self, *args, **kwargs)

    monkeypatch.setattr(OpenUnmixSeparator, "separate", counting)
    monkeypatch.chdir(song)
    cache = tmp_path / "cache"
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            str(song / "umx"), "--n-samples", "16", "--device", "cpu", "--cache-dir", str(cache), "--segments", "4"]
    assert main(base + ["--out", "a", "--quiet"]) == 0
    assert calls == [False] and len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob(".*"))
    capsys.readouterr()
    assert main(base + ["--out", "b", "--n-samples", "24", "--modality", "audio"]) == 0  # other settings: same stems
    assert calls == [False]
    assert "stems of song.wav from the cache" in capsys.readouterr().err
    # the same stems, so the same explanation as a run without the cache
    assert main(base + ["--out", "c", "--no-cache"]) == 0
    assert calls == [False, True]  # separated again, with its progress bar
    assert "separating song.wav" in capsys.readouterr().err
    assert main(base + ["--out", "a2", "--quiet"]) == 0
    w = [json.loads((song / d / "song.json").read_text())["explanations"]["label_0"]["weights"] for d in ("a", "a2", "c")]
    assert w[0] == w[1] == w[2]
    # another separator setting (a copy without one target) is another key
    assert main(base + ["--out", "d", "--quiet", "--separator", "none"]) == 0 and calls == [False, True]
    assert len(list(cache.glob("*.pt"))) == 1  # no separation, nothing cached


def test_a_damaged_cache_file_is_separated_again(song, monkeypatch, tmp_path):
    monkeypatch.chdir(song)
    cache = tmp_path / "cache"
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            str(song / "umx"), "--n-samples", "8", "--device", "cpu", "--cache-dir", str(cache), "--quiet"]
    assert main(base + ["--out", "a"]) == 0
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"truncated")
    assert main(base + ["--out", "b"]) == 0
    assert entry.stat().st_size > 1000


# -- clean messages -----------------------------------------------------------------------------


def test_ctrl_c_during_separation_is_one_line(song, monkeypatch, capsys):
    from torchlime.music import OpenUnmixSeparator

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenUnmixSeparator, "separate", interrupted)
    monkeypatch.chdir(song)
    rc = main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
               str(song / "umx"), "--no-cache", "--device", "cpu", "--quiet"])
    assert rc == 130
    assert capsys.readouterr().err.strip() == "torchlime explain: interrupted"


def test_offline_default_separator_fails_before_any_other_work(song, monkeypatch, capsys):
    import urllib.error

    import torch

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.chdir(song)
    (song / "slow_model.py").write_text("def factory(device):\n    raise AssertionError('the model was loaded')\n")
    rc = main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "slow_model:factory",
               "--device", "cpu", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("torchlime explain: error: could not fetch the pretrained weights of the Open-Unmix model "
                          "'umxl'") and "as `torchlime separator save umxl DIR` writes them" in err
    assert len(err.strip().splitlines()) == 1


def test_separator_save_then_load_it_offline(song, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(song)
    assert main(["separator", "save", str(song / "umx"), str(tmp_path / "mine")]) == 0
    printed = capsys.readouterr().out
    assert f"use it with --separator {tmp_path / 'mine'}" in printed
    assert main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory",
                 "--separator", str(tmp_path / "mine"), "--n-samples", "8", "--device", "cpu", "--quiet",
                 "--out", "saved", "--no-cache"]) == 0
    assert json.loads((song / "saved" / "song.json").read_text())["metadata"]["song_info"]["separator"] == str(
        tmp_path / "mine")
    assert main(["separator", "save", str(song / "umx"), str(tmp_path / "mine")]) == 2
    assert "already holds separator.json; remove it or pick another folder" in capsys.readouterr().err
    assert main(["separator", "save", "umxse", str(tmp_path / "random"), "--random-weights"]) == 0
    assert sorted(p.name for p in (tmp_path / "random").iterdir()) == [
        "noise.json", "noise.pth", "separator.json", "speech.json", "speech.pth"]


# -- aggregate and evaluate read what the explanations recorded --------------------------------


@pytest.fixture()
def explained(song, monkeypatch):
    """An explanation of the song (labels 0, predicted, and 1) in song/exps/song.json."""
    monkeypatch.chdir(song)
    assert main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
                 "none", "--segments", "2", "--n-samples", "16", "--quiet", "--device", "cpu", "--out", "exps",
                 "--target", "1"]) == 0
    return song / "exps" / "song.json"


def test_aggregate_keeps_saved_class_names(explained, song, capsys):
    assert main(["aggregate", str(explained), "--out", "agg", "--class-names", "quiet", "loud"]) == 2
    assert ("expected --class-names to agree with the names saved in the explanations, got 'quiet' for class 0, "
            f"which {explained} names 'calm' (drop --class-names to use the saved names)") in capsys.readouterr().err
    assert main(["aggregate", str(explained), "--out", "agg", "--class-names", "calm", "stormy"]) == 0
    assert json.loads((song / "agg" / "global_importance.json").read_text())["class_names"] == ["calm", "stormy"]
    assert main(["aggregate", str(explained), "--out", "agg1"]) == 0  # the saved names by default
    assert json.loads((song / "agg1" / "global_importance.json").read_text())["class_names"] == ["calm", "stormy"]
    # explanations saved without names: --class-names fills them in, and says so where some are saved
    data = json.loads(explained.read_text())
    for k, entry in data["explanations"].items():
        entry["prediction_label"] = k.split("_")[1]
    (song / "nameless.json").write_text(json.dumps(data))
    assert main(["aggregate", str(song / "nameless.json"), "--out", "agg2", "--class-names", "x", "y"]) == 0
    assert json.loads((song / "agg2" / "global_importance.json").read_text())["class_names"] == ["x", "y"]
    assert main(["aggregate", str(song / "nameless.json"), "--out", "agg3"]) == 0
    assert json.loads((song / "agg3" / "global_importance.json").read_text())["class_names"] == ["0", "1"]
    data["explanations"]["label_1"]["prediction_label"] = "stormy"
    (song / "half.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["aggregate", str(song / "half.json"), "--out", "agg4", "--class-names", "calm", "stormy"]) == 0
    assert "--class-names name the classes without a saved name (0: calm)" in capsys.readouterr().out
    # two files that disagree
    data["explanations"]["label_1"]["prediction_label"] = "windy"
    (song / "windy.json").write_text(json.dumps(data))
    assert main(["aggregate", str(explained), str(song / "windy.json"), "--out", "agg5"]) == 2
    assert "expected one name per class in the explanations, got 'stormy' in" in capsys.readouterr().err

def test_aggregate_a_folder_decoding_errors_and_mixed_settings(explained, song, capsys):
    """A folder aggregates its *.json files; a file that is not JSON text is named; two
    explanations made with other settings are refused unless --mixed-settings."""
    exps = song / "exps"
    assert main(["aggregate", str(explained), "--out", "one"]) == 0
    shutil.copy(song / "exps" / "song_label0.png", exps / "copy.png")  # not *.json: not taken
    (exps / ".song.json.k2j3h4g5.torchlime-tmp.json").write_text("{")  # a write in progress: hidden, not taken
    assert main(["aggregate", str(exps), "--out", "folder"]) == 0
    assert "1 explanations aggregated" in capsys.readouterr().out
    one, folder = (json.loads((song / d / "global_importance.json").read_text()) for d in ("one", "folder"))
    assert folder == one and one["settings"] == json.loads(explained.read_text())["metadata"]["song_info"]["settings"]
    recorded = json.loads(explained.read_text())["metadata"]["song_info"]
    assert one["settings_fingerprints"] == [recorded["settings_fingerprint"]]
    (song / "empty").mkdir()
    assert main(["aggregate", str(song / "empty")]) == 2
    assert f"got the folder '{song / 'empty'}', which holds no *.json file" in capsys.readouterr().err
    shutil.copy(exps / "song_label0.png", song / "figure.json")
    assert main(["aggregate", str(song / "figure.json")]) == 2
    err = capsys.readouterr().err
    assert (f"expected explanation JSON files, got '{song / 'figure.json'}', which is not UTF-8 text "
            f"(byte b'\\x89' at 0") in err
    assert len(err.strip().splitlines()) == 1
    # the same song with 4 segments and 24 samples: the settings and their values are named
    assert main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
                 "none", "--segments", "4", "--n-samples", "24", "--quiet", "--device", "cpu", "--out", "exps4",
                 "--target", "1"]) == 0
    capsys.readouterr()
    assert main(["aggregate", str(explained), str(song / "exps4" / "song.json"), "--out", "mixed"]) == 2
    err = capsys.readouterr().err
    assert (f"expected explanations made with one set of settings, got {explained} and {song / 'exps4' / 'song.json'}, "
            "which differ in segments (2 vs 4), n_samples (16 vs 24); pass --mixed-settings") in err
    assert main(["aggregate", str(explained), str(song / "exps4" / "song.json"), "--out", "mixed",
                 "--mixed-settings"]) == 2  # the aggregator itself refuses two segmentations
    assert "segments" in capsys.readouterr().err
    assert main(["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
                 "none", "--segments", "2", "--n-samples", "24", "--quiet", "--device", "cpu", "--out", "exps24",
                 "--target", "1"]) == 0
    other = song / "exps24" / "song.json"
    assert main(["aggregate", str(explained), str(other), "--out", "mixed"]) == 2
    assert "which differ in n_samples (16 vs 24)" in capsys.readouterr().err
    assert main(["aggregate", str(explained), str(other), "--out", "mixed", "--mixed-settings"]) == 0
    mixed = json.loads((song / "mixed" / "global_importance.json").read_text())
    fingerprints = sorted(json.loads(p.read_text())["metadata"]["song_info"]["settings_fingerprint"]
                          for p in (explained, other))
    assert mixed["settings"] is None and mixed["settings_fingerprints"] == fingerprints and len(set(fingerprints)) == 2


def test_evaluate_an_explanation_reads_its_song_and_model(explained, song, capsys):
    rc = main(["evaluate", "--explanation", str(explained), "--seeds", "0", "--n-random", "0", "--heldout", "0",
               "--quiet", "--device", "cpu", "--out", "metrics"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((song / "metrics" / "song_metrics.json").read_text())
    assert set(report["labels"]) == {"label_0", "label_1"}  # the explanation's labels
    assert report["settings"]["song_info"]["separator"] == "none"
    assert report["settings"]["song_info"]["audio"] == str(song / "song.wav")
    assert report["settings"]["explain"]["n_samples"] == 16
    # an explicit flag wins over what the JSON records
    assert main(["evaluate", "--explanation", str(explained), "--segments", "3", "--seeds", "0", "--quiet",
                 "--device", "cpu", "--out", "metrics"]) == 2
    assert "expected the audio factorization to have the 2 audio features of" in capsys.readouterr().err


def test_memory_budget_changes_the_calls_not_the_explanation(song, monkeypatch, capsys):
    monkeypatch.chdir(song)
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            "none", "--segments", "2", "--n-samples", "16", "--perturbations-per-eval", "16", "--quiet", "--device",
            "cpu"]
    assert main(base + ["--out", "plain"]) == 0
    assert main(base + ["--out", "budget", "--memory-budget", "300K"]) == 0  # 2 s at 16 kHz: 125 KiB a sample
    plain, budget = (json.loads((song / d / "song.json").read_text()) for d in ("plain", "budget"))
    assert plain["metadata"]["explanation_params"]["samples_per_call"] == 16
    assert 1 <= budget["metadata"]["explanation_params"]["samples_per_call"] <= 2
    for label, entry in plain["explanations"].items():
        assert budget["explanations"][label]["weights"] == pytest.approx(entry["weights"], rel=1e-4, abs=1e-6)
    fingerprint = [d["metadata"]["song_info"]["settings_fingerprint"] for d in (plain, budget)]
    assert fingerprint[0] == fingerprint[1]  # the budget is not a setting that counts
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--memory-budget", "lots"])
    assert exit_info.value.code == 2
    assert "expected a number of bytes such as 2G, 500M or 1000000 (> 0), got 'lots'" in capsys.readouterr().err


def test_explain_into_a_folder_that_cannot_be_written(song, monkeypatch, capsys, read_only):
    monkeypatch.chdir(song)
    locked = read_only(song / "locked")
    base = ["explain", "--audio", "song.wav", "--lyrics", "song.txt", "--model", "my_model:factory", "--separator",
            "none", "--segments", "2", "--n-samples", "8", "--quiet", "--device", "cpu"]
    assert main(base + ["--out", str(locked)]) == 2  # before the song is explained
    err = capsys.readouterr().err
    assert err.startswith(f"torchlime explain: error: could not write {locked}: ") and "(the --out folder)" in err
    assert len(err.strip().splitlines()) == 1
