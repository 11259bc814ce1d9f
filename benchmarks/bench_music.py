"""One song end to end: torchlime.music.MusicLime vs the MusicLIME reference pipeline.

Both explain the same demo song with the same demo model on the same masks:

- reference (bach-or-bot's MusicLIME): per-sample numpy composition of the components,
  lines joined per sample, ``predict_fn(texts, waveforms)`` tokenizing on the CPU and
  running the model in batches, cosine distances with scikit-learn, lime's ``LimeBase``;
- torchlime: masks composed per segment as batched matmuls, lyric tokens removed by a
  batched gather, the same model on the same batches, kernel and fit in torch.

Time is broken down into composition, tokenization, model forward and the rest (kernel,
fit, bookkeeping); "explainer share" is everything but the model forward.

Run: ``python -m benchmarks.bench_music [--quick] [--device cpu|cuda|all]``; writes
``benchmarks/results/music_<device>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import torchlime
from torchlime.music import LyricsFactorization, MusicLime, StemFactorization
from torchlime.music.demo import DEMO_MAX_LENGTH, load_demo, lyric_pool, make_song


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start


def make_inputs(seconds: float, seed: int = 3):
    song = make_song(1, seed, seconds=seconds)
    extra = [line for line in lyric_pool() if line not in song.lines][:8]
    lyrics = "\n".join(song.lines + extra)  # 20 lines
    return song, lyrics


def run_torchlime(model, tokenizer, song, lyrics, masks, batch_size, device):
    timer = Timer(device)
    audio = StemFactorization(song.stems.to(device), sample_rate=song.sample_rate, num_segments=10)
    lyr = LyricsFactorization(lyrics, tokenizer, unit="line", max_length=DEMO_MAX_LENGTH, device=device)
    compose_audio, compose_lyrics = audio.compose, lyr.compose

    def timed_audio(z):
        with timer("composition"):
            return compose_audio(z)

    def timed_lyrics(z):
        with timer("tokenization"):
            return compose_lyrics(z)

    audio.compose, lyr.compose = timed_audio, timed_lyrics

    def forward(a, i, m):
        with timer("model forward"):
            return model(a, i, m).softmax(-1)

    with timer("total"), torch.no_grad():
        exp = MusicLime(forward).explain(audio, lyr, targets=[1], masks=masks.to(device), batch_size=batch_size)
    return exp, timer.totals


def run_reference(model, tokenizer, song, lyrics, masks, batch_size, device):
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    timer = Timer(device)
    data = masks.cpu().numpy().astype(np.int64)
    stems = song.stems[:, 0].numpy()
    T = stems.shape[1]
    seg = T // 10
    lines = lyrics.split("\n")
    with timer("total"):
        with timer("composition"):
            comps = []
            for g in range(10):
                for s in range(4):
                    c = np.zeros(T, dtype=np.float32)
                    c[g * seg : (g + 1) * seg] = stems[s, g * seg : (g + 1) * seg]
                    comps.append(c)
            texts, audios = [], []
            for row in data:
                active = np.where(row[:40] != 0)[0]
                audios.append(sum(comps[i] for i in active) if len(active) else np.zeros(T, dtype=np.float32))
                inactive = set(np.where(row[40:] == 0)[0].tolist())
                texts.append("\n".join(l for i, l in enumerate(lines) if i not in inactive))
        outs = []
        for start in range(0, len(texts), batch_size):
            with timer("tokenization"):
                enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                max_length=DEMO_MAX_LENGTH, return_tensors="pt")
            with timer("features"):
                a = torch.from_numpy(np.stack(audios[start : start + batch_size])).unsqueeze(1).to(device)
                ids, m = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            with timer("model forward"), torch.no_grad():
                outs.append(model(a, ids, m).softmax(-1).cpu().numpy())
        predictions = np.concatenate(outs)
        with timer("kernel + fit"):
            distances = pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
            kernel = lambda d: np.sqrt(np.exp(-(d**2) / 25**2))  # noqa: E731
            result = LimeBase(kernel).explain_instance_with_data(data, predictions, distances, 1, 20)
    return result, timer.totals


def machine(device: torch.device) -> dict:
    import captum

    info = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_num_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "captum": captum.__version__,
        "torchlime": torchlime.__version__, "device": str(device),
    }
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 4 s song, 200 samples, 1 repeat")
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    # The demo model reads at most 256 mel frames (about 8.2 s at 8 kHz): 8 s songs.
    seconds_list = [4.0] if args.quick else [8.0]
    samples_list = [200] if args.quick else [1000, 5000]
    repeats = args.repeats or (1 if args.quick else 2)
    for device in devices:
        model, tokenizer = load_demo(device)
        rows = []
        for seconds in seconds_list:
            song, lyrics = make_inputs(seconds)
            for n in samples_list:
                g = torch.Generator().manual_seed(0)
                masks = torch.bernoulli(torch.full((n, 60), 0.5), generator=g)
                masks[0] = 1
                run_torchlime(model, tokenizer, song, lyrics, masks[:20], args.batch_size, device)  # warm-up
                ours = [run_torchlime(model, tokenizer, song, lyrics, masks, args.batch_size, device) for _ in range(repeats)]
                ref = [run_reference(model, tokenizer, song, lyrics, masks, args.batch_size, device) for _ in range(repeats)]
                t_ours = sorted(ours, key=lambda r: r[1]["total"])[len(ours) // 2]
                t_ref = sorted(ref, key=lambda r: r[1]["total"])[len(ref) // 2]
                exp, ref_result = t_ours[0], t_ref[0]
                agree_features = [f for f, _ in exp.local_exp[1]] == [int(f) for f, _ in ref_result[1]]
                max_diff = max(abs(a[1] - b[1]) for a, b in zip(exp.local_exp[1], ref_result[1]))
                ours_total, ref_total = t_ours[1]["total"], t_ref[1]["total"]
                rows.append({
                    "seconds": seconds, "n_samples": n, "features": "4 stems x 10 segments + 20 lyric lines",
                    "torchlime_s": t_ours[1], "reference_s": t_ref[1],
                    "speedup": ref_total / ours_total,
                    "torchlime_explainer_share": 1 - t_ours[1].get("model forward", 0.0) / ours_total,
                    "reference_explainer_share": 1 - t_ref[1].get("model forward", 0.0) / ref_total,
                    "same_features_same_order": agree_features, "max_abs_weight_difference": max_diff,
                })
        result = {
            "benchmark": "music_one_song", "machine": machine(device),
            "parameters": {"batch_size": args.batch_size, "repeats": repeats, "mode": "quick" if args.quick else "full",
                           "model": "torchlime.music.demo (shipped weights)", "masks": "Bernoulli(0.5), row 0 ones, seed 0"},
            "rows": rows,
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = f"music_{device.type}{'_quick' if args.quick else ''}.json"
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, out / name)
        print("| device | audio | n | torchlime s | reference s | speedup | explainer share (torchlime / reference) | same features |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for r in rows:
            print(f"| {device.type} | {r['seconds']:.0f} s | {r['n_samples']} | {r['torchlime_s']['total']:.2f} | "
                  f"{r['reference_s']['total']:.2f} | {r['speedup']:.1f}x | {r['torchlime_explainer_share']:.0%} / "
                  f"{r['reference_explainer_share']:.0%} | {r['same_features_same_order']} |")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
