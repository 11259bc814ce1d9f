"""Captum's ``LimeBase`` text recipe on a small transformers classifier, with ``torchlime.LimeBase``.

Captum's LIME text tutorial explains a classifier with ``LimeBase`` over token presence:
``perturb_func`` draws a binary vector (1 keeps a word, 0 removes it),
``from_interp_rep_transform`` removes the switched-off words from ``input_ids`` and a
similarity function weights each sample. This script runs that recipe on

- a WordPiece tokenizer trained here with the ``tokenizers`` library on a built-in corpus
  and wrapped in ``transformers.PreTrainedTokenizerFast`` (nothing is downloaded);
- a tiny ``BertForSequenceClassification`` trained for a few seconds on synthetic movie
  reviews: filler words, plus one to three cue words ("brilliant", "dull", ...) in the
  positive and negative ones (neutral ones have none);

then

1. explains one review with ``captum.attr.LimeBase`` and with ``torchlime.LimeBase``, same
   callables, same ``torch.manual_seed``: the masks are the same, and so are the
   coefficients (the per-sample ``perturb_func`` is called once per sample by both; the
   transform and the similarity are marked ``torchlime.batched``, so torchlime builds
   ``perturbations_per_eval`` inputs per call and fits the surrogate in one solve);
2. runs the fully batched path (a batched ``perturb_func`` drawing every mask in one call
   from a ``torch.Generator``);
3. checks the explanation with deletion: remove the top-k words, watch the predicted
   class's probability fall, against removing k random words
   (``torchlime.evaluation.faithfulness``), and writes a figure of the word weights and the
   deletion curves.

Words are the interpretable features (the WordPiece pieces of a word go together; with
this corpus every word is one token). The similarity is lime's text kernel on the
interpretable representation: the cosine distance of the mask to the all-ones mask, in an
exponential kernel of width 0.25 (lime's width 25 on distances x 100).

Run: python examples/text_limebase.py [--reviews 512] [--steps 150] [--n-samples 1000] [--out text_limebase_out]
(about 10 s on 2 idle CPU cores with the defaults).
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Sequence

import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import LimeBase as CaptumLimeBase
from torch import Tensor

import torchlime
from torchlime.evaluation import faithfulness
from torchlime.functional import bernoulli_masks, cosine_distance, exp_kernel

POSITIVE = ["brilliant", "wonderful", "superb", "delightful", "moving", "gripping"]
NEGATIVE = ["dull", "awful", "tedious", "clumsy", "dreadful", "bland"]
FILLER = (
    "the a this that movie film story plot cast acting music score ending scenes director script "
    "was is felt seemed and but with its of in quite rather very long short second first half"
).split()
CLASS_NAMES = ["negative", "neutral", "positive"]
#: The reviews explained: one of each class, cue words among filler.
REVIEWS = [
    "the story was long but the cast was brilliant and the score superb",
    "the film felt long and the script was dull with a rather clumsy ending",
]
KERNEL_WIDTH = 0.25


# -- data, tokenizer, model -----------------------------------------------------------------


def make_reviews(n: int, generator: torch.Generator) -> tuple[list[str], Tensor]:
    """``n`` synthetic reviews, labels in turn: 6-12 filler words, and 1-3 cue words of the
    label for a negative or positive review (a neutral one has none)."""
    texts, labels = [], []
    for i in range(n):
        label = i % 3
        cues = [NEGATIVE, [], POSITIVE][label]
        words = [FILLER[j] for j in torch.randint(len(FILLER), (int(torch.randint(6, 13, (), generator=generator)),),
                                                  generator=generator)]
        for _ in range(int(torch.randint(1, 4, (), generator=generator)) if cues else 0):
            at = int(torch.randint(len(words) + 1, (), generator=generator))
            words.insert(at, cues[int(torch.randint(len(cues), (), generator=generator))])
        texts.append(" ".join(words))
        labels.append(label)
    return texts, torch.tensor(labels)


def train_tokenizer(corpus: Sequence[str]):
    """A BERT-style WordPiece tokenizer trained locally, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(list(corpus), trainer=trainers.WordPieceTrainer(
        vocab_size=256, special_tokens=special, show_progress=False))
    # The trainer breaks ties between merges differently from run to run (its intermediate
    # pieces and its numbering change). For ids, and so a trained model, that are the same
    # every run: keep the tokens the corpus is tokenized with (here every word is one token)
    # and the alphabet (single characters, for unseen words), numbered in sorted order.
    used = {tok.id_to_token(i) for encoding in tok.encode_batch(list(corpus)) for i in encoding.ids}
    alphabet = {t for t in tok.get_vocab() if len(t.removeprefix("##")) == 1}
    vocab = special + sorted((used | alphabet) - set(special))
    tok.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def train_classifier(tokenizer, texts: list[str], labels: Tensor, *, steps: int, seed: int, lr: float = 2e-3):
    """A tiny ``BertForSequenceClassification`` (2 layers, width 32), trained with Adam; eval mode."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=3, pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.05,
    )
    model = BertForSequenceClassification(config)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(texts), (32,), generator=order)
        out = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx], labels=labels[idx])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return model.eval()


def probabilities(model, pad_id: int):
    """``forward_func(input_ids (n, Q)) -> (n, 3)`` class probabilities; padding is masked out."""

    @torch.no_grad()
    def forward(input_ids: Tensor) -> Tensor:
        return model(input_ids=input_ids, attention_mask=(input_ids != pad_id).long()).logits.softmax(-1)

    return forward


# -- the LimeBase callables (Captum's contract: called once per sample) ----------------------


def bernoulli_perturb(input_ids: Tensor, *, num_words: int, **kwargs) -> Tensor:
    """One binary vector ``(1, F)``: each word kept or removed with probability 1/2 (global RNG)."""
    return torch.bernoulli(torch.full((1, num_words), 0.5)).long()


def remove_words(masks: Tensor, input_ids: Tensor, *, word_ids: Tensor, pad_id: int, **kwargs) -> Tensor:
    """The interpretable representation transform: drop the switched-off words from ``input_ids``.

    Args:
        masks: ``(c, F)`` binary, 1 keeps word f (``(1, F)`` for one sample).
        input_ids: ``(1, Q)`` the tokenized review, ``[CLS] ... [SEP]``.
        word_ids: ``(Q,)`` the word of every token, -1 for the special tokens (always kept).
        pad_id: the padding id.

    Returns:
        ``(c, Q)`` ids: the kept tokens moved to the front in their order (as if the text had
        been written without the removed words), padding after them.
    """
    keep = masks.bool()[:, word_ids.clamp_min(0)] | (word_ids < 0)  # (c, Q)
    order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices  # kept tokens first
    packed = input_ids.expand(keep.shape).gather(-1, order)
    position = torch.arange(keep.shape[-1], device=keep.device)
    return packed.masked_fill(position >= keep.sum(-1, keepdim=True), pad_id)


def interp_similarity(input_ids: Tensor, perturbed: Tensor, masks: Tensor, **kwargs) -> Tensor:
    """lime's text kernel on the interpretable representation: ``(c,)`` weights of ``(c, F)`` masks."""
    return exp_kernel(cosine_distance(masks, torch.ones_like(masks)), KERNEL_WIDTH)


# The same two functions marked batched (they already take c samples at once): torchlime
# then calls them once per chunk of ``perturbations_per_eval`` samples, Captum once per sample.


@torchlime.batched
def remove_words_batched(masks: Tensor, input_ids: Tensor, **kwargs) -> Tensor:
    """:func:`remove_words` for a chunk ``(c, F)`` of masks."""
    return remove_words(masks, input_ids, **kwargs)


@torchlime.batched
def interp_similarity_batched(input_ids: Tensor, perturbed: Tensor, masks: Tensor, **kwargs) -> Tensor:
    """:func:`interp_similarity` for a chunk ``(c, F)`` of masks."""
    return interp_similarity(input_ids, perturbed, masks, **kwargs)


@torchlime.batched
def bernoulli_perturb_batched(input_ids: Tensor, *, n_samples: int, generator=None, num_words: int, **kwargs) -> Tensor:
    """All ``(n, F)`` masks in one draw from ``generator``."""
    return bernoulli_masks(n_samples, num_words, generator=generator)


# -- explaining ------------------------------------------------------------------------------


def encode(tokenizer, text: str) -> tuple[Tensor, Tensor, list[str]]:
    """``input_ids (1, Q)``, ``word_ids (Q,)`` (-1 on special tokens) and the words of ``text``."""
    enc = tokenizer(text, return_tensors="pt")
    word_ids = torch.tensor([-1 if w is None else w for w in enc.word_ids(0)])
    words = [text[slice(*enc.word_to_chars(0, w))] for w in range(int(word_ids.max()) + 1)]
    return enc["input_ids"], word_ids, words


def run(
    reviews: int = 512,
    steps: int = 150,
    n_samples: int = 1000,
    *,
    perturbations_per_eval: int = 100,
    max_k: int = 4,
    n_random: int = 64,
    seed: int = 0,
    out: str | pathlib.Path | None = "text_limebase_out",
    texts: Sequence[str] = REVIEWS,
    log=print,
) -> dict:
    """Everything the script does; returns the numbers the test checks (see the module docstring)."""
    start = time.perf_counter()
    corpus, labels = make_reviews(reviews, torch.Generator().manual_seed(seed))
    tokenizer = train_tokenizer(corpus)
    model = train_classifier(tokenizer, corpus, labels, steps=steps, seed=seed)
    forward = probabilities(model, tokenizer.pad_token_id)
    test_texts, test_labels = make_reviews(200, torch.Generator().manual_seed(seed + 1))
    enc = tokenizer(test_texts, padding=True, return_tensors="pt")
    accuracy = float((forward(enc["input_ids"]).argmax(-1) == test_labels).float().mean())
    log(f"WordPiece tokenizer ({len(tokenizer)} tokens) and a 2-layer BERT trained on {reviews} reviews in "
        f"{time.perf_counter() - start:.1f} s; held-out accuracy {accuracy:.2f}")

    # Captum's recipe, and torchlime's drop-in with the same callables: the per-sample
    # perturb_func draws from torch's global RNG, once per sample, for both.
    captum_explainer = CaptumLimeBase(
        forward, SkLearnRidge(alpha=1.0), interp_similarity, bernoulli_perturb, True, remove_words, None,
    )
    torchlime_explainer = torchlime.LimeBase(
        forward, torchlime.models.Ridge(alpha=1.0), interp_similarity_batched, bernoulli_perturb, True,
        remove_words_batched, None,
    )
    batched_explainer = torchlime.LimeBase(
        forward, torchlime.models.Ridge(alpha=1.0), interp_similarity_batched, bernoulli_perturb_batched, True,
        remove_words_batched, None,
    )
    results: dict = {"accuracy": accuracy, "explanations": []}
    for i, text in enumerate(texts):
        input_ids, word_ids, words = encode(tokenizer, text)
        kw = dict(num_words=len(words), word_ids=word_ids, pad_id=tokenizer.pad_token_id)
        target = int(forward(input_ids).argmax(-1))
        settings = dict(target=target, n_samples=n_samples, perturbations_per_eval=perturbations_per_eval, **kw)
        if i == 0:  # one small untimed call each, so the timings below leave out first-call set-up
            for explainer in (captum_explainer, torchlime_explainer, batched_explainer):
                explainer.attribute(input_ids, **dict(settings, n_samples=perturbations_per_eval))
        log(f"\n\"{text}\"\npredicted {CLASS_NAMES[target]} (p = {float(forward(input_ids)[0, target]):.3f}); "
            f"{len(words)} words")

        # 1. Captum and torchlime, same callables, same seed.
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        captum_coef = captum_explainer.attribute(input_ids, **settings)
        t_captum = time.perf_counter() - t0
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        ours = torchlime_explainer.attribute(input_ids, **settings)
        t_ours = time.perf_counter() - t0
        # 2. Fully batched: all masks drawn at once from a generator. (On the CPU a generator
        # seeded s draws the same (n, F) masks as n draws of (1, F) after torch.manual_seed(s),
        # so the column comes out the same here.)
        t0 = time.perf_counter()
        batched = batched_explainer.attribute(input_ids, generator=torch.Generator().manual_seed(seed), **settings)
        t_batched = time.perf_counter() - t0
        difference = float((ours - captum_coef).abs().max())
        log(f"{'word':<12}{'captum':>10}{'torchlime':>11}{'batched':>10}")
        for w, a, b, c in zip(words, captum_coef[0].tolist(), ours[0].tolist(), batched[0].tolist()):
            log(f"{w:<12}{a:>10.4f}{b:>11.4f}{c:>10.4f}")
        log(f"max |torchlime - captum| = {difference:.1e}; time: captum {t_captum * 1e3:.0f} ms, torchlime "
            f"{t_ours * 1e3:.0f} ms (per-sample perturb_func), {t_batched * 1e3:.0f} ms (batched perturb_func)")

        # 3. Deletion: remove the top-k words (by weight for the predicted class) vs k random words.
        def masked_forward(masks: Tensor) -> Tensor:
            return forward(remove_words(masks, input_ids, **kw))

        k = min(max_k, len(words))
        check = faithfulness(masked_forward, batched[0], target, max_k=k, n_random=n_random,
                             generator=torch.Generator().manual_seed(seed + 2))
        log(f"deletion, p({CLASS_NAMES[target]}) with k words removed:")
        log(f"  {'k':>3}{'top-k':>8}{'random':>8}  removed")
        for j in range(k + 1):
            removed = ", ".join(words[f] for f in check.order[:j].tolist())
            log(f"  {j:>3}{float(check.deletion[j]):>8.3f}{float(check.random_deletion[j]):>8.3f}  {removed}")
        results["explanations"].append(dict(
            text=text, words=words, target=target, captum=captum_coef[0], torchlime=ours[0], batched=batched[0],
            max_difference=difference, deletion=check.deletion, random_deletion=check.random_deletion,
            aopc=float(check.aopc), random_aopc=float(check.random_aopc),
        ))
    if out is not None:
        results["figure"] = plot(results["explanations"], pathlib.Path(out) / "text_limebase.png")
        log(f"\nwrote {results['figure']}")
    return results


def plot(explanations: list[dict], path: pathlib.Path) -> pathlib.Path:
    """One row per review: its word weights (bars) and its deletion curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = len(explanations)
    fig, axes = plt.subplots(rows, 2, figsize=(13, 3.6 * rows), gridspec_kw={"width_ratios": [2.2, 1]}, squeeze=False)
    for (bars, curve), e in zip(axes, explanations):
        cls = CLASS_NAMES[e["target"]]
        w = e["batched"].tolist()
        bars.bar(range(len(w)), w, color=["tab:green" if v > 0 else "tab:red" for v in w])
        bars.set_xticks(range(len(w)), e["words"], rotation=40, ha="right")
        bars.axhline(0, color="black", lw=0.8)
        bars.set_ylabel(f"LIME weight, p({cls})")
        bars.set_title(f"\"{e['text']}\" (predicted {cls})", fontsize=10)
        steps = range(len(e["deletion"]))
        curve.plot(steps, e["deletion"].tolist(), "o-", label=f"top-k words removed (AOPC {e['aopc']:.2f})")
        curve.plot(steps, e["random_deletion"].tolist(), "s--", color="gray",
                   label=f"k random words removed (AOPC {e['random_aopc']:.2f})")
        curve.set_xticks(list(steps))
        curve.set_ylim(-0.02, 1.02)
        curve.set_xlabel("k, words removed")
        curve.set_ylabel(f"p({cls})")
        curve.set_title("deletion check", fontsize=10)
        curve.legend(fontsize=8, loc="center right")
    fig.suptitle("torchlime.LimeBase on a small BERT classifier (words as features)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=512, help="training reviews (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of 32 reviews (default: %(default)s)")
    parser.add_argument("--n-samples", type=int, default=1000, help="LIME samples (default: %(default)s)")
    parser.add_argument("--perturbations-per-eval", type=int, default=100,
                        help="samples per forward call (default: %(default)s)")
    parser.add_argument("--max-k", type=int, default=4, help="deletion steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--out", default="text_limebase_out", help="folder for the figure (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: %(default)s; the model is tiny, more only add overhead)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"expected --threads >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    run(args.reviews, args.steps, args.n_samples, perturbations_per_eval=args.perturbations_per_eval,
        max_k=args.max_k, seed=args.seed, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
