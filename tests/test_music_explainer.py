"""MusicLime against a bach-or-bot-style reference pipeline on the same masks."""

import numpy as np
import pytest
import torch
from lime.lime_base import LimeBase as ReferenceLimeBase
from sklearn.metrics import pairwise_distances

from torchlime.music import Explanation, LyricsFactorization, MusicLime, StemFactorization



def build_wordpiece(folder):
    """A BERT-style WordPiece tokenizer trained here, saved and loaded like a hub one."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(LINES * 5, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)

LYRICS = """[Verse 1]
neon thunder rising over the bay
we walk the night until the day
(Instrumental)
hold the line and never stray

[Chorus]
thunder in my heart tonight
every window burning bright
"""
LINES = [l.strip() for l in LYRICS.split("\n") if l.strip() and not (l.strip().startswith(("[", "(")))]


def make_stems(T=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, T, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.5, 0.8, 0.3], dtype=torch.float64)[:, None]


def predict_fn(texts, waveforms):
    """A MusicLIME-style predict_fn: lists in, probabilities (n, 3) out."""
    rows = []
    for text, wave in zip(texts, waveforms):
        energy = np.asarray([np.mean(wave[i * 400 : (i + 1) * 400] ** 2) for i in range(10)])
        logits = np.array([
            2.0 * energy[2] + 1.5 * text.count("thunder"),
            energy[7] - 0.5 * text.count("night"),
            0.3 * len(text.split("\n")),
        ])
        e = np.exp(logits - logits.max())
        rows.append(e / e.sum())
    return np.stack(rows)


def reference_pipeline(stems, bounds, masks, label, num_features=20, kernel_width=25):
    """Per-sample numpy composition, lines joined, predict_fn, lime.lime_base.LimeBase."""
    comps = []
    for a, b in bounds:
        for s in range(4):
            c = np.zeros(stems.shape[1])
            c[a:b] = stems[s, a:b]
            comps.append(c)
    n_audio = len(comps)
    texts, audios = [], []
    for row in masks:
        active = np.where(row[:n_audio] != 0)[0]
        audios.append(sum(comps[i] for i in active) if len(active) else np.zeros(stems.shape[1]))
        inactive = set(np.where(row[n_audio:] == 0)[0])
        texts.append("\n".join(l for i, l in enumerate(LINES) if i not in inactive))
    predictions = predict_fn(texts, audios)
    distances = pairwise_distances(masks, masks[0].reshape(1, -1), metric="cosine").ravel()
    kernel = lambda d: np.sqrt(np.exp(-(d**2) / kernel_width**2))  # noqa: E731
    out = ReferenceLimeBase(kernel).explain_instance_with_data(masks, predictions, distances, label, num_features)
    return out, texts, audios


@pytest.mark.parametrize("label,num_features", [(0, 20), (1, 5)])
def test_same_inputs_same_explanation_as_reference_pipeline(label, num_features):
    stems = make_stems()
    T = stems.shape[1]
    bounds = [(i * (T // 10), (i + 1) * (T // 10)) for i in range(10)]
    g = torch.Generator().manual_seed(label)
    masks = torch.bernoulli(torch.full((300, 40 + len(LINES)), 0.5), generator=g)
    masks[0] = 1
    # bach-or-bot draws masks with randint: int64, as here
    ref, ref_texts, ref_audios = reference_pipeline(stems.numpy(), bounds, masks.numpy().astype(np.int64), label, num_features)

    seen = {"texts": [], "audios": []}

    def recording_predict_fn(texts, waveforms):
        seen["texts"].extend(texts)
        seen["audios"].extend(waveforms)
        return predict_fn(texts, waveforms)

    audio = StemFactorization(stems, sample_rate=4000, boundaries=bounds)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    exp = MusicLime(predict_fn=recording_predict_fn).explain(
        audio, lyrics, target=[label], masks=masks, num_features=num_features, perturbations_per_eval=64
    )
    # the 300 samples in order, and nothing else (row 0, all ones, is the unperturbed song)
    assert seen["texts"] == ref_texts
    assert len(seen["audios"]) == len(ref_audios)
    for ours, theirs in zip(seen["audios"], ref_audios):
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert [f for f, _ in exp.local_exp[label]] == [int(f) for f, _ in ref[1]]
    np.testing.assert_allclose([w for _, w in exp.local_exp[label]], [w for _, w in ref[1]], atol=1e-8)
    assert exp.intercept[label] == pytest.approx(ref[0], abs=1e-8)
    assert exp.score[label] == pytest.approx(ref[2], abs=1e-8)
    assert exp.local_pred[label] == pytest.approx(ref[3][0], abs=1e-8)
    assert exp.feature_names[:2] == ["vocals_T0", "drums_T0"] and exp.feature_names[40:] == LINES


def test_forward_func_on_tokens_equals_predict_fn_on_texts(tmp_path):
    tokenizer = build_wordpiece(tmp_path)
    thunder = tokenizer.convert_tokens_to_ids("thunder")
    assert thunder != tokenizer.unk_token_id

    def forward(audio, input_ids, attention_mask):
        energy = audio[:, 0].reshape(audio.shape[0], 10, -1).pow(2).mean(-1)
        count = ((input_ids == thunder) & attention_mask.bool()).sum(-1).to(audio.dtype)
        return torch.stack([2 * energy[:, 2] + 1.5 * count, energy[:, 7], 0.1 * attention_mask.sum(-1).to(audio.dtype)], 1)

    def legacy(texts, waveforms):
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        audio = torch.stack([torch.as_tensor(w) for w in waveforms]).unsqueeze(1)
        return forward(audio, enc["input_ids"], enc["attention_mask"]).numpy()

    stems = make_stems()
    audio = StemFactorization(stems, sample_rate=4000, num_segments=10)
    masks = torch.bernoulli(torch.full((200, 40 + len(LINES)), 0.5), generator=torch.Generator().manual_seed(3))
    masks[0] = 1
    fast = MusicLime(forward, apply_softmax=True).explain(
        audio, LyricsFactorization(LYRICS, tokenizer, unit="line"), target=[0, 1], masks=masks, perturbations_per_eval=50)
    slow = MusicLime(predict_fn=legacy, apply_softmax=True).explain(
        audio, LyricsFactorization(LYRICS, None, unit="line"), target=[0, 1], masks=masks, perturbations_per_eval=50)
    for label in (0, 1):
        assert [f for f, _ in fast.local_exp[label]] == [f for f, _ in slow.local_exp[label]]
        np.testing.assert_allclose([w for _, w in fast.local_exp[label]], [w for _, w in slow.local_exp[label]], atol=1e-6)


def test_planted_cause_ranks_on_top_and_modalities():
    stems = make_stems()
    audio = StemFactorization(stems, sample_rate=4000, num_segments=10)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    explainer = MusicLime(predict_fn=predict_fn, distance_scale=100.0)
    exp = explainer.explain(audio, lyrics, target=[0], n_samples=600, generator=torch.Generator().manual_seed(0))
    top = [item["feature"] for item in exp.get_explanation(0, 3)]
    assert set(top) <= {"vocals_T2", "bass_T2", "drums_T2", "other_T2", LINES[0], LINES[3]}
    assert LINES[0] in top or LINES[3] in top
    audio_only = explainer.explain(audio, lyrics, target=[0], n_samples=300, modality="audio")
    assert audio_only.feature_types == ["audio"] * 40
    lyrics_only = explainer.explain(audio, lyrics, target=[0], n_samples=300, modality="lyrics")
    assert lyrics_only.feature_names == LINES
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert explainer.explain(audio, lyrics, target=[0], n_samples=100, generator=g()).local_exp == \
        explainer.explain(audio, lyrics, target=[0], n_samples=100, generator=g()).local_exp
    several = explainer.explain([audio, audio], [lyrics, lyrics], target=[0], n_samples=100, generator=g())
    assert len(several) == 2 and all(isinstance(e, Explanation) for e in several)


def test_explanation_exports(tmp_path):
    import json

    import soundfile as sf

    audio = StemFactorization(make_stems(), sample_rate=4000, num_segments=10)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    exp = MusicLime(predict_fn=predict_fn).explain(audio, lyrics, target=[0, 1], n_samples=200,
                                                    generator=torch.Generator().manual_seed(0))
    data = json.loads(exp.save_json(tmp_path / "e.json", num_features=5).read_text())
    top = data["explanations"]["label_0"]["top_features"]
    assert [t["rank"] for t in top] == [1, 2, 3, 4, 5] and set(top[0]) == {"rank", "type", "feature", "weight"}
    assert data["metadata"]["explanation_params"]["n_samples"] == 200
    assert data["metadata"]["explanation_params"]["seed"] == 0
    wav, rate = sf.read(tmp_path / "a.wav") if exp.save_audio(tmp_path / "a.wav", 0) else (None, None)
    assert rate == 4000 and wav.shape[0] == 4000
    png = exp.save_figure(tmp_path / "f.png", 0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    comps = exp.get_sorted_components(0, negative_components=False, num_components=3, return_indices=True)
    assert all(exp.weights[0, i] > 0 for i in comps)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_bad_input():
    audio = StemFactorization(make_stems(), sample_rate=4000, num_segments=10)
    lyrics = LyricsFactorization(LYRICS, None, unit="line")
    explainer = MusicLime(predict_fn=predict_fn)
    with pytest.raises(ValueError, match=r"expected modality in \['both', 'audio', 'lyrics'\], got 'video'"):
        explainer.explain(audio, lyrics, modality="video")
    with pytest.raises(ValueError, match="target 3 is out of range for a model with 3 classes"):
        explainer.explain(audio, lyrics, target=[3], n_samples=10)
    with pytest.raises(ValueError, match="expected the model to return 2 classes, got 3"):
        MusicLime(predict_fn=predict_fn, num_classes=2).explain(audio, lyrics, n_samples=10)
    with pytest.raises(ValueError, match="expected a lyrics factorization for modality='both', got None"):
        explainer.explain(audio, None)
    with pytest.raises(ValueError, match="expected exactly one of forward_func and predict_fn, got neither"):
        MusicLime()
    with pytest.raises(ValueError, match="expected masks with 45 features"):
        explainer.explain(audio, lyrics, masks=torch.ones(10, 44))


def test_saved_files_get_the_permissions_of_a_plain_open(tmp_path):
    import os

    audio = StemFactorization(make_stems(), sample_rate=4000, num_segments=10)
    exp = MusicLime(predict_fn=predict_fn).explain(audio, LyricsFactorization(LYRICS, None), target=[0], n_samples=50)
    umask = os.umask(0)
    os.umask(umask)
    for path in (exp.save_json(tmp_path / "e.json"), exp.save_figure(tmp_path / "f.png", 0)):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_memory_budget_caps_the_samples_per_call_and_changes_nothing():
    """A budget that holds 3 samples of the song per call: calls get 3 rows, the explanation is the same."""
    stems = torch.randn(4, 2, 6000, generator=torch.Generator().manual_seed(0))
    audio = StemFactorization(stems, sample_rate=6000, num_segments=3)
    rows = []

    def model(a):
        rows.append(a.shape[0])
        return torch.stack([a[:, 0, :2000].pow(2).mean(-1), a.pow(2).mean((1, 2))], 1)

    masks = torch.bernoulli(torch.full((40, 12), 0.5), generator=torch.Generator().manual_seed(1))
    masks[0] = 1
    explainer = MusicLime(model)
    full = explainer.explain(audio, target=[0, 1], masks=masks, modality="audio", perturbations_per_eval=40)
    assert rows == [40]
    rows.clear()
    per_sample = 2 * 6000 * 4  # C * T float32
    capped = explainer.explain(audio, target=[0, 1], masks=masks, modality="audio", perturbations_per_eval=40,
                               memory_budget=3 * per_sample + 100)
    assert rows == [3] * 13 + [1]
    torch.testing.assert_close(capped.weights, full.weights)
    assert capped.metadata["samples_per_call"] == 3 and capped.metadata["perturbations_per_eval"] == 40
    with pytest.raises(ValueError, match="expected memory_budget >= 1, got 0"):
        explainer.explain(audio, masks=masks, modality="audio", memory_budget=0)


def test_auto_budget_stops_each_song_on_its_own():
    """Two songs in one call: the one whose model output is nearly linear in its stems stops first."""
    g = torch.Generator().manual_seed(0)
    hard = StemFactorization(torch.randn(4, 1, 4000, generator=g), sample_rate=4000, num_segments=4)
    easy = StemFactorization(torch.randn(4, 1, 4000, generator=g) * 0.05, sample_rate=4000, num_segments=4)

    def model(a):
        e = a.pow(2).mean(-1)[:, 0]
        seg = a[:, 0, :1000].pow(2).mean(-1)
        return torch.stack([seg + 0.3 * e * seg, torch.tanh(3 * e)], 1)

    exps = MusicLime(model).explain(
        [hard, easy], target=[0, 1], n_samples="auto", modality="audio", perturbations_per_eval=50, tol=0.01,
        max_samples=2000, generator=[torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)],
        songs_per_batch=2,
    )
    used = [e.metadata["n_samples"] for e in exps]
    assert used[1] < used[0], used
    assert all(e.metadata["n_samples_rule"] == "auto" and e.metadata["tol"] == 0.01 for e in exps)
    # The same songs one by one give the same explanations (each song's masks come from its own generator).
    alone = [MusicLime(model).explain(a, target=[0, 1], n_samples="auto", modality="audio", perturbations_per_eval=50,
                                      tol=0.01, max_samples=2000, generator=torch.Generator().manual_seed(s))
             for a, s in ((hard, 1), (easy, 2))]
    for a, b in zip(exps, alone):
        assert a.metadata["n_samples"] == b.metadata["n_samples"]
        torch.testing.assert_close(a.weights, b.weights, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sampler", ["paired", "sobol"])
def test_samplers_keep_row_zero_the_song(sampler):
    audio = StemFactorization(torch.randn(4, 1, 800, generator=torch.Generator().manual_seed(0)), sample_rate=8000,
                              num_segments=2)
    seen = []

    def model(a):
        seen.append(a.clone())
        return torch.stack([a.pow(2).mean((1, 2)), a[:, 0, :400].pow(2).mean(-1)], 1)

    exp = MusicLime(model).explain(audio, target=[0], n_samples=64, modality="audio", sampler=sampler,
                                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0][0], audio.compose(torch.ones(1, 8))[0])
    assert exp.metadata["sampler"] == sampler
    with pytest.raises(ValueError, match=r"expected sampler in \['iid', 'paired', 'sobol'\], got 'leverage'"):
        MusicLime(model).explain(audio, target=[0], n_samples=64, modality="audio", sampler="leverage")
