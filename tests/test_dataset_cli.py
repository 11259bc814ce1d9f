"""torchlime explain-dataset / aggregate: per-song JSON, resume after a crash, torchrun sharding."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from torchlime import GlobalAggregator, GlobalImportance
from torchlime.cli.explain_dataset import read_manifest
from torchlime.cli import main
from torchlime.music import Explanation

from .test_music_explainer import build_wordpiece

ROOT = Path(__file__).resolve().parents[1]
from .test_separator import write_checkpoint

FACTORY = '''
import os
import torch
from transformers import AutoTokenizer

CALLS = [0]

def factory(device):
    tokenizer = AutoTokenizer.from_pretrained({tok!r})
    words = tokenizer.convert_tokens_to_ids(["thunder", "night", "rain"])
    crash_after = int(os.environ.get("CRASH_AFTER_CALLS", "0"))
    # a word that makes the model return NaN (one song's lyrics have it)
    nan_word = tokenizer.convert_tokens_to_ids(os.environ["NAN_WORD"]) if os.environ.get("NAN_WORD") else None

    def forward(audio, input_ids, attention_mask):
        CALLS[0] += 1
        if crash_after and CALLS[0] > crash_after:
            raise KeyboardInterrupt("simulated crash")
        T = audio.shape[-1]
        energy = torch.stack([audio[:, 0, i * T // 4 : (i + 1) * T // 4].pow(2).mean(-1) for i in range(4)], 1)
        counts = torch.stack([((input_ids == w) & attention_mask.bool()).sum(-1).float() for w in words], 1)
        out = torch.stack([4 * energy[:, 1] + counts[:, 0], energy[:, 3] + counts[:, 1], counts[:, 2] + 0.3], 1)
        if nan_word is not None:
            poisoned = ((input_ids == nan_word) & attention_mask.bool()).any(-1)
            out = torch.where(poisoned[:, None], torch.full_like(out, float("nan")), out)
        return out

    return dict(forward=forward, sample_rate=16000, tokenizer=tokenizer, max_length=64,
                labels=["storm", "night", "rain"], apply_softmax=True)
'''

LYRIC_SETS = [
    "thunder over the bay\\nwe walk the night\\nrain on the window",
    "night after night\\nthunder again\\nhold the line",
    "rain rain rain\\nthe day is long",
    "thunder in my heart\\nevery window burning\\nnight falls\\nrain comes",
    "hold the line\\nnever stray\\nthe night is young",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    rows = ["id,audio,lyrics,label"]
    for i, text in enumerate(LYRIC_SETS):
        t = np.arange(22050) / 22050
        wave = (0.2 + 0.1 * i) * np.sin(2 * np.pi * (180 + 40 * i) * t) + 0.05 * rng.normal(size=t.size)
        sf.write(root / f"s{i}.wav", np.stack([wave, wave], 1).astype(np.float32), 22050)
        (root / f"s{i}.txt").write_text(text.replace("\\n", "\n"))
        rows.append(f"song{i},s{i}.wav,s{i}.txt,{i % 3}")
    rows.append("ghost,missing.wav,s0.txt,0")  # a missing file: reported, the others go on
    (root / "songs.csv").write_text("\n".join(rows) + "\n")
    write_checkpoint(root / "umx")
    build_wordpiece(root / "tok")
    (root / "ds_model.py").write_text(textwrap.dedent(FACTORY.format(tok=str(root / "tok"))))
    return root


def run(dataset, out, *extra, env=None):
    args = ["explain-dataset", "--manifest", str(dataset / "songs.csv"), "--model", "ds_model:factory",
            "--separator", str(dataset / "umx"), "--n-samples", "16", "--perturbations-per-eval", "16",
            "--segments", "4", "--out", str(out), "--device", "cpu", "--quiet", *extra]
    return main(args)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    cwd = os.getcwd()
    os.chdir(dataset)
    try:
        rc = run(dataset, out, "--songs-per-batch", "2", "--target", "all")
    finally:
        os.chdir(cwd)
    return rc, out


def load_global(path):
    return json.loads(Path(path).read_text())


def assert_same_global(a, b, rel=1e-4):
    assert a["feature_names"] == b["feature_names"]
    assert a["counts"] == b["counts"]
    for kind in ("weight_sums", "lime", "average", "homogeneity"):
        for cls in b[kind]:
            assert a[kind][cls] == pytest.approx(b[kind][cls], rel=rel, abs=1e-7)


def test_explain_dataset_writes_songs_and_the_aggregate(full_run, dataset, capsys):
    rc, out = full_run
    assert rc == 1  # one song failed
    written = sorted(p.name for p in out.glob("song*.json"))
    assert written == [f"song{i}.json" for i in range(5)]
    exps = [Explanation.load_json(out / name) for name in written]
    assert exps[0].labels == [0, 1, 2]  # --target all
    assert exps[0].metadata["song_info"]["label"] == "0"
    # The global aggregate is the notebook's aggregation of exactly these explanations.
    agg = GlobalAggregator(3, class_names=["storm", "night", "rain"])
    agg.update(exps)
    want = agg.compute().to_dict()
    got = load_global(out / "global_importance.json")
    assert_same_global(got, want, rel=1e-12)
    assert (out / "global_importance.png").read_bytes()[:4] == b"\x89PNG"
    # torchlime aggregate rebuilds it from the files (and skips the aggregate itself).
    again = out / "again"
    assert main(["aggregate", *map(str, sorted(out.glob("*.json"))), "--out", str(again)]) == 0
    assert "5 explanations aggregated (1 aggregate file(s) skipped)" in capsys.readouterr().out
    assert_same_global(load_global(again / "global_importance.json"), want, rel=1e-12)


def test_missing_file_is_reported_and_listed(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(dataset)
    (tmp_path / "m.csv").write_text("audio,lyrics\nmissing.wav,s0.txt\n")
    shutil.copy(dataset / "s1.wav", tmp_path / "s1.wav")
    shutil.copy(dataset / "s1.txt", tmp_path / "s1.txt")
    with open(tmp_path / "m.csv", "a") as f:
        f.write("s1.wav,s1.txt\nmissing2.wav,s1.txt\n")
    rc = main(["explain-dataset", "--manifest", str(tmp_path / "m.csv"), "--model", "ds_model:factory",
               "--separator", str(dataset / "umx"), "--n-samples", "8", "--perturbations-per-eval", "8", "--segments", "2",
               "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "error: song missing (manifest line 2): expected an audio file" in err
    assert "2 song(s) failed:" in err and "missing2 (manifest line 4)" in err.split("2 song(s) failed:")[1]
    assert (tmp_path / "out" / "s1.json").exists()


def test_resume_after_a_crash_explains_no_song_twice(dataset, full_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(dataset)
    out = tmp_path / "out"
    # 1 forward call per song (one chunk of 16; row 0 is the song itself): crash during the third song.
    monkeypatch.setenv("CRASH_AFTER_CALLS", "2")
    sys.modules.pop("ds_model", None)
    assert run(dataset, out, "--songs-per-batch", "1") == 130  # Ctrl-C: one line, exit 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "torchlime explain-dataset: interrupted"
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.json")}
    assert sorted(first) == ["song0.json", "song1.json"]
    assert not list(out.glob(".*"))  # no temporary file left behind
    monkeypatch.delenv("CRASH_AFTER_CALLS")
    sys.modules.pop("ds_model", None)
    capsys.readouterr()
    rc = run(dataset, out, "--songs-per-batch", "1")
    printed = capsys.readouterr().out
    assert rc == 1  # the missing file again
    # said up front, then at the end
    assert printed.startswith(f"6 songs in {dataset / 'songs.csv'}: 2 already explained in {out} (skipped), 1 with "
                              f"missing files (failed), 3 to explain\n")
    assert "3 songs explained, 2 already done (skipped), 1 failed" in printed
    for name, (data, mtime) in first.items():
        assert (out / name).read_bytes() == data and (out / name).stat().st_mtime_ns == mtime
    # Same final aggregate as the uninterrupted run (which batched 2 songs per forward).
    assert_same_global(load_global(out / "global_importance.json"), load_global(full_run[1] / "global_importance.json"))


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(dataset, full_run, tmp_path):
    out = tmp_path / "out"
    torchrun = Path(sys.executable).with_name("torchrun")
    # the model module, and this checkout's torchlime (not whichever one the venv points at)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(dataset), str(ROOT)])}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "torchlime.cli", "explain-dataset",
         "--manifest", str(dataset / "songs.csv"), "--model", "ds_model:factory", "--separator", str(dataset / "umx"),
         "--n-samples", "16", "--perturbations-per-eval", "16", "--segments", "4", "--out", str(out), "--device", "cpu",
         "--quiet"],
        cwd=dataset, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode != 0 and "1 song(s) failed" in proc.stderr, proc.stderr[-3000:]
    assert "5 songs explained, 0 already done (skipped), 1 failed, 2 process(es)" in proc.stdout
    assert sorted(p.name for p in out.glob("song*.json")) == [f"song{i}.json" for i in range(5)]
    assert_same_global(load_global(out / "global_importance.json"), load_global(full_run[1] / "global_importance.json"))


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="expected a manifest CSV file, got .*which does not exist"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "a.csv").write_text("path,text\nx.wav,x.txt\n")
    with pytest.raises(ValueError, match=r"expected manifest columns audio \(or stems\), lyrics \(optional id, label\), got \['path', 'text'\]"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("audio,lyrics\nx.wav,x.txt\ndir/x.wav,y.txt\n")
    with pytest.raises(ValueError, match=r"expected unique song ids in the manifest, got duplicates \['x'\]"):
        read_manifest(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("audio,lyrics\nx.wav,\n")
    with pytest.raises(ValueError, match=r"c.csv:2: expected an audio \(or stems\) and a lyrics path"):
        read_manifest(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("audio,lyrics\n")
    with pytest.raises(ValueError, match="expected at least one song in the manifest"):
        read_manifest(tmp_path / "d.csv")


def test_aggregate_errors(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path / "none.json")]) == 2
    assert "expected explanation JSON files (or folders of them), got" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"metadata": {}}')
    assert main(["aggregate", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: expected torchlime's explanation JSON" in capsys.readouterr().err


def test_global_importance_file_loads(full_run):
    result = GlobalImportance.load_json(full_run[1] / "global_importance.json")
    assert result.class_names == ["storm", "night", "rain"]
    assert result.lime.shape == (3, len(result.feature_names))
    assert torch.isfinite(result.homogeneity).all()


def test_manifest_with_a_byte_order_mark_and_stems_folders(tmp_path):
    # "CSV UTF-8" from a spreadsheet program: a BOM before the first column name
    (tmp_path / "bom.csv").write_bytes("id,audio,lyrics\nfirst,a.wav,a.txt\n".encode("utf-8-sig"))
    rows = read_manifest(tmp_path / "bom.csv")
    assert [(r.id, r.audio.name) for r in rows] == [("first", "a.wav")]
    (tmp_path / "bom2.csv").write_bytes("audio,lyrics\nb.wav,b.txt\n".encode("utf-8-sig"))
    assert read_manifest(tmp_path / "bom2.csv")[0].id == "b"
    (tmp_path / "stems.csv").write_text("stems,lyrics\nsongs/one/,one.txt\n")
    row = read_manifest(tmp_path / "stems.csv")[0]
    assert (row.id, row.audio, row.stems) == ("one", None, tmp_path / "songs" / "one")
    (tmp_path / "latin1.csv").write_bytes("audio,lyrics\ncaf\xe9.wav,x.txt\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"expected UTF-8 text in the manifest .*latin1.csv"):
        read_manifest(tmp_path / "latin1.csv")
    # a lyrics file with a BOM: the first line is the same line (one feature name) as without
    from torchlime.cli._common import read_lyrics
    from torchlime.music import LyricsFactorization

    (tmp_path / "bom.txt").write_bytes("Hello there\nGeneral Kenobi\n".encode("utf-8-sig"))
    (tmp_path / "plain.txt").write_text("Hello there\nGeneral Kenobi\n", encoding="utf-8")
    assert read_lyrics(tmp_path / "bom.txt") == read_lyrics(tmp_path / "plain.txt") == "Hello there\nGeneral Kenobi\n"
    assert LyricsFactorization(read_lyrics(tmp_path / "bom.txt")).feature_names == ["Hello there", "General Kenobi"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"expected UTF-8 text in the lyrics file '.*latin1.txt', got invalid "
                                         r"continuation byte at byte 3 \(b'\\xe9'\); save it as UTF-8"):
        read_lyrics(tmp_path / "latin1.txt")


@pytest.mark.slow
def test_nproc_per_node_exits_1_with_one_line_per_failure(dataset, full_run, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(dataset)
    out = tmp_path / "out"
    capfd.readouterr()
    rc = run(dataset, out, "--nproc-per-node", "2")
    captured = capfd.readouterr()
    assert rc == 1  # the missing file, with torchrun's environment and no torchrun report
    assert "Traceback" not in captured.err and "ChildFailedError" not in captured.err, captured.err[-3000:]
    assert "1 song(s) failed:" in captured.err and "ghost (manifest line 7)" in captured.err
    assert "6 songs in" in captured.out and "5 songs explained, 0 already done (skipped), 1 failed, 2 process(es)" in captured.out
    assert_same_global(load_global(out / "global_importance.json"), load_global(full_run[1] / "global_importance.json"))


def test_songs_of_other_predicted_classes_share_calls_and_equal_one_by_one(dataset, tmp_path, monkeypatch):
    from torchlime.music import OpenUnmixSeparator

    batches = []
    separate = OpenUnmixSeparator.separate

    def recording(self, audio, *args, **kwargs):
        batches.append(audio.shape[0] if audio.dim() == 3 else 1)
        return separate(self, audio, *args, **kwargs)

    monkeypatch.setattr(OpenUnmixSeparator, "separate", recording)
    monkeypatch.chdir(dataset)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(dataset, one, "--songs-per-batch", "1", "--no-cache") == 1
    assert batches == [1] * 5
    batches.clear()
    assert run(dataset, two, "--songs-per-batch", "3", "--no-cache") == 1
    assert batches == [3, 2]  # songs of one length separated in one call (the missing file drops out)
    predicted = set()
    for i in range(5):
        a, b = (Explanation.load_json(d / f"song{i}.json") for d in (one, two))
        assert a.labels == b.labels == [int(a.prediction.argmax())]  # the predicted class only, by default
        predicted.add(a.labels[0])
        torch.testing.assert_close(a.weights, b.weights, rtol=1e-4, atol=1e-6)  # forward calls of another size
    assert len(predicted) > 1  # songs of several predicted classes shared forward calls


# -- resuming with other settings, failing songs, write errors, leftovers -------------------------


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def test_a_rerun_with_other_settings_is_refused_and_overwrite_replaces(dataset, full_run, tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.chdir(dataset)
    out = tmp_path / "out"
    shutil.copytree(full_run[1], out)
    before = snapshot(out)
    recorded = json.loads((out / "song0.json").read_text())["metadata"]["song_info"]
    assert recorded["settings"]["n_samples"] == 16 and recorded["settings"]["target"] == "all"
    assert len(recorded["settings_fingerprint"]) == 16
    capsys.readouterr()
    # other settings: refused before any work, naming the file and what differs; nothing changes
    assert run(dataset, out, "--n-samples", "8", "--segments", "2") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"torchlime explain-dataset: error: expected --out '{out}' to hold explanations made with "
                          f"this run's settings, got {out / 'song0.json'} (and 4 more song(s)) made with segments 4 "
                          f"(now 2), n_samples 16 (now 8), target all (now ['predicted']); pass --overwrite"), err
    assert len(err.strip().splitlines()) == 1 and snapshot(out) == before
    # settings that do not change an explanation: everything is skipped
    assert run(dataset, out, "--target", "all", "--perturbations-per-eval", "5", "--songs-per-batch", "3",
               "--memory-budget", "64M") == 1  # the missing file
    assert "5 already explained in" in capsys.readouterr().out
    assert {k: v for k, v in snapshot(out).items() if k != "global_importance.json"} == {
        k: v for k, v in before.items() if k != "global_importance.json"}
    # --overwrite: those songs again, with the new settings, and an aggregate of those only
    assert run(dataset, out, "--n-samples", "8", "--segments", "2", "--overwrite") == 1
    printed = capsys.readouterr().out
    assert "0 already explained" in printed and "(5 made with other settings, explained again: --overwrite)" in printed
    fingerprints = {json.loads((out / f"song{i}.json").read_text())["metadata"]["song_info"]["settings_fingerprint"]
                    for i in range(5)}
    aggregate = load_global(out / "global_importance.json")
    assert fingerprints == set(aggregate["settings_fingerprints"]) and len(fingerprints) == 1
    assert fingerprints != {recorded["settings_fingerprint"]}
    assert aggregate["settings"]["n_samples"] == 8 and aggregate["settings"]["segments"] == 2
    # and a resume of that run is a resume
    assert run(dataset, out, "--n-samples", "8", "--segments", "2") == 1
    assert "5 already explained in" in capsys.readouterr().out


def test_a_rerun_with_another_sampler_is_refused_and_an_older_folder_resumes(dataset, full_run, tmp_path,
                                                                              monkeypatch, capsys):
    from torchlime.cli._common import settings_fingerprint

    monkeypatch.chdir(dataset)
    out = tmp_path / "out"
    shutil.copytree(full_run[1], out)
    recorded = json.loads((out / "song0.json").read_text())["metadata"]["song_info"]
    assert recorded["settings"]["sampler"] == "iid" and "tol" not in recorded["settings"]
    capsys.readouterr()
    assert run(dataset, out, "--target", "all", "--sampler", "paired") == 2
    err = capsys.readouterr().err
    assert "(and 4 more song(s)) made with sampler iid (now paired); pass --overwrite" in err, err
    assert len(err.strip().splitlines()) == 1
    # A folder written before the sampler was recorded: its songs were drawn iid, so it
    # resumes, and its fingerprint is the one it was written with.
    for path in out.glob("song*.json"):
        data = json.loads(path.read_text())
        del data["metadata"]["song_info"]["settings"]["sampler"]
        path.write_text(json.dumps(data))
    old = {k: v for k, v in recorded["settings"].items() if k != "sampler"}
    assert settings_fingerprint(old) == recorded["settings_fingerprint"] == settings_fingerprint(recorded["settings"])
    assert run(dataset, out, "--target", "all") == 1  # the missing file
    assert "5 already explained in" in capsys.readouterr().out
    assert load_global(out / "global_importance.json")["settings_fingerprints"] == [recorded["settings_fingerprint"]]
    assert run(dataset, out, "--target", "all", "--sampler", "sobol") == 2
    assert "made with sampler iid (now sobol); pass --overwrite" in capsys.readouterr().err


def test_auto_budget_records_the_samples_of_each_song(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(dataset)
    out = tmp_path / "auto"
    args = ["explain-dataset", "--manifest", str(dataset / "songs.csv"), "--model", "ds_model:factory", "--separator",
            str(dataset / "umx"), "--segments", "4", "--out", str(out), "--device", "cpu", "--n-samples", "auto",
            "--tol", "0.3", "--max-samples", "64", "--perturbations-per-eval", "16", "--sampler", "paired"]
    assert main(args) == 1  # the missing file
    printed = capsys.readouterr().out
    for i in range(5):
        metadata = json.loads((out / f"song{i}.json").read_text())["metadata"]
        params, settings = metadata["explanation_params"], metadata["song_info"]["settings"]
        used = params["n_samples"]  # each song's own: rounds of 16 until its weights are precise, <= 64
        assert used <= 64 and used % 16 == 0 and metadata["uncertainty"]["n_samples_used"] == used
        assert (params["n_samples_rule"], params["tol"], params["max_samples"], params["sampler"]) == (
            "auto", 0.3, 64, "paired")
        assert (settings["n_samples"], settings["tol"], settings["max_samples"], settings["sampler"]) == (
            "auto", 0.3, 64, "paired")
        assert f"explained song{i} (auto: {used} of at most 64 samples, paired sampler)" in printed
    assert main(args[:-2] + ["--tol", "0.2", "--quiet"]) == 2  # and the default sampler, iid
    err = capsys.readouterr().err
    assert "(and 4 more song(s)) made with sampler paired (now iid), tol 0.3 (now 0.2); pass --overwrite" in err, err
    assert main(args + ["--quiet"]) == 1
    assert "5 already explained in" in capsys.readouterr().out


def test_a_song_that_fails_in_a_group_fails_alone(dataset, tmp_path, monkeypatch, capsys):
    """song3's lyrics make the model return NaN: its group (song2, song3) is explained again
    song by song, song3 alone fails (named, listed at the end, exit 1), the others are kept."""
    monkeypatch.chdir(dataset)
    monkeypatch.setenv("NAN_WORD", "burning")
    sys.modules.pop("ds_model", None)
    out = tmp_path / "out"
    try:
        rc = run(dataset, out, "--songs-per-batch", "2")
    finally:
        sys.modules.pop("ds_model", None)
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(p.name for p in out.glob("song*.json")) == [f"song{i}.json" for i in (0, 1, 2, 4)]
    listed = [line.strip() for line in err.split("2 song(s) failed:")[1].strip().splitlines()]
    assert listed[0].startswith("song3 (manifest line 5): ") and "song 'song3'" in listed[0], err
    assert "NaN" in listed[0] or "nan" in listed[0], err
    assert listed[1].startswith("ghost (manifest line 7)")
    assert "Traceback" not in err
    # the others are what they are alone
    alone = tmp_path / "alone"
    assert run(dataset, alone, "--songs-per-batch", "1") == 1
    for i in (0, 1, 2, 4):
        a, b = (Explanation.load_json(d / f"song{i}.json") for d in (out, alone))
        torch.testing.assert_close(a.weights, b.weights, rtol=1e-4, atol=1e-6)


@pytest.fixture()
def read_only():
    """Make a folder read-only, for root too (chattr +i), and writable again afterwards."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode:
                pytest.skip("running as root without chattr +i: no read-only folder to test with")
        else:
            folder.chmod(0o555)
        made.append(folder)
        try:
            (folder / "probe").touch()
        except OSError:
            return folder
        pytest.skip(f"could not make {folder} read-only")

    yield make
    for folder in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)])
        else:
            folder.chmod(0o755)


def patched_writer(monkeypatch, after_writes):
    """Explanation.save_json's atomic writer: ``after_writes(n, path)`` is called once the
    n-th file is written (and may raise inside the write, as a full disk would)."""
    import torchlime.music._explanation as explanation_module
    from torchlime._atomic import atomic_write

    count = [0]

    def writer(path, write, mode="w"):
        def inner(f):
            after_writes(count[0] + 1, path, before=True)
            write(f)

        result = atomic_write(path, inner, mode)
        count[0] += 1
        after_writes(count[0], path, before=False)
        return result

    monkeypatch.setattr(explanation_module, "atomic_write", writer)


def error_line(err):
    """The run's one error line (the last; a missing song file is reported before it)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert all(line.startswith("error: song ghost") for line in lines[:-1]), err
    return lines[-1]


def assert_kept(out, kept):
    assert sorted(p.name for p in out.glob("song*.json")) == [f"song{i}.json" for i in range(kept)]
    for i in range(kept):
        Explanation.load_json(out / f"song{i}.json")  # whole files
    assert not list(out.glob(".*"))  # no temporary file left


def test_a_full_disk_stops_the_run_in_one_line_and_loses_nothing(dataset, tmp_path, monkeypatch, capsys):
    import errno

    monkeypatch.chdir(dataset)
    out = tmp_path / "out"

    def full_disk(n, path, before):
        if before and n == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    patched_writer(monkeypatch, full_disk)
    assert run(dataset, out) == 2
    assert error_line(capsys.readouterr().err) == (
        f"torchlime explain-dataset: error: could not write {out / 'song2.json'}: No space left on device; the 2 "
        f"explanation(s) in {out} are kept: make room or fix the folder's permissions and rerun the same command to "
        f"resume")
    assert_kept(out, 2)
    monkeypatch.undo()
    monkeypatch.chdir(dataset)
    assert run(dataset, out) == 1  # resumed: the missing file only
    assert "2 already explained" in capsys.readouterr().out


def test_a_folder_turned_read_only_after_the_first_song(dataset, tmp_path, monkeypatch, capsys, read_only):
    monkeypatch.chdir(dataset)
    out = tmp_path / "out"

    def lock(n, path, before):
        if not before and n == 1:
            read_only(out)

    patched_writer(monkeypatch, lock)
    assert run(dataset, out) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"torchlime explain-dataset: error: could not write {out / 'song1.json'}: "), line
    assert "the 1 explanation(s) in" in line and "rerun the same command to resume" in line
    assert_kept(out, 1)


def test_read_only_folders_from_the_start_and_a_missing_separator(dataset, full_run, tmp_path, monkeypatch, capsys,
                                                                  read_only):
    monkeypatch.chdir(dataset)
    locked = read_only(tmp_path / "locked")
    assert run(dataset, locked) == 2  # before any work
    err = capsys.readouterr().err
    assert err.startswith(f"torchlime explain-dataset: error: could not write {locked}: ")
    assert "(the --out folder)" in err
    assert len(err.strip().splitlines()) == 1, err
    assert main(["aggregate", str(full_run[1]), "--out", str(locked)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"torchlime aggregate: error: could not write {locked / 'global_importance.json'}: ")
    assert len(err.strip().splitlines()) == 1
    args = ["explain-dataset", "--manifest", str(dataset / "songs.csv"), "--model", "ds_model:factory",
            "--separator", str(tmp_path / "no_such_folder"), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("torchlime explain-dataset: error: expected a published Open-Unmix model name")
    assert line.endswith(f"got '{tmp_path / 'no_such_folder'}', which does not exist")


def test_temporary_files_an_interrupted_run_left_are_removed(dataset, full_run, tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.chdir(dataset)
    out = tmp_path / "out"
    shutil.copytree(full_run[1], out)
    old = [out / ".song5.json.k2j3h4g5.torchlime-tmp.json", out / ".global_importance.png.ab_cd123.torchlime-tmp.png",
           out / ".song6.json.x1y2z3w4.json"]  # the last: named as before the mark
    young = out / ".song7.json.q1w2e3r4.torchlime-tmp.json"  # maybe another run's write in progress
    theirs = [out / ".notes.json", out / ".config.abcdefgh"]  # not ours
    for path in old + [young] + theirs:
        path.write_text("{")
    hour_ago = time.time() - 3600
    for path in old + theirs:
        os.utime(path, (hour_ago, hour_ago))
    assert run(dataset, out, "--target", "all") == 1
    assert f"removed 3 temporary file(s) an interrupted run left in {out}" in capsys.readouterr().out
    assert not any(p.exists() for p in old) and young.exists() and all(p.exists() for p in theirs)
