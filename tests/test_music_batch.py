"""Several songs per forward call (MusicLime.explain(songs_per_batch=m)) equal one call per song."""

import pytest
import torch

from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
from torchlime.music.demo import data as demo_data
from torchlime.music.demo import factory as demo_factory


@pytest.fixture(scope="module")
def spec():
    return demo_factory.factory("cpu")


def _songs(spec, specs):
    """(audio, lyrics) factorizations: (seed, seconds, segments, lines kept) per song."""
    audios, lyricses = [], []
    for seed, seconds, segments, lines in specs:
        song = demo_data.make_song(seed % 2, seed, seconds=seconds)
        audios.append(StemFactorization(song.stems, sample_rate=song.sample_rate, num_segments=segments))
        text = "\n".join(song.lines[:lines])
        lyricses.append(LyricsFactorization(text, spec["tokenizer"], unit="line", max_length=spec["max_length"]))
    return audios, lyricses


class CountingForward:
    def __init__(self, model):
        self.model, self.calls, self.rows = model, 0, 0

    def __call__(self, audio, ids, attention):
        self.calls += 1
        self.rows += audio.shape[0]
        return self.model(audio, ids, attention)


def _explain(spec, audios, lyricses, songs_per_batch, modality="both", n=48, batch_size=16):
    forward = CountingForward(spec["forward"])
    explainer = MusicLime(forward, apply_softmax=True)
    exps = explainer.explain(
        audios, lyricses, target=[0, 1], n_samples=n, modality=modality, num_features=5, perturbations_per_eval=batch_size,
        generator=torch.Generator().manual_seed(3), songs_per_batch=songs_per_batch,
    )
    return exps, forward


@pytest.mark.parametrize("modality", ["both", "audio", "lyrics"])
def test_batch_of_songs_equals_one_call_per_song(spec, modality):
    # Different lyric line counts and segment counts: different F per song in one batch.
    audios, lyricses = _songs(spec, [(1, 4.0, 10, 12), (2, 4.0, 10, 7), (3, 4.0, 5, 12)])
    loop, f_loop = _explain(spec, audios, lyricses, 1, modality)
    batch, f_batch = _explain(spec, audios, lyricses, 3, modality)
    assert f_batch.rows == f_loop.rows  # the same samples ...
    assert f_batch.calls * 3 == f_loop.calls  # ... in a third of the forward calls
    for a, b in zip(loop, batch):
        assert a.feature_names == b.feature_names
        assert a.metadata["songs_per_batch"] == 1 and b.metadata["songs_per_batch"] == 3
        # Padding the token rows of the shorter songs changes the BERT sums in the last bits.
        torch.testing.assert_close(b.weights, a.weights, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)
        for label in (0, 1):
            assert [i for i, _ in b.local_exp[label]] == [i for i, _ in a.local_exp[label]]
            assert b.score[label] == pytest.approx(a.score[label], abs=1e-4)


def test_songs_of_different_lengths_are_grouped_apart(spec):
    audios, lyricses = _songs(spec, [(1, 4.0, 10, 12), (2, 3.0, 10, 12), (3, 4.0, 10, 12), (4, 3.0, 10, 12)])
    loop, f_loop = _explain(spec, audios, lyricses, 1)
    batch, f_batch = _explain(spec, audios, lyricses, 4)
    assert f_batch.calls * 2 == f_loop.calls  # two groups of two
    for a, b in zip(loop, batch):
        torch.testing.assert_close(b.weights, a.weights, atol=2e-5, rtol=1e-4)


def test_group_size_caps_the_batch(spec):
    audios, lyricses = _songs(spec, [(s, 2.0, 4, 6) for s in range(5)])
    _, f_batch = _explain(spec, audios, lyricses, 2, n=16, batch_size=16)
    assert f_batch.calls == 3  # groups of 2, 2, 1: one chunk each (row 0 is the song itself: no extra forward)


def test_bad_songs_per_batch(spec):
    audios, lyricses = _songs(spec, [(1, 2.0, 4, 6)])
    with pytest.raises(ValueError, match="expected songs_per_batch >= 1, got 0"):
        _explain(spec, audios, lyricses, 0)


def test_masks_for_a_batch_must_have_one_row_per_song(spec):
    audios, lyricses = _songs(spec, [(1, 2.0, 4, 6), (2, 2.0, 4, 6)])
    explainer = MusicLime(spec["forward"], apply_softmax=True)
    with pytest.raises(ValueError, match=r"expected \(B, n, F\) masks with B = 2 songs, got shape \(3, 8, 22\)"):
        explainer.explain(audios, lyricses, masks=torch.ones(3, 8, 22), songs_per_batch=2)


@pytest.mark.parametrize("reuse", [True, False])
def test_cpu_buffer_reuse_gives_the_same_explanation(spec, reuse, monkeypatch):
    audios, lyricses = _songs(spec, [(1, 2.0, 4, 6), (2, 2.0, 4, 6)])
    pointers = []

    def forward(audio, ids, attention):
        pointers.append(audio.data_ptr())
        return spec["forward"](audio, ids, attention)

    monkeypatch.setattr(MusicLime, "reuse_buffers", reuse)
    exps = MusicLime(forward, apply_softmax=True).explain(
        audios, lyricses, target=[0, 1], n_samples=48, perturbations_per_eval=16, num_features=5,
        generator=torch.Generator().manual_seed(3), songs_per_batch=2,
    )
    reference, _ = _explain(spec, audios, lyricses, 1)
    for a, b in zip(exps, reference):
        torch.testing.assert_close(a.weights, b.weights, atol=2e-5, rtol=1e-4)
    assert len(pointers) == 3  # 3 chunks of 16 x 2 songs (row 0 is the song: no extra forward)
    if reuse:  # the chunks share one buffer (fresh ones may land anywhere, so no check then)
        assert len(set(pointers)) == 1
