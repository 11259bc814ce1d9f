"""Train the demo classifier on synthetic songs and write its weights, config and tokenizer.

``scripts/train_demo.py`` is the command-line front end; the shipped files in this package
were written by ``train(<this package's folder>)`` with the defaults.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..._atomic import atomic_write

from .data import (
    CAUSE_SEGMENTS,
    NUM_SEGMENTS,
    STEM_NAMES,
    TRIGGER_WORDS,
    DemoSong,
    lyric_pool,
    make_dataset,
    segment_edges,
    trigger_pool,
)
from .model import (
    CONFIG_NAME,
    DEMO_MAX_LENGTH,
    TOKENIZER_DIR,
    WEIGHTS_NAME,
    DemoClassifier,
    DemoConfig,
    encode_lyrics,
)

__all__ = ["build_tokenizer", "train"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_tokenizer(lines: Sequence[str] | None = None):
    """A WordPiece BERT-style tokenizer trained with ``tokenizers`` on the demo lyric lines.

    Args:
        lines: training text (default: the shared lyric pool and the trigger lines).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (``[CLS] ... [SEP]``, lower-cased,
        ``model_max_length`` = :data:`DEMO_MAX_LENGTH`).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if lines is None:
        lines = lyric_pool() + trigger_pool()
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=512, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(list(lines), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=DEMO_MAX_LENGTH,
    )


def _save(out_dir: pathlib.Path, model: DemoClassifier, tokenizer) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_NAME, lambda p: torch.save(state, p), mode=None)
    text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(out_dir / CONFIG_NAME, lambda f: f.write(text))
    tok_dir = out_dir / TOKENIZER_DIR
    tok_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".tokenizer.") as tmp:
        tokenizer.save_pretrained(tmp)
        for f in sorted(pathlib.Path(tmp).iterdir()):
            os.replace(f, tok_dir / f.name)


@torch.no_grad()
def _accuracy(
    model: DemoClassifier, audio: Tensor, ids: Tensor, mask: Tensor, labels: Tensor, batch_size: int
) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        sl = slice(i, i + batch_size)
        correct += int((model(audio[sl], ids[sl], mask[sl]).argmax(-1) == labels[sl]).sum())
    return correct / len(labels)


def _tensors(songs: Sequence[DemoSong], tokenizer) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    audio = torch.stack([s.mixture for s in songs])
    ids, mask = encode_lyrics(tokenizer, [s.lyrics for s in songs])
    return audio, ids, mask, torch.tensor([s.label for s in songs])


def _augment(
    songs: Sequence[DemoSong],
    stems: Tensor,
    seg_of_sample: Tensor,
    tokenizer,
    g: torch.Generator,
    p_song: float,
    p_drop: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """LIME-style perturbations that leave the label unchanged, for a batch of songs.

    Returns the model inputs and the ``(b, G)`` mask of drum segments kept.

    With probability ``p_song`` a song gets stem-segments zeroed and lyric lines removed,
    each with probability ``p_drop``. The planted-cause features (drums in the cause
    segments, trigger lines) are never removed, in either class, so the model is taught
    that the rest does not matter but is never shown what removing the cause looks like.
    """
    b, S, G = stems.shape[0], stems.shape[1], NUM_SEGMENTS
    chosen = torch.rand(b, 1, 1, generator=g) < p_song
    keep = (torch.rand(b, S, G, generator=g) >= p_drop) | ~chosen
    keep[:, STEM_NAMES.index("drums"), list(CAUSE_SEGMENTS)] = True
    audio = (stems * keep[:, :, seg_of_sample].to(stems.dtype)).sum(dim=1, keepdim=True)
    lyrics = []
    for i, song in enumerate(songs):
        lines = song.lines
        if bool(chosen[i]):
            drop = (torch.rand(len(lines), generator=g) < p_drop).tolist()
            lines = [line for j, line in enumerate(lines) if j in song.cause_lines or not drop[j]]
        lyrics.append("\n".join(lines))
    ids, mask = encode_lyrics(tokenizer, lyrics)
    return audio, ids, mask, keep[:, STEM_NAMES.index("drums")]


def _cue_targets(songs: Sequence[DemoSong]) -> tuple[Tensor, Tensor]:
    """Ground truth for the auxiliary heads: dense drums per segment ``(n, G)`` (cause and
    decoy segments alike) and trigger word present ``(n, len(TRIGGER_WORDS))``."""
    dense = torch.zeros(len(songs), NUM_SEGMENTS)
    words = torch.zeros(len(songs), len(TRIGGER_WORDS))
    for i, song in enumerate(songs):
        dense[i, song.cause_segments + song.decoy_segments] = 1.0
        present = {w for j in song.cause_lines for w in song.lines[j].split()}
        words[i] = torch.tensor([float(w in present) for w in TRIGGER_WORDS])
    return dense, words


def train(
    out_dir: str | os.PathLike[str] | None,
    n_songs: int = 800,
    epochs: int = 40,
    seed: int = 0,
    *,
    n_held_out: int = 200,
    batch_size: int = 32,
    lr: float = 3e-3,
    augment: bool = True,
    aux_weight: float = 0.5,
    log: Callable[[str], None] | None = print,
) -> dict[str, float]:
    """Train :class:`DemoClassifier` on ``make_dataset(n_songs, seed)`` and save it to ``out_dir``.

    Held-out songs come from ``make_dataset(n_held_out, seed + 1)``. The recipe:

    - with ``augment``, half the songs of every batch get LIME-style label-preserving
      perturbations (stem-segments zeroed, lyric lines removed, never a part of the planted
      cause; see ``_augment``), so the model stays calibrated on the kind of inputs an
      explainer feeds it, without ever being shown what removing the cause looks like;
    - with ``aux_weight > 0``, two training-only linear heads supervise the pooled audio
      vector with "dense drums in segment g" (10 targets) and the pooled text vector with
      "trigger word w present" (2 targets), from the planted ground truth; the first quarter
      of the epochs trains on these targets only, then the label loss joins. Without them
      the encoders tend to settle on a part of the cause (one trigger word) and miss the
      rest. The heads are not saved.

    The global RNG is forked, so calling this leaves torch's global random state as it was.

    Args:
        out_dir: folder that receives ``weights.pt``, ``config.json`` and ``tokenizer/``,
            each file written atomically (``None``: save nothing).
        n_songs: training songs.
        epochs: passes over the training songs.
        seed: seeds the data, the initialisation, the augmentation and the batch order.
        n_held_out: held-out songs for the reported accuracy (0: none).
        batch_size: songs per optimisation step.
        lr: Adam learning rate (cosine-decayed to 5% over the run).
        augment: apply the label-preserving perturbations.
        aux_weight: weight of the auxiliary losses that supervise the encoders with the
            planted ground truth (dense drums per segment, trigger words present); the
            auxiliary heads are dropped after training (0: label only).
        log: where progress lines go (``None``: silent).

    Returns:
        ``{"train_accuracy", "held_out_accuracy", "seconds"}`` on the unperturbed songs
        (held-out is NaN with no held-out songs).

    Raises:
        ValueError: on ``n_songs < 2``, ``epochs < 1`` or ``n_held_out < 0``.
    """
    if n_songs < 2:
        raise ValueError(f"expected n_songs >= 2, got {n_songs}")
    if epochs < 1:
        raise ValueError(f"expected epochs >= 1, got {epochs}")
    if n_held_out < 0:
        raise ValueError(f"expected n_held_out >= 0, got {n_held_out}")
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    tokenizer = build_tokenizer()
    # Synthesis is thousands of small ops: one thread is faster than two fighting over a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        songs = make_dataset(n_songs, seed)
        held = make_dataset(n_held_out, seed + 1) if n_held_out > 0 else []
    finally:
        torch.set_num_threads(threads)
    audio, ids, mask, labels = _tensors(songs, tokenizer)
    stems = torch.stack([s.stems[:, 0] for s in songs]) if augment else None  # (n, S, T)
    edges = segment_edges(audio.shape[-1])
    seg_of_sample = torch.repeat_interleave(torch.arange(NUM_SEGMENTS), torch.tensor(edges).diff())
    say(f"made {len(songs)} training and {len(held)} held-out songs in {time.perf_counter() - start:.1f} s")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = DemoConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        model = DemoClassifier(config)
        with torch.no_grad():  # per-bin log-mel statistics of the training mixtures
            mels = torch.cat([model.log_mel(audio[i : i + 256]) for i in range(0, len(audio), 256)])
            model.mel_mean.copy_(mels.mean(dim=(0, 1)))
            model.mel_std.copy_(mels.std(dim=(0, 1)).clamp_min(1e-3))
            del mels
        # Auxiliary heads, used in training only and not saved: from the pooled audio vector,
        # which segments have dense drums; from the pooled text vector, which trigger words
        # occur. They give every song 12 more targets than its one label, so the encoders
        # learn the five parts of the cause separately and the fusion MLP learns their AND.
        aux = torch.nn.ModuleDict(
            {
                "audio": torch.nn.Linear(config.hidden_size, NUM_SEGMENTS),
                "text": torch.nn.Linear(config.hidden_size, len(TRIGGER_WORDS)),
            }
        )
        dense, words = _cue_targets(songs)
        opt = torch.optim.Adam([*model.parameters(), *aux.parameters()], lr=lr)
        steps = epochs * ((len(songs) + batch_size - 1) // batch_size)
        cosine = lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / steps))  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            total = torch.zeros(3)
            for idx in torch.randperm(len(songs), generator=gen).split(batch_size):
                if stems is not None:
                    a_in, i_in, m_in, drums_kept = _augment(
                        [songs[i] for i in idx.tolist()], stems[idx], seg_of_sample, tokenizer, gen, 0.5, 0.3
                    )
                else:
                    a_in, i_in, m_in, drums_kept = audio[idx], ids[idx], mask[idx], torch.ones(len(idx), NUM_SEGMENTS)
                a_vec, t_vec = model.embed_audio(a_in), model.embed_text(i_in, m_in)
                logits = model.head(torch.cat([a_vec, t_vec], dim=-1))  # = model(a_in, i_in, m_in)
                parts = torch.stack(
                    [
                        torch.nn.functional.cross_entropy(logits, labels[idx]),
                        bce(aux["audio"](a_vec), dense[idx] * drums_kept),
                        bce(aux["text"](t_vec), words[idx]),
                    ]
                )
                # the first quarter of the epochs trains the encoders on the auxiliary targets only
                label_weight = 0.0 if aux_weight > 0 and epoch < epochs // 4 else 1.0
                loss = label_weight * parts[0] + aux_weight * parts[1:].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total = total + parts.detach() * len(idx)
            label_loss, drums_loss, words_loss = (total / len(songs)).tolist()
            say(
                f"epoch {epoch + 1}/{epochs}: label loss {label_loss:.4f}, auxiliary losses: drums "
                f"{drums_loss:.4f}, words {words_loss:.4f} ({time.perf_counter() - start:.0f} s)"
            )

    train_acc = _accuracy(model, audio, ids, mask, labels, 128)
    held_acc = float("nan")
    if held:
        held_acc = _accuracy(model, *_tensors(held, tokenizer), 128)
    seconds = time.perf_counter() - start
    say(f"train accuracy {train_acc:.3f}, held-out accuracy {held_acc:.3f} ({seconds:.0f} s)")
    if out_dir is not None:
        _save(pathlib.Path(out_dir), model.eval(), tokenizer)
        say(f"wrote {WEIGHTS_NAME}, {CONFIG_NAME} and {TOKENIZER_DIR}/ to {out_dir}")
    return {"train_accuracy": train_acc, "held_out_accuracy": held_acc, "seconds": seconds}
