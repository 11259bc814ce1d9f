"""The demo: synthetic songs with a planted cause and the shipped classifier that learnt it."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

pytest.importorskip("torchaudio")
pytest.importorskip("transformers")

from torchlime.music.demo import (  # noqa: E402
    CAUSE_SEGMENTS,
    DEMO_MAX_LENGTH,
    DEMO_SAMPLE_RATE,
    NUM_LINES,
    STEM_NAMES,
    TRIGGER_WORDS,
    DemoClassifier,
    DemoConfig,
    collate,
    encode_lyrics,
    load_demo,
    lyric_pool,
    make_dataset,
    make_song,
    segment_edges,
    train,
)

HELD_OUT_SEED = 2024  # training used make_dataset(800, 0) and make_dataset(200, 1): disjoint seeds


@contextlib.contextmanager
def _one_thread():
    """Synthesis is many small ops; one thread avoids two threads fighting over a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    return load_demo()


@pytest.fixture(scope="module")
def songs():
    with _one_thread():
        return make_dataset(40, HELD_OUT_SEED)


def _p1(model, audio, lyrics, tokenizer):
    ids, mask = encode_lyrics(tokenizer, lyrics)
    with torch.no_grad():
        return model(torch.stack(audio), ids, mask).softmax(-1)[:, 1]


def _zero(song, stem, segments):
    stems = song.stems.clone()
    edges = segment_edges(stems.shape[-1])
    for g in segments:
        stems[STEM_NAMES.index(stem), :, edges[g] : edges[g + 1]] = 0
    return stems.sum(0)


def _drop_lines(song, drop):
    return "\n".join(line for i, line in enumerate(song.lines) if i not in drop)


# --- data -------------------------------------------------------------------------------


def test_song_shapes_and_ground_truth():
    song = make_song(1, seed=3)
    T = round(6.0 * DEMO_SAMPLE_RATE)
    assert song.stems.shape == (4, 1, T) and song.mixture.shape == (1, T)
    torch.testing.assert_close(song.mixture, song.stems.sum(0), atol=0, rtol=0)
    assert len(song.lines) == NUM_LINES and song.sample_rate == DEMO_SAMPLE_RATE
    assert song.cause_segments == list(CAUSE_SEGMENTS)
    assert song.cause_features == ["drums_T2", "drums_T3", "drums_T4"]
    assert len(song.cause_lines) == 2
    for i, line in enumerate(song.lines):
        assert any(w in line.split() for w in TRIGGER_WORDS) == (i in song.cause_lines)
    assert not any(w in line.split() for line in lyric_pool() for w in TRIGGER_WORDS)


def test_songs_are_deterministic_and_seed_dependent():
    a, b, c = make_song(0, seed=11), make_song(0, seed=11), make_song(0, seed=12)
    assert torch.equal(a.stems, b.stems) and a.lyrics == b.lyrics
    assert not torch.equal(a.stems, c.stems)


def test_class_zero_never_has_the_complete_cause():
    for song in make_dataset(30, seed=7):
        complete = song.cause_segments == list(CAUSE_SEGMENTS) and len(song.cause_lines) == 2
        assert song.label == int(complete)


def test_drum_cue_lives_in_the_drums_stem_of_its_segments():
    # Same seed, cue forced on and off: only the drums stem differs, and only around the cause segments.
    on = make_song(0, seed=5, drum_segments=CAUSE_SEGMENTS, trigger_words=[], decoy=False)
    off = make_song(0, seed=5, drum_segments=[], trigger_words=[], decoy=False)
    for s in ("vocals", "bass", "other"):
        assert torch.equal(on.stems[STEM_NAMES.index(s)], off.stems[STEM_NAMES.index(s)])
    drums = STEM_NAMES.index("drums")
    e = segment_edges(on.stems.shape[-1])
    diff = (on.stems[drums] - off.stems[drums]).abs()
    inside = diff[:, e[CAUSE_SEGMENTS[0]] : e[CAUSE_SEGMENTS[-1] + 1]].square().mean()
    assert inside > 100 * (diff[:, e[6] :].square().mean() + 1e-12)
    assert on.lines == off.lines


def test_lyric_cue_adds_the_trigger_lines_and_changes_nothing_else():
    on = make_song(0, seed=5, drum_segments=[], trigger_words=TRIGGER_WORDS)
    off = make_song(0, seed=5, drum_segments=[], trigger_words=[])
    assert torch.equal(on.stems, off.stems)
    others = [line for i, line in enumerate(on.lines) if i not in on.cause_lines]
    assert others == off.lines[: len(others)]
    assert sorted(w for i in on.cause_lines for w in TRIGGER_WORDS if w in on.lines[i].split()) == sorted(TRIGGER_WORDS)


def test_make_song_errors():
    with pytest.raises(ValueError, match="expected label 0 or 1"):
        make_song(2, seed=0)
    with pytest.raises(ValueError, match="expected label 1 exactly for the complete cause"):
        make_song(0, seed=0, drum_segments=CAUSE_SEGMENTS, trigger_words=TRIGGER_WORDS)
    with pytest.raises(ValueError, match="expected label 1 exactly for the complete cause"):
        make_song(1, seed=0, drum_segments=[2, 3], trigger_words=TRIGGER_WORDS)
    with pytest.raises(ValueError, match="expected drum_segments among"):
        make_song(0, seed=0, drum_segments=[7])
    with pytest.raises(ValueError, match="expected trigger_words among"):
        make_song(0, seed=0, trigger_words=["rain"])
    with pytest.raises(ValueError, match="expected at least"):
        make_song(0, seed=0, seconds=0.01)
    with pytest.raises(ValueError, match="expected n >= 1"):
        make_dataset(0, seed=0)


# --- model ------------------------------------------------------------------------------


def test_load_demo(demo):
    model, tokenizer = demo
    assert isinstance(model, DemoClassifier) and not model.training
    assert model.config.sample_rate == DEMO_SAMPLE_RATE and model.config.max_length == DEMO_MAX_LENGTH
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer("thunder lightning")["input_ids"][0] == tokenizer.cls_token_id
    assert sum(p.numel() for p in model.parameters()) * 4 < 1_000_000  # under 1 MB of float32 weights


def test_shapes_and_errors(demo, songs):
    model, tokenizer = demo
    audio, ids, mask = collate(songs[:3], tokenizer)
    assert audio.shape == (3, 1, 48000) and ids.shape == mask.shape and ids.shape[0] == 3
    with torch.no_grad():
        logits = model(audio, ids, mask)
        assert logits.shape == (3, 2) and logits.dtype == torch.float32
        assert model(audio.double(), ids, mask).dtype == torch.float32  # audio is cast to the model's dtype
        assert model(audio.expand(3, 2, 48000), ids, mask).shape == (3, 2)  # channels are averaged
    with pytest.raises(ValueError, match=r"expected audio of shape \(n, C, T\)"):
        model(audio[:, 0], ids, mask)
    with pytest.raises(ValueError, match="expected as many audio rows as token rows"):
        model(audio[:2], ids, mask)
    with pytest.raises(ValueError, match="expected input_ids and attention_mask of the same shape"):
        model(audio, ids, mask[:, :-1])
    with pytest.raises(ValueError, match="expected at most 256 frames"):
        model(torch.zeros(1, 1, 80000), ids[:1], mask[:1])
    with pytest.raises(ValueError, match="expected DemoConfig keys"):
        DemoConfig.from_dict({"vocab_size": 10, "colour": "red"})


def test_batch_equals_loop(demo, songs):
    model, tokenizer = demo
    batch = songs[:6]
    with torch.no_grad():
        batched = model(*collate(batch, tokenizer))
        looped = torch.cat([model(*collate([s], tokenizer)) for s in batch])
    # padding to the longest lyrics changes the reduction order inside attention only
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-4)


def test_forward_on_device(demo, songs, device):
    model, tokenizer = demo
    inputs = collate(songs[:4], tokenizer)
    with torch.no_grad():
        expected = model(*inputs)
        moved = DemoClassifier(model.config)
        moved.load_state_dict(model.state_dict())
        moved = moved.to(device).eval()
        out = moved(*(x.to(device) for x in inputs))
    assert out.device.type == device.type
    # cuFFT / cuBLAS against CPU kernels in float32
    torch.testing.assert_close(out.cpu(), expected, atol=1e-3, rtol=1e-3)


def test_held_out_accuracy(demo, songs):
    model, tokenizer = demo
    with torch.no_grad():
        pred = model(*collate(songs, tokenizer)).argmax(-1)
    accuracy = (pred == torch.tensor([s.label for s in songs])).float().mean()
    assert accuracy > 0.85


def test_ablations_find_the_planted_cause(demo, songs):
    model, tokenizer = demo
    pos = [s for s in songs if s.label == 1]
    lyrics = [s.lyrics for s in pos]
    mixtures = [s.mixture for s in pos]
    base = _p1(model, mixtures, lyrics, tokenizer)

    def audio_drop(stem, segments):
        return base - _p1(model, [_zero(s, stem, segments) for s in pos], lyrics, tokenizer)

    def lyrics_drop(lines_of):
        return base - _p1(model, mixtures, [_drop_lines(s, lines_of(s)) for s in pos], tokenizer)

    drop = {
        "drums in the cause segments": audio_drop("drums", CAUSE_SEGMENTS),
        "trigger lines": lyrics_drop(lambda s: s.cause_lines),
        # each part of the cause is necessary on its own
        "drums in the middle cause segment": audio_drop("drums", [3]),
        "one trigger line": lyrics_drop(lambda s: s.cause_lines[:1]),
        # unrelated parts
        "other stem in the cause segments": audio_drop("other", CAUSE_SEGMENTS),
        "vocals in segment 7": audio_drop("vocals", [7]),
        "two other lines": lyrics_drop(lambda s: [i for i in range(NUM_LINES) if i not in s.cause_lines][:2]),
    }
    mean = {k: float(v.mean()) for k, v in drop.items()}
    assert mean["drums in the cause segments"] > 0.5, mean
    assert mean["trigger lines"] > 0.5, mean
    assert mean["drums in the middle cause segment"] > 0.3 and mean["one trigger line"] > 0.3, mean
    for unrelated in ("other stem in the cause segments", "vocals in segment 7", "two other lines"):
        assert abs(mean[unrelated]) < 0.1, mean
        assert abs(mean[unrelated]) < 0.2 * min(mean["drums in the cause segments"], mean["trigger lines"]), mean


# --- training ---------------------------------------------------------------------------


def test_train_smoke(tmp_path):
    state = torch.random.get_rng_state()
    with _one_thread():
        result = train(tmp_path, n_songs=8, epochs=1, seed=0, n_held_out=4, batch_size=4, log=None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert 0.0 <= result["train_accuracy"] <= 1.0 and 0.0 <= result["held_out_accuracy"] <= 1.0
    assert {p.name for p in tmp_path.iterdir()} == {"weights.pt", "config.json", "tokenizer"}  # no temp files left
    assert json.loads((tmp_path / "config.json").read_text())["hidden_size"] == 32
    model, tokenizer = load_demo(path=tmp_path)
    with torch.no_grad():
        assert model(*collate([make_song(1, seed=99)], tokenizer)).shape == (1, 2)


def test_train_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="expected n_songs >= 2"):
        train(tmp_path, n_songs=1, epochs=1)
    with pytest.raises(ValueError, match="expected epochs >= 1"):
        train(tmp_path, n_songs=4, epochs=0)
    with pytest.raises(FileNotFoundError, match="weights.pt"):
        load_demo(path=tmp_path)
