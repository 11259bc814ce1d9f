"""Captum's LLMAttribution over torchlime's Lime and KernelShap (TextTokenInput and
TextTemplateInput) equals it over Captum's own, on the same seed: a tiny GPT-2 built from a
config and a word-level tokenizer trained here (nothing from a hub)."""

import pytest
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Lime as CaptumLime
from captum.attr import LLMAttribution, TextTemplateInput, TextTokenInput

import torchlime
from torchlime.models import Ridge

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CORPUS = [
    "dave lives in palm coast , fl and is a lawyer .",
    "his personal interests include sailing and music .",
    "alice lives in paris and is a doctor .",
]
PROMPT = "dave lives in palm coast , fl and is a lawyer ."
TARGET = "his personal"


@pytest.fixture
def one_thread():
    """A tiny model runs no faster on two threads, and much slower on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llm():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    special = ["<unk>", "<bos>", "<eos>", "<pad>"]
    tok.train_from_iterator(CORPUS, trainer=trainers.WordLevelTrainer(special_tokens=special, show_progress=False))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=1, eos_token_id=2, pad_token_id=3)
    return GPT2LMHeadModel(config).eval(), tokenizer


def inputs(tokenizer):
    return [
        TextTokenInput(PROMPT, tokenizer),
        TextTemplateInput("{} lives in {} , fl and is a {} .", values=["dave", "palm coast", "lawyer"]),
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda cls, model: cls(model),
        lambda cls, model: cls(model, interpretable_model=(Ridge if cls is torchlime.Lime else SkLearnRidge)(alpha=1e-3)),
        lambda cls, model: cls(model),
    ],
    ids=["lime", "lime-ridge", "kernel_shap"],
)
def test_llm_attribution_over_torchlime_equals_captum(llm, make, request, one_thread):
    model, tokenizer = llm
    shap = request.node.callspec.id == "kernel_shap"
    ours_cls, ref_cls = (torchlime.KernelShap, CaptumKernelShap) if shap else (torchlime.Lime, CaptumLime)
    results = []
    for cls in (ours_cls, ref_cls):
        got = []
        for inp, by_tokens in zip(inputs(tokenizer), (True, False)):  # token-by-token and one-pass forwards
            torch.manual_seed(3)
            out = LLMAttribution(make(cls, model), tokenizer).attribute(
                inp, target=TARGET, n_samples=20, forward_in_tokens=by_tokens
            )
            assert out.token_attr is None and out.input_tokens == inp.values
            got.append(out.seq_attr)
        results.append(got)
    for a, b in zip(*results):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # float32 scikit-learn fits in Captum
    if request.node.callspec.id != "lime":  # lime's Lasso(0.01) zeroes these small effects
        assert all(r.abs().sum() > 0 for r in results[0])
