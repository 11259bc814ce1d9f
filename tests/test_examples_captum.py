"""examples/text_limebase.py and examples/piano_roll_lime.py on small sizes: torchlime equals
Captum on the same seed, the explanations find the planted evidence, the figures are written."""

import importlib.util
import pathlib
import sys

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """Tiny models run no faster on two threads, and much slower on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _is_png(path, min_bytes=20_000):
    data = pathlib.Path(path).read_bytes()
    return data[:8] == PNG and len(data) > min_bytes


@pytest.mark.slow
def test_text_limebase_equals_captum_and_removing_the_top_words_drops_the_prediction(tmp_path, one_thread):
    example = _load("text_limebase")
    lines = []
    # about 6 s on 2 CPU cores: 256 reviews, 120 steps, 300 LIME samples, two reviews
    r = example.run(256, 120, 300, max_k=3, n_random=32, seed=0, out=tmp_path, log=lines.append)
    assert r["accuracy"] > 0.9
    assert _is_png(r["figure"]) and r["figure"] == tmp_path / "text_limebase.png"
    assert [e["target"] for e in r["explanations"]] == [2, 0]  # the positive review, the negative one
    for e in r["explanations"]:
        # torchlime.LimeBase (batched transform and similarity, torchlime's Ridge) against
        # captum.attr.LimeBase (per-sample loop, scikit-learn's Ridge), same torch seed
        torch.testing.assert_close(e["torchlime"], e["captum"], atol=2e-5, rtol=0)
        # the top words are the review's cue words of the predicted class, the ones that carry the label
        cues = [example.NEGATIVE, [], example.POSITIVE][e["target"]]
        in_review = [w for w in e["words"] if w in cues]
        top = e["batched"].topk(len(in_review)).indices.tolist()
        assert sorted(e["words"][f] for f in top) == sorted(in_review)
        # deletion: removing the top-k words drops the prediction more than removing k random words
        drop = e["deletion"][0] - e["deletion"]
        random_drop = e["random_deletion"][0] - e["random_deletion"]
        assert drop[-1] > random_drop[-1] + 0.5
        assert e["aopc"] > e["random_aopc"] + 0.2
    text = "\n".join(lines)
    assert "max |torchlime - captum|" in text and "deletion, p(positive) with k words removed" in text


@pytest.mark.slow
def test_piano_roll_lime_finds_the_melody_cells_and_equals_captum(tmp_path, one_thread):
    example = _load("piano_roll_lime")
    lines = []
    # about 3 s on 2 CPU cores: 48 x 36 rolls, 6 x 3 cells, 256 training rolls, 3 epochs
    r = example.run(48, 36, train_rolls=256, epochs=3, rolls=3, n_samples=300, seed=0, out=tmp_path, log=lines.append)
    assert r["accuracy"] > 0.8
    assert _is_png(r["figure"]) and r["figure"] == tmp_path / "piano_roll_lime.png"
    # torchlime.Lime against captum.attr.Lime on one roll, same torch.manual_seed
    assert r["torchlime"].shape == r["captum"].shape == (1, 18)
    torch.testing.assert_close(r["torchlime"], r["captum"], atol=2e-5, rtol=0)
    # every explained melody roll: the cells inside the melody's box carry the largest weights
    weights, evidence = r["cell_weights"], r["evidence_cells"]
    assert evidence.tolist() == [5, 8]  # time blocks 1 and 2 of the top band (3 bands)
    inside = torch.zeros(weights.shape[1], dtype=torch.bool)
    inside[evidence] = True
    assert (weights[:, inside].min(1).values > weights[:, ~inside].max(1).values).all()
    assert "roll 0: max |torchlime - captum|" in "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,argv,figure",
    [
        ("text_limebase", ["--reviews", "60", "--steps", "10", "--n-samples", "20", "--perturbations-per-eval", "10"],
         "text_limebase.png"),
        ("piano_roll_lime", ["--time-steps", "16", "--pitches", "12", "--time-block", "4", "--band", "6",
                             "--train-rolls", "32", "--epochs", "1", "--rolls", "1", "--n-samples", "20"],
         "piano_roll_lime.png"),
    ],
)
def test_examples_run_from_the_command_line(tmp_path, capsys, name, argv, figure, one_thread):
    example = _load(name)
    assert example.main([*argv, "--threads", "1", "--out", str(tmp_path)]) == 0
    assert _is_png(tmp_path / figure, min_bytes=10_000)
    assert f"wrote {tmp_path / figure}" in capsys.readouterr().out


def test_piano_roll_rejects_cells_that_do_not_tile_the_roll():
    example = _load("piano_roll_lime")
    with pytest.raises(ValueError, match="expected band to divide the roll's size 48, got 10"):
        example.run(64, 48, band=10, out=None)
    with pytest.raises(ValueError, match="expected time_block to divide the roll's size 64, got 0"):
        example.run(64, 48, time_block=0, out=None)
    with pytest.raises(ValueError, match="expected time_steps and pitches divisible by 4"):
        example.run(66, 48, time_block=6, band=12, out=None)


@pytest.mark.parametrize("name", ["text_limebase", "piano_roll_lime"])
def test_examples_reject_fewer_than_one_thread(name, capsys):
    with pytest.raises(SystemExit):
        _load(name).main(["--threads", "0"])
    assert "expected --threads >= 1, got 0" in capsys.readouterr().err
