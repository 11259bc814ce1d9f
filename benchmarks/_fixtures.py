"""Everything the scenarios explain and compare against, built in one place.

- songs and masks: :func:`make_inputs` (a class-1 demo song with 20 lyric lines),
  :func:`random_stems`, :func:`make_masks`, :func:`factorize`, :func:`fresh_tokenizer`;
- models: :class:`DemoForward` (the shipped demo classifier, probabilities),
  :class:`TrivialModel` (reads its inputs once: measures the explainer),
  :class:`LinearForward` (``x @ W``), :func:`demo_tokenizer`;
- separator checkpoints: :func:`write_checkpoint` (random-initialised Open-Unmix of the
  published ``umxhq``/``umxl`` architectures, or a ``tiny`` stand-in);
- the two one-song pipelines: :func:`run_torchlime` (``MusicLime``) and
  :func:`run_reference` (bach-or-bot's MusicLIME: per-sample numpy composition, CPU
  tokenization, ``lime.lime_base.LimeBase``), with their separation steps;
- :func:`music_explain`: ``MusicLime.explain`` with the argument names of the installed
  torchlime (``target=``/``perturbations_per_eval=`` since the engine refactor, ``targets=``/
  ``batch_size=`` before), so the suite runs against older checkouts (``--compare-to``).

Each pipeline marks its phases with ``bench.<phase>`` profiler ranges
(:mod:`benchmarks._profile`): setup, composition, tokenization, features, model, kernel, fit.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._profile import bench_range, ranged

__all__ = [
    "NUM_SEGMENTS", "NUM_LINES", "TARGET", "SEPARATION_RATE", "FIVE_STEMS", "ARCHITECTURES",
    "DemoForward", "TrivialModel", "LinearForward", "demo_tokenizer", "make_inputs", "make_masks",
    "random_stems", "factorize", "fresh_tokenizer", "explain_parameters", "music_explain", "write_checkpoint",
    "separation_input", "separate_torchlime", "separate_reference", "run_torchlime", "run_reference",
    "MUSIC_PHASES", "breakdown", "phase_seconds", "pool_lyrics",
]

NUM_SEGMENTS = 10
NUM_LINES = 20
TARGET = 1
SEPARATION_RATE = 44100
FIVE_STEMS = ("vocals", "drums", "bass", "piano", "other")
STEM_TARGETS = ("vocals", "drums", "bass", "other")

#: The breakdown of one song's explanation, both pipelines.
MUSIC_PHASES = ("separation", "setup", "composition", "tokenization", "features", "model forward", "kernel", "fit",
                "other")
#: profile label -> breakdown phase (the engine's transform and forward glue count as "other").
BREAKDOWN = {"setup": "setup", "composition": "composition", "tokenization": "tokenization", "features": "features",
             "model": "model forward", "kernel": "kernel", "fit": "fit"}


# -- models ---------------------------------------------------------------------------------


class DemoForward:
    """The demo classifier's probabilities ``(n, 2)``; audio past its front-end window is cut.

    The demo model computes ``1 + T // hop_length`` mel frames and takes at most
    ``max_frames`` of them, so it reads at most ``max_frames * hop_length - 1`` samples.

    Args:
        model: :class:`torchlime.music.demo.DemoClassifier`.
    """

    def __init__(self, model: Any) -> None:
        cfg = model.config
        self.model = model
        self.max_samples = cfg.max_frames * cfg.hop_length - 1
        self.sample_rate = cfg.sample_rate

    def __call__(self, audio: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(audio[..., : self.max_samples], input_ids, attention_mask).softmax(-1)


class TrivialModel:
    """Two scores from the mean of the audio and of the attention mask: reads each input once."""

    def __call__(self, audio: Tensor, input_ids: Tensor | None = None, attention_mask: Tensor | None = None) -> Tensor:
        a = audio.mean(dim=(1, 2))
        t = attention_mask.float().mean(1) if attention_mask is not None else torch.zeros_like(a)
        return torch.stack([a - t, a + t], dim=1)


class LinearForward:
    """``x @ W``: a fixed linear map to scores.

    Args:
        weight: ``(D, classes)``.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.weight


def demo_tokenizer() -> Any:
    """The demo's tokenizer alone (no model weights), quiet about over-long lyrics."""
    from importlib import resources

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # LyricsFactorization tokenizes the whole lyrics once, past the model's 128 tokens (it
    # truncates per sample); transformers would warn about that on every call.
    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(resources.files("torchlime.music.demo") / "tokenizer"))


# -- songs and masks ------------------------------------------------------------------------


def make_inputs(seconds: float, seed: int = 3) -> tuple[Any, str]:
    """A class-1 demo song of ``seconds`` at 8 kHz and 20 lyric lines (its 12 plus 8 from the pool)."""
    from torchlime.music.demo import lyric_pool, make_song

    song = make_song(1, seed, seconds=seconds)
    extra = [line for line in lyric_pool() if line not in song.lines][: NUM_LINES - len(song.lines)]
    return song, "\n".join(song.lines + extra)


def pool_lyrics(lines: int = NUM_LINES) -> str:
    """``lines`` lines of the demo's lyric pool."""
    from torchlime.music.demo import lyric_pool

    return "\n".join(lyric_pool()[:lines])


def random_stems(stems: int, channels: int, samples: int, seed: int = 0) -> Tensor:
    """``(S, C, T)`` float32 noise at 0.1 amplitude, built on the CPU (same values everywhere)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(stems, channels, samples, generator=gen)


def make_masks(n: int, num_features: int, seed: int = 0) -> Tensor:
    """Bernoulli(0.5) ``(n, F)`` float masks, row 0 all ones (both pipelines get these)."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.bernoulli(torch.full((n, num_features), 0.5), generator=g)
    masks[0] = 1
    return masks


def fresh_tokenizer(tokenizer: Any) -> Any:
    """A shallow copy of ``tokenizer``: an object torchlime has not seen, so a song set up with
    it pays its first setup (``LyricsFactorization`` remembers its fast-path check per
    tokenizer object, lyrics and settings)."""
    return copy.copy(tokenizer)


def factorize(stems: Tensor, sample_rate: int, lyrics: str | None, tokenizer: Any, device: torch.device | str,
              num_segments: int = NUM_SEGMENTS, stem_names: Any = None) -> tuple[Any, Any]:
    """``(StemFactorization, LyricsFactorization or None)`` of one song: the per-song setup."""
    from torchlime.music import LyricsFactorization, StemFactorization
    from torchlime.music.demo import DEMO_MAX_LENGTH

    audio = StemFactorization(stems.to(device), sample_rate=sample_rate, num_segments=num_segments,
                              stem_names=stem_names)
    lyr = None
    if lyrics is not None:
        lyr = LyricsFactorization(lyrics, tokenizer, unit="line", max_length=DEMO_MAX_LENGTH, device=device)
    return audio, lyr


# -- the explain call on either API ---------------------------------------------------------


def explain_parameters() -> frozenset[str]:
    """The keyword names ``MusicLime.explain`` of the installed torchlime takes."""
    from torchlime.music import MusicLime

    return frozenset(inspect.signature(MusicLime.explain).parameters)


def music_explain(explainer: Any, audio: Any, lyrics: Any, *, target: Any, perturbations_per_eval: int,
                  memory_budget: int | None = None, **kwargs: Any) -> Any:
    """``explainer.explain(audio, lyrics, ...)`` with this torchlime's argument names.

    ``target``/``perturbations_per_eval`` are passed as ``targets``/``batch_size`` to a
    torchlime from before the rename (no DeprecationWarning either way); ``memory_budget``
    only where ``explain`` takes it (before, a call always took ``perturbations_per_eval``
    samples per song).
    """
    params = explain_parameters()
    if "perturbations_per_eval" in params:
        kwargs.update(target=target, perturbations_per_eval=perturbations_per_eval)
    else:
        kwargs.update(targets=target, batch_size=perturbations_per_eval)
    if memory_budget is not None and "memory_budget" in params:
        kwargs["memory_budget"] = memory_budget
    return explainer.explain(audio, lyrics, **kwargs)


# -- separator checkpoints ------------------------------------------------------------------

#: openunmix's hub definitions (openunmix/__init__.py: umxhq_spec, umxl_spec): STFT 4096/1024
#: at 44.1 kHz, stereo, 16 kHz bandwidth; umxhq has hidden size 512, umxl 1024.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "umxhq": {"nfft": 4096, "nhop": 1024, "hidden_size": 512, "bandwidth": 16000, "sample_rate": 44100},
    "umxl": {"nfft": 4096, "nhop": 1024, "hidden_size": 1024, "bandwidth": 16000, "sample_rate": 44100},
    "tiny": {"nfft": 1024, "nhop": 512, "hidden_size": 16, "bandwidth": 16000, "sample_rate": 44100},
}


def write_checkpoint(folder: Path, arch: str = "umxhq", seed: int = 0) -> dict[str, Any]:
    """Write a random-init stereo Open-Unmix checkpoint folder of architecture ``arch``.

    The published weights cannot be downloaded on the build machines, and separation time
    depends on the architecture, not on the weights. The folder is in openunmix's own format
    (what its ``train.py`` writes and ``openunmix.utils.load_separator`` reads, so every
    torchlime's :class:`~torchlime.music.OpenUnmixSeparator` loads it): ``separator.json``,
    and per target ``<target>.json`` and ``<target>.pth`` holding an ``OpenUnmix`` of the
    hub's definition (``openunmix.umxhq_spec``: 3 bidirectional LSTM layers of
    ``hidden_size``, ``max_bin`` from the 16 kHz bandwidth).

    Returns:
        What the JSON records about it (architecture, parameters).
    """
    from openunmix.model import OpenUnmix
    from openunmix.utils import bandwidth_to_max_bin

    spec = ARCHITECTURES[arch]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "separator.json").write_text(json.dumps(
        {"nfft": spec["nfft"], "nhop": spec["nhop"], "sample_rate": spec["sample_rate"], "nb_channels": 2}))
    max_bin = int(bandwidth_to_max_bin(rate=spec["sample_rate"], n_fft=spec["nfft"], bandwidth=spec["bandwidth"]))
    params = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for t in STEM_TARGETS:
            net = OpenUnmix(nb_bins=spec["nfft"] // 2 + 1, nb_channels=2, hidden_size=spec["hidden_size"],
                            max_bin=max_bin)
            params += sum(p.numel() for p in net.parameters())
            args = {"target": t, "nfft": spec["nfft"], "nhop": spec["nhop"], "nb_channels": 2,
                    "hidden_size": spec["hidden_size"], "bandwidth": spec["bandwidth"], "seed": seed}
            (folder / f"{t}.json").write_text(json.dumps({"args": args, "epochs_trained": 0}))
            torch.save(net.state_dict(), folder / f"{t}.pth")
    return {
        "architecture": arch,
        "weights": "random initialisation (seed %d), saved as a local checkpoint folder: the published "
        "weights cannot be downloaded here; separation time depends on the architecture only" % seed,
        **spec,
        "max_bin": max_bin,
        "targets": list(STEM_TARGETS),
        "parameters": params,
    }


# -- separation -----------------------------------------------------------------------------


def separation_input(song: Any) -> Tensor:
    """The mixture as a song file holds it: ``(2, T')`` at 44.1 kHz (two equal channels)."""
    from torchaudio.functional import resample

    mono = resample(song.mixture.to(torch.float32), song.sample_rate, SEPARATION_RATE)
    return mono.expand(2, -1).contiguous()


def separate_torchlime(separator: Any, mixture: Tensor, out_rate: int) -> Tensor:
    """torchlime: one call, resampling in and out on the separator's device."""
    return separator.separate(mixture, SEPARATION_RATE, output_sample_rate=out_rate)


def separate_reference(separator: Any, mixture: Tensor, out_rate: int) -> list[np.ndarray]:
    """MusicLIME: ``openunmix.predict.separate``, then each stem to mono and resampled on the host."""
    import openunmix.predict
    from scipy.signal import resample_poly

    estimates = openunmix.predict.separate(mixture.unsqueeze(0), rate=SEPARATION_RATE,
                                           separator=separator.module, device=separator.device)
    g = np.gcd(out_rate, SEPARATION_RATE)
    return [resample_poly(v[0].mean(0).cpu().numpy(), out_rate // g, SEPARATION_RATE // g).astype(np.float32)
            for v in estimates.values()]


# -- the two one-song pipelines -------------------------------------------------------------


def run_torchlime(forward: Any, tokenizer: Any, song: Any, lyrics: str, masks: Tensor, perturbations_per_eval: int,
                  device: torch.device) -> Any:
    """Explain the song with ``MusicLime`` on ``device`` (setup included), phases in ranges.

    The factorizations' ``compose`` and the model are wrapped in ``bench.composition``,
    ``bench.tokenization`` and ``bench.model`` ranges (their own instances: nothing of the
    library is patched); the engine adds its own ranges.
    """
    from torchlime.music import MusicLime

    with bench_range("setup"):  # a song's first setup: nothing remembered from earlier runs
        audio, lyr = factorize(song.stems, song.sample_rate, lyrics, fresh_tokenizer(tokenizer), device)
    audio.compose = ranged("composition", audio.compose)
    lyr.compose = ranged("tokenization", lyr.compose)
    with torch.no_grad():
        return music_explain(MusicLime(ranged("model", forward)), audio, lyr, target=[TARGET],
                             masks=masks.to(device), perturbations_per_eval=perturbations_per_eval)


def run_reference(forward: Any, tokenizer: Any, song: Any, lyrics: str, masks: Tensor, batch_size: int,
                  device: torch.device) -> Any:
    """MusicLIME's pipeline on the same masks; returns lime's ``explain_instance_with_data`` result.

    bach-or-bot's MusicLIME: full-length component arrays; per sample the active components
    summed in numpy and the kept lines joined; per chunk of ``batch_size`` samples
    ``predict_fn`` tokenizes on the CPU, stacks the waveforms and moves them to the device
    ("features"), runs the model and returns numpy; cosine distances with scikit-learn and
    lime's ``LimeBase.explain_instance_with_data`` (MusicLIME's kernel, width 25).
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    from torchlime.music.demo import DEMO_MAX_LENGTH

    data = masks.cpu().numpy().astype(np.int64)
    n = data.shape[0]
    with bench_range("setup"):
        stems = song.stems[:, 0].numpy()
        S, T = stems.shape
        edges = [round(g * T / NUM_SEGMENTS) for g in range(NUM_SEGMENTS + 1)]
        comps = []  # bach-or-bot: full-length arrays, segment-major (g * S + s)
        for g in range(NUM_SEGMENTS):
            for s in range(S):
                c = np.zeros(T, dtype=np.float32)
                c[edges[g] : edges[g + 1]] = stems[s, edges[g] : edges[g + 1]]
                comps.append(c)
        lines = lyrics.split("\n")
        Fa = len(comps)
    outs = []
    for start in range(0, n, batch_size):
        rows = data[start : start + batch_size]
        with bench_range("composition"):
            audios, texts = [], []
            for row in rows:
                active = np.where(row[:Fa] != 0)[0]
                audios.append(sum(comps[i] for i in active) if len(active) else np.zeros(T, dtype=np.float32))
                inactive = set(np.where(row[Fa:] == 0)[0].tolist())
                texts.append("\n".join(line for i, line in enumerate(lines) if i not in inactive))
        with bench_range("tokenization"):
            enc = tokenizer(texts, padding=True, truncation=True, max_length=DEMO_MAX_LENGTH, return_tensors="pt")
        with bench_range("features"):
            a = torch.from_numpy(np.stack(audios)).unsqueeze(1).to(device)
            ids, att = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        with bench_range("model"), torch.no_grad():
            out = forward(a, ids, att)
        with bench_range("features"):
            outs.append(out.cpu().numpy())
    predictions = np.concatenate(outs)
    with bench_range("kernel"):
        distances = pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
    with bench_range("fit"):
        def kernel(d: np.ndarray) -> np.ndarray:
            return np.sqrt(np.exp(-(d**2) / 25**2))

        return LimeBase(kernel).explain_instance_with_data(data, predictions, distances, TARGET, 20)


def phase_seconds(phase: dict[str, Any], cuda: bool) -> float:
    """A phase's time: on the calling thread; on CUDA the longer of that and its kernels' time."""
    return max(phase["cpu_time_s"], phase["device_time_s"]) if cuda else phase["cpu_time_s"]


def breakdown(profile: dict[str, Any], cuda: bool) -> dict[str, float]:
    """Seconds per breakdown phase (separation apart) from one profiled run; "other" is the rest."""
    out = {k: 0.0 for k in MUSIC_PHASES if k != "separation"}
    for label, phase in profile["phases"].items():
        if label in BREAKDOWN:
            out[BREAKDOWN[label]] += phase_seconds(phase, cuda)
    out["other"] = max(0.0, profile["wall_s"] - sum(out.values()))
    return out
