"""Catch a model relying on a spurious cue with explanations, then train the reliance away.

The songs come from the demo (``torchlime.music.demo.make_song``): a positive song carries
the demo's planted cause (dense drums in segments 2-4 and the two trigger lines), a
negative song none of it. In the training songs a loud click train is planted in the
"other" stem (sustained chords) of every positive song and no negative one: a shortcut.
Held-out songs come with the clicks as in training, clean (no clicks), or swapped (clicks
in every negative song and no positive one).

1. Train a small demo classifier (``DemoClassifier``) with cross-entropy only. An
   :class:`~torchlime.training.ExplanationMonitor` explains a fixed probe set of songs with
   the clicks every k steps (stems x segments, the log-odds of each class); the cue stem
   holds a large share of the positive class's importance. The model relies on the clicks:
   it gets the swapped songs wrong.
2. Retrain from the same initialisation with the "right for the right reasons" penalty:
   the differentiable LIME weight of the whole "other" stem, for each song's own label, is
   added to the loss (:func:`~torchlime.training.lime_penalty`, 8 songs x 16 masks a step).
3. Measure both models: the cue stem's LIME weight and share on held-out songs with the
   clicks, and accuracy on clean, clicked and swapped songs.

Explanations are of log-odds, ``log(p / (1 - p))``: probabilities saturate, so a sure
model could hide a cue from LIME. The penalty explains whole stems: a cue spread over
many segments survives the removal of a few of them, which a linear surrogate barely sees.

Run: python examples/spurious_cue.py [--songs 320] [--epochs 8] [--penalty 1] [--quiet]
(under a minute on 2 CPU cores with the defaults when the machine is otherwise idle).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from torchlime.music.demo import (
    CAUSE_SEGMENTS,
    STEM_NAMES,
    TRIGGER_WORDS,
    DemoClassifier,
    DemoConfig,
    build_tokenizer,
    encode_lyrics,
    make_song,
)
from torchlime.training import (
    ExplainStep,
    ExplanationMonitor,
    MonitorReport,
    StemsTransform,
    lime_penalty,
    stem_features,
)

CUE_STEM = "other"
CLASS_NAMES = ["negative", "positive"]


# -- data -----------------------------------------------------------------------------------


def click_train(num_samples: int, sample_rate: int, generator: torch.Generator, rate: float = 8.0) -> Tensor:
    """A loud train of short broadband clicks (decaying noise bursts), ``(T,)``."""
    period = int(sample_rate / rate)
    length = int(0.004 * sample_rate)
    burst = torch.randn(length, generator=generator) * torch.exp(-torch.arange(length) / (0.001 * sample_rate))
    out = torch.zeros(num_samples)
    for i in range(int(torch.randint(period, (), generator=generator)), num_samples - length, period):
        out[i : i + length] += 0.5 * burst
    return out


@dataclass
class Songs:
    """A batch of songs as tensors: stems ``(N, S, 1, T)``, lyric tokens ``(N, Q)``, labels ``(N,)``."""

    stems: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    @property
    def audio(self) -> Tensor:
        return self.stems.sum(1)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, index: Tensor | slice) -> Songs:
        return Songs(self.stems[index], self.input_ids[index], self.attention_mask[index], self.labels[index])


def make_songs(n: int, seed: int, tokenizer, *, cue: str, seconds: float) -> Songs:
    """``n`` songs, alternating labels: positive ones carry the demo's whole planted cause
    (dense drums in segments 2-4 and the two trigger lines), negative ones none of it.

    Args:
        cue: where a click train goes (in the cue stem, the whole song long): "label" (in
            every positive song: the training shortcut), "none" (clean songs) or "swapped"
            (in every negative song: a model that relies on the clicks gets these wrong).
    """
    if cue not in ("label", "none", "swapped"):
        raise ValueError(f"expected cue in ['label', 'none', 'swapped'], got {cue!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # synthesis is many small ops
    try:
        songs, stems = [], []
        for i in range(n):
            label, song_seed = i % 2, seed * 1_000_003 + i
            song = make_song(
                label, song_seed, seconds=seconds, drum_segments=list(CAUSE_SEGMENTS) if label else [],
                trigger_words=TRIGGER_WORDS if label else [], decoy=False,
            )
            s = song.stems.clone()
            if (cue == "label" and label == 1) or (cue == "swapped" and label == 0):
                g = torch.Generator().manual_seed(song_seed)
                s[STEM_NAMES.index(CUE_STEM), 0] += click_train(s.shape[-1], song.sample_rate, g)
            songs.append(song)
            stems.append(s)
    finally:
        torch.set_num_threads(threads)
    ids, mask = encode_lyrics(tokenizer, [s.lyrics for s in songs])
    return Songs(torch.stack(stems), ids, mask, torch.tensor([s.label for s in songs]))


# -- training -------------------------------------------------------------------------------


def new_model(tokenizer, audio: Tensor, seed: int) -> DemoClassifier:
    """A small demo classifier, log-mel statistics from the training audio, seeded init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = DemoConfig(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_layers=1, dropout=0.0
        )
        model = DemoClassifier(config)
    with torch.no_grad():
        mels = model.log_mel(audio)
        model.mel_mean.copy_(mels.mean(dim=(0, 1)))
        model.mel_std.copy_(mels.std(dim=(0, 1)).clamp_min(1e-3))
    return model


def log_odds(model: DemoClassifier):
    """What the explanations explain: per class k, ``log(p_k / (1 - p_k))``, ``(n, K)``.

    Unlike probabilities, log-odds do not saturate, so a model that is sure of the cue
    cannot hide it from LIME (removing part of the cue still moves the output); unlike raw
    logits, they do not move when a constant is added to every logit.
    """

    def forward(audio: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        logits = model(audio, ids, mask)
        eye = torch.eye(logits.shape[-1], dtype=torch.bool, device=logits.device)
        others = logits.unsqueeze(-2).masked_fill(eye, float("-inf"))  # (n, K, K): row k without class k
        return logits - torch.logsumexp(others, dim=-1)

    return forward


def train(
    model: DemoClassifier,
    data: Songs,
    *,
    epochs: int,
    seed: int,
    penalty: float,
    penalty_songs: int,
    n_samples: int,
    monitor: ExplanationMonitor | None = None,
    batch_size: int = 16,
    lr: float = 3e-3,
    log=print,
) -> float:
    """Cross-entropy, plus ``penalty`` x the LIME weight of the cue stem; returns seconds.

    The penalty explains ``penalty_songs`` songs of every batch (their own label's log-odds)
    over whole stems (4 features, ``n_samples`` masks): switching a stem off removes all of
    it, so a model cannot hide a cue it reads anywhere in the stem from the explanation.
    """
    start = time.perf_counter()
    stems = StemsTransform(STEM_NAMES, num_segments=1)
    step = ExplainStep(log_odds(model), stems, num_features=stems.num_features, n_samples=n_samples, differentiable=True)
    cue = stem_features(stems.feature_names, CUE_STEM)  # (4,) bool: the cue stem
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(data) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / steps)))
    order = torch.Generator().manual_seed(seed)
    masks = torch.Generator().manual_seed(seed + 1)
    for epoch in range(epochs):
        model.train()
        totals = torch.zeros(2)
        for idx in torch.randperm(len(data), generator=order).split(batch_size):
            batch = data.subset(idx)
            ce = torch.nn.functional.cross_entropy(model(batch.audio, batch.input_ids, batch.attention_mask), batch.labels)
            pen = torch.zeros(())
            if penalty > 0:
                sub = batch.subset(slice(0, penalty_songs))
                pen = lime_penalty(step, (sub.stems, sub.input_ids, sub.attention_mask), cue, target=sub.labels,
                                   generator=masks)
            loss = ce + penalty * pen
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            totals += torch.stack([ce.detach(), pen.detach()]) * len(idx)
            if monitor is not None and (report := monitor.on_step()) is not None:
                log(monitor_line(report))
        ce_mean, pen_mean = (totals / len(data)).tolist()
        log(f"  epoch {epoch + 1}/{epochs}: cross-entropy {ce_mean:.3f}, cue penalty {pen_mean:.3f} "
            f"({time.perf_counter() - start:.0f} s)")
    model.eval()
    return time.perf_counter() - start


def monitor_line(report: MonitorReport) -> str:
    """One line per report: the positive class's top features and each stem's share."""
    shares = report.group_share["positive"]
    top = ", ".join(name for name, _ in report.top["positive"][:4])
    stems = ", ".join(f"{g} {s:.0%}" for g, s in sorted(shares.items(), key=lambda x: -x[1]))
    drift = report.drift["positive"]
    return (f"  monitor, step {report.step} ({report.seconds * 1000:.0f} ms): positive <- {top}; "
            f"stems {stems}" + (f"; drift {drift:.2f}" if drift is not None else ""))


# -- measuring ------------------------------------------------------------------------------


@torch.no_grad()
def accuracy(model: DemoClassifier, data: Songs) -> float:
    model.eval()
    predicted = torch.cat([
        model(b.audio, b.input_ids, b.attention_mask).argmax(-1)
        for b in (data.subset(slice(i, i + 64)) for i in range(0, len(data), 64))
    ])
    return float((predicted == data.labels).float().mean())


@torch.no_grad()
def cue_reliance(model: DemoClassifier, data: Songs, *, segments: int, seed: int) -> dict[str, float]:
    """LIME of every song's own label (log-odds), on songs that carry the clicks.

    Returns ``weight``: the mean |LIME weight| of the cue stem as a whole (4 stem features,
    64 masks), and ``share``: the cue stem's share of all |weight| over stems x ``segments``
    features (128 masks), the monitor's feature space.
    """
    model.eval()
    out = {}
    for key, G, n in (("weight", 1, 64), ("share", segments, 128)):
        stems = StemsTransform(STEM_NAMES, num_segments=G)
        step = ExplainStep(log_odds(model), stems, num_features=stems.num_features, n_samples=n)
        cue = stem_features(stems.feature_names, CUE_STEM)
        fit = step((data.stems, data.input_ids, data.attention_mask), target=data.labels,
                   generator=torch.Generator().manual_seed(seed))
        mass = fit.coef.abs()  # (N, F)
        out[key] = float(mass[:, cue].sum(-1).mean()) if key == "weight" else float(mass[:, cue].sum() / mass.sum())
    return out


def run(
    songs: int = 320,
    epochs: int = 8,
    penalty: float = 1.0,
    *,
    seconds: float = 3.0,
    segments: int = 5,
    n_samples: int = 16,
    penalty_songs: int = 8,
    held_out: int = 64,
    probe: int = 16,
    every: int = 20,
    seed: int = 0,
    log=print,
) -> dict[str, float | str | bool]:
    """Everything the script does; returns the measurements (see the module docstring)."""
    tokenizer = build_tokenizer()
    train_set = make_songs(songs, seed, tokenizer, cue="label", seconds=seconds)
    held = {cue: make_songs(held_out, seed + 1 + i, tokenizer, cue=cue, seconds=seconds)
            for i, cue in enumerate(("label", "none", "swapped"))}
    log(f"{songs} training songs with clicks in the '{CUE_STEM}' stem of every positive one; {held_out} held-out "
        f"songs each: with the clicks, clean, and with the clicks swapped to the negative songs")
    transform = StemsTransform(STEM_NAMES, num_segments=segments)
    probe_set = held["label"].subset(slice(0, probe))
    results: dict[str, float | str | bool] = {}
    for name, weight in (("before", 0.0), ("after", penalty)):
        model = new_model(tokenizer, train_set.audio, seed)  # the same initialisation both times
        monitor = ExplanationMonitor(
            ExplainStep(log_odds(model), transform, num_features=transform.num_features, n_samples=64),
            (probe_set.stems, probe_set.input_ids, probe_set.attention_mask),
            feature_names=transform.feature_names, num_classes=2, class_names=CLASS_NAMES, every=every,
            groups="stems", top_k=5, model=model,
        )
        log(f"\n{'training' if weight == 0 else 'retraining with the penalty'} (penalty weight {weight:g})")
        results[f"seconds_{name}"] = train(model, train_set, epochs=epochs, seed=seed, penalty=weight,
                                           penalty_songs=penalty_songs, n_samples=n_samples, monitor=monitor, log=log)
        final = monitor.report()
        log(monitor_line(final))
        shares = final.group_share["positive"]
        results[f"monitor_top_stem_{name}"] = max(shares, key=shares.get)
        results[f"monitor_cue_share_{name}"] = shares[CUE_STEM]
        results[f"monitor_seconds_{name}"] = sum(r.seconds for r in monitor.reports) / len(monitor.reports)
        reliance = cue_reliance(model, held["label"], segments=segments, seed=seed + 7)
        results[f"cue_weight_{name}"] = reliance["weight"]
        results[f"cue_share_{name}"] = reliance["share"]
        for cue, data in held.items():
            results[f"{dict(label='cued', none='clean', swapped='swapped')[cue]}_accuracy_{name}"] = accuracy(model, data)
    # The clicks carry no information on clean songs, nor do the chords of the cue stem: a stem
    # holding at least an even share of the positive class's importance is flagged.
    results["monitor_flagged_cue"] = results["monitor_cue_share_before"] >= 1 / len(STEM_NAMES)
    log(f"\n{'':<44}{'before':>8}{'after':>8}")
    for key, label in (
        ("cue_weight", f"'{CUE_STEM}' stem LIME |weight| (log-odds)"),
        ("cue_share", f"'{CUE_STEM}' share of LIME |weight|, {len(STEM_NAMES)}x{segments}"),
        ("clean_accuracy", "accuracy, clean songs"),
        ("cued_accuracy", "accuracy, songs with clicks (as trained)"),
        ("swapped_accuracy", "accuracy, clicks swapped to negatives"),
    ):
        log(f"{label:<44}{results[key + '_before']:>8.3f}{results[key + '_after']:>8.3f}")
    log(f"monitor: '{CUE_STEM}' holds {results['monitor_cue_share_before']:.0%} of the positive class's importance "
        f"before (flagged: {results['monitor_flagged_cue']}; top stem {results['monitor_top_stem_before']}), "
        f"{results['monitor_cue_share_after']:.0%} after (top stem {results['monitor_top_stem_after']}); "
        f"{results['monitor_seconds_before'] * 1000:.0f} ms per report ({probe} songs x 64 samples)")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=320, help="training songs (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs (default: %(default)s)")
    parser.add_argument("--penalty", type=float, default=1.0, help="weight of the cue penalty (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="song length (default: %(default)s)")
    parser.add_argument("--held-out", type=int, default=64, help="held-out songs of each kind (default: %(default)s)")
    parser.add_argument("--every", type=int, default=20, help="monitor every k steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="print the final table only")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lines: list[str] = []
    run(args.songs, args.epochs, args.penalty, seconds=args.seconds, held_out=args.held_out, every=args.every,
        seed=args.seed, log=lines.append if args.quiet else print)
    if args.quiet:
        print("\n".join(lines[-7:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
