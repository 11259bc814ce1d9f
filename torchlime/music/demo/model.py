"""The demo classifier: a small audio + lyrics model made of ``transformers`` components.

Shape glossary: n songs (or perturbation samples), C channels, T audio samples, Q tokens,
M mel bins, frames spectrogram frames.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch
import torchaudio
from torch import Tensor, nn
from transformers import BertConfig, BertModel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .data import DemoSong

__all__ = [
    "DEMO_SAMPLE_RATE",
    "DEMO_MAX_LENGTH",
    "DEMO_CLASSES",
    "DemoConfig",
    "DemoClassifier",
    "load_demo",
    "encode_lyrics",
    "collate",
]

DEMO_SAMPLE_RATE = 8000
"""Sample rate (Hz) the demo classifier expects its audio at."""
DEMO_MAX_LENGTH = 128
"""Longest token sequence (with ``[CLS]``/``[SEP]``) the demo classifier reads."""
DEMO_CLASSES: tuple[str, ...] = ("negative", "positive")
"""Class names, by logit index."""

WEIGHTS_NAME = "weights.pt"
CONFIG_NAME = "config.json"
TOKENIZER_DIR = "tokenizer"


@dataclass
class DemoConfig:
    """Hyper-parameters of :class:`DemoClassifier` (saved as ``config.json``)."""

    vocab_size: int
    pad_token_id: int = 0
    sample_rate: int = DEMO_SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 32
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 64
    max_frames: int = 256
    max_length: int = DEMO_MAX_LENGTH
    num_classes: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"expected DemoConfig keys among {sorted(known)}, got unknown {unknown}")
        return cls(**d)


def _bert(cfg: DemoConfig, vocab_size: int, max_positions: int) -> BertModel:
    bert_cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=max_positions,
        type_vocab_size=1,
        pad_token_id=cfg.pad_token_id if vocab_size > cfg.pad_token_id else 0,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    return BertModel(bert_cfg, add_pooling_layer=False)


class DemoClassifier(nn.Module):
    """Two-class audio + lyrics classifier for the synthetic demo songs.

    Audio branch: ``torchaudio.transforms.MelSpectrogram`` (computed inside ``forward`` on
    the input's device), log, per-bin standardisation with statistics stored as buffers, a
    linear projection of each frame and a tiny ``transformers.BertModel`` fed with
    ``inputs_embeds``, mean-pooled over frames. Text branch: a tiny ``BertModel`` on the
    token ids, max-pooled over the tokens the attention mask keeps. Fusion: an MLP on the two pooled
    vectors, giving logits for :data:`DEMO_CLASSES`.

    Args:
        config: the hyper-parameters.

    Example:
        >>> model = DemoClassifier(DemoConfig(vocab_size=100)).eval()
        >>> audio = torch.randn(3, 1, 48000) * 0.1
        >>> ids = torch.randint(5, 100, (3, 20))
        >>> model(audio, ids, torch.ones_like(ids)).shape
        torch.Size([3, 2])
    """

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        self.config = config
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels
        )
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))
        self.frame_proj = nn.Linear(config.n_mels, config.hidden_size)
        self.audio_encoder = _bert(config, vocab_size=1, max_positions=config.max_frames)
        self.text_encoder = _bert(config, vocab_size=config.vocab_size, max_positions=config.max_length)
        self.head = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_size, config.num_classes),
        )

    def log_mel(self, audio: Tensor) -> Tensor:
        """Standardised log-mel frames ``(n, frames, M)`` of audio ``(n, C, T)`` (channels averaged)."""
        if audio.dim() != 3:
            raise ValueError(f"expected audio of shape (n, C, T), got {tuple(audio.shape)}")
        x = audio.to(self.mel_mean.dtype).mean(dim=1)
        mel = torch.log(self.melspec(x) + 1e-5)  # (n, M, frames)
        return ((mel - self.mel_mean[:, None]) / self.mel_std[:, None]).transpose(1, 2)

    def embed_audio(self, audio: Tensor) -> Tensor:
        """Pooled audio vectors ``(n, hidden)`` for audio ``(n, C, T)``."""
        frames = self.log_mel(audio)
        if frames.shape[1] > self.config.max_frames:
            seconds = self.config.max_frames * self.config.hop_length / self.config.sample_rate
            raise ValueError(
                f"expected at most {self.config.max_frames} frames (about {seconds:.1f} s at "
                f"{self.config.sample_rate} Hz), got {frames.shape[1]} from audio of shape {tuple(audio.shape)}"
            )
        h = self.audio_encoder(inputs_embeds=self.frame_proj(frames)).last_hidden_state
        return h.mean(dim=1)

    def embed_audio_windows(self, audio: Tensor) -> Tensor:
        """Pooled audio vectors ``(n, hidden)`` for audio ``(n, C, T)`` of any length.

        Up to ``max_frames`` frames this is :meth:`embed_audio`. A longer song's frames are
        cut into ``k = ceil(frames / max_frames)`` consecutive windows of as equal a length
        as possible (at most ``max_frames``, lengths differing by at most one frame), each
        window is encoded on its own (attention stays inside the window, as in training),
        and the vector is the mean over every frame of every window: the song is heard
        whole, windows in proportion to their length.
        """
        frames = self.log_mel(audio)  # (n, frames, M)
        n, length, mels = frames.shape
        limit = self.config.max_frames
        if length <= limit:
            h = self.audio_encoder(inputs_embeds=self.frame_proj(frames)).last_hidden_state
            return h.mean(dim=1)
        k = -(-length // limit)
        starts = torch.arange(k, device=frames.device) * length // k
        sizes = torch.diff(starts, append=starts.new_tensor([length]))  # (k,) each <= limit
        width = int(sizes.max())
        offset = torch.arange(width, device=frames.device)
        valid = offset[None, :] < sizes[:, None]  # (k, width)
        index = (starts[:, None] + offset[None, :]).clamp(max=length - 1).reshape(-1)
        windows = frames[:, index].reshape(n * k, width, mels)
        attention = valid.long().repeat(n, 1)  # (n * k, width)
        h = self.audio_encoder(inputs_embeds=self.frame_proj(windows), attention_mask=attention).last_hidden_state
        h = h.reshape(n, k * width, -1) * valid.reshape(1, k * width, 1)
        return h.sum(dim=1) / length

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled text vectors ``(n, hidden)`` for ``input_ids`` and ``attention_mask`` ``(n, Q)``."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                "expected input_ids and attention_mask of the same shape (n, Q), got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
            )
        if input_ids.shape[1] > self.config.max_length:
            raise ValueError(f"expected at most {self.config.max_length} tokens, got {input_ids.shape[1]}")
        h = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Masked max over tokens: it detects a word whatever the length of the lyrics, where a
        # masked mean dilutes it by the number of tokens and [CLS] attention learnt to find one
        # trigger word but not both (softmax attention splits between two equal keys).
        pad = (attention_mask == 0).unsqueeze(-1)
        return h.masked_fill(pad, torch.finfo(h.dtype).min).amax(dim=1)

    def forward(self, audio: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(n, 2)``.

        Args:
            audio: ``(n, C, T)`` waveforms at ``config.sample_rate`` (channels are averaged).
            input_ids: ``(n, Q)`` token ids from the demo tokenizer.
            attention_mask: ``(n, Q)`` 1 for real tokens, 0 for padding.

        Returns:
            ``(n, 2)`` logits (softmax them for probabilities).
        """
        if audio.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"expected as many audio rows as token rows, got {audio.shape[0]} and {input_ids.shape[0]}"
            )
        return self.head(torch.cat([self.embed_audio(audio), self.embed_text(input_ids, attention_mask)], dim=-1))

    def forward_windows(self, audio: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(n, 2)`` for audio of any length (:meth:`embed_audio_windows`).

        Equal to :meth:`forward` for audio of at most ``max_frames`` frames (about 8.2 s at
        8 kHz); :meth:`forward` refuses longer audio, this pools over windows of it.
        """
        if audio.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"expected as many audio rows as token rows, got {audio.shape[0]} and {input_ids.shape[0]}"
            )
        audio_vec = self.embed_audio_windows(audio)
        return self.head(torch.cat([audio_vec, self.embed_text(input_ids, attention_mask)], dim=-1))

    def predict_proba(self, audio: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Class probabilities ``(n, 2)`` (softmax of :meth:`forward`)."""
        return self(audio, input_ids, attention_mask).softmax(dim=-1)


def encode_lyrics(
    tokenizer: PreTrainedTokenizerBase, lyrics: Sequence[str], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Tokenize lyrics the way the demo model was trained: ``input_ids``, ``attention_mask`` ``(n, Q)``."""
    enc = tokenizer(
        list(lyrics), padding=True, truncation=True, max_length=DEMO_MAX_LENGTH, return_tensors="pt"
    )
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def collate(
    songs: Sequence[DemoSong], tokenizer: PreTrainedTokenizerBase, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Model inputs for a list of songs: ``audio (n, 1, T)``, ``input_ids``, ``attention_mask`` ``(n, Q)``."""
    audio = torch.stack([s.mixture for s in songs]).to(device)
    input_ids, attention_mask = encode_lyrics(tokenizer, [s.lyrics for s in songs], device)
    return audio, input_ids, attention_mask


def _load_from_dir(path: pathlib.Path, device: torch.device | str | None) -> tuple[DemoClassifier, Any]:
    from transformers import AutoTokenizer

    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, TOKENIZER_DIR) if not (path / n).exists()]
    if missing:
        raise FileNotFoundError(f"expected {missing} in {path} (run scripts/train_demo.py to write them)")
    config = DemoConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
    model = DemoClassifier(config)
    state = torch.load(path / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    tokenizer = AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR))
    return model.to(device).eval(), tokenizer


def load_demo(
    device: torch.device | str | None = None, *, path: str | pathlib.Path | None = None
) -> tuple[DemoClassifier, PreTrainedTokenizerBase]:
    """The trained demo classifier (in eval mode) and its tokenizer.

    Args:
        device: where to put the model (default: CPU).
        path: a folder written by ``torchlime.music.demo.train`` (default: the
            weights shipped in this package).

    Returns:
        ``(model, tokenizer)``; ``model(audio, input_ids, attention_mask)`` gives ``(n, 2)`` logits.

    Raises:
        FileNotFoundError: when the folder lacks ``weights.pt``, ``config.json`` or ``tokenizer/``.

    Example:
        >>> from torchlime.music.demo import load_demo, make_song, collate
        >>> model, tokenizer = load_demo()
        >>> song = make_song(1, seed=7)
        >>> model(*collate([song], tokenizer)).softmax(-1).shape
        torch.Size([1, 2])
    """
    if path is not None:
        return _load_from_dir(pathlib.Path(path), device)
    root = resources.files(__package__)
    if isinstance(root, pathlib.Path):
        return _load_from_dir(root, device)
    # A package inside a zip: copy the package data into a temporary folder first.
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            (out / name).write_bytes(root.joinpath(name).read_bytes())
        (out / TOKENIZER_DIR).mkdir()
        for item in root.joinpath(TOKENIZER_DIR).iterdir():
            if item.is_file():
                (out / TOKENIZER_DIR / item.name).write_bytes(item.read_bytes())
        return _load_from_dir(out, device)
