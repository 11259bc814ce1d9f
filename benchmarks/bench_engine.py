"""torchlime's engine against Captum's, side by side: ``Lime`` and ``KernelShap``.

The model is a fixed random linear map to 4 classes, so (almost) only the explainer is
timed. Two workloads:

- ``waveform``: a 10 s, 22.05 kHz mono waveform ``(1, T)`` with T = 220500, split into
  F = 60 contiguous groups by its feature mask;
- ``scalar64``: ``(1, 64)`` with Captum's default mask (F = 64).

Both libraries get the same forward, ``n_samples``, ``perturbations_per_eval`` and their
own default interpretable model (Captum's ``SkLearnLasso(alpha=0.01)``, torchlime's
``Lasso(alpha=0.01)``: the same objective). Each configuration gets one untimed warm-up
run, then ``--repeats`` timed runs (median, min, max); on CUDA the timed region is
bracketed by ``torch.cuda.synchronize()``. Captum runs whose warm-up takes longer than
``--captum-slow-s`` seconds and whose first timed run does too are timed once only
(recorded in the JSON as ``reduced_repeats_note``).

Agreement is the Pearson correlation of the two libraries' ``(1, F)`` attributions
(``return_input_shape=False``) at the same sample count, with each library's default
model and, for ``Lime``, with ridge on both sides (``torchlime.models.Ridge(alpha=1.0)``
vs ``captum._utils.models.SkLearnRidge(alpha=1.0)``), because the lasso may zero most
coefficients of the waveform. Each is reported with the same seed for both libraries
(on CPU their Lime masks are then identical, so this compares the solvers) and with
independent seeds (torchlime 0, Captum 1).

Usage::

    python -m benchmarks.bench_engine [--quick] [--device cpu|cuda|all] [--repeats N]
                                      [--ppe N] [--out DIR]

Writes ``<out>/engine_<device>.json`` (``engine_<device>_quick.json`` with ``--quick``,
``engine_<device>_tiny.json`` with ``--tiny``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import captum
import captum.attr
import torch
from captum._utils.models.linear_model import SkLearnRidge
from torch import Tensor

import torchlime
from torchlime.models import Ridge

__all__ = ["main"]

SAMPLE_RATE = 22050
NUM_CLASSES = 4
TARGET = 1
WAVEFORM_GROUPS = 60
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
METHODS = ("lime", "kernel_shap")


@dataclass
class Workload:
    """One input to explain and the model that scores it.

    Attributes:
        name: workload name used in the JSON and the table.
        inputs: ``(1, D)`` input.
        feature_mask: ``(1, D)`` int64 feature ids 0..F-1, or None for Captum's default.
        forward: ``(c, D) -> (c, NUM_CLASSES)`` linear map.
        num_features: F.
        n_samples: sample counts to benchmark.
        description: one line for the JSON.
    """

    name: str
    inputs: Tensor
    feature_mask: Tensor | None
    forward: Callable[[Tensor], Tensor]
    num_features: int
    n_samples: list[int]
    description: str


class LinearForward:
    """``x @ W``: a fixed random linear map to ``NUM_CLASSES`` scores.

    Args:
        weight: ``(D, NUM_CLASSES)``.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.weight


def make_workloads(device: torch.device, mode: str) -> list[Workload]:
    """Build the two workloads on ``device`` (same values on every device).

    Args:
        device: where inputs, masks and weights live.
        mode: "full", "quick" or "tiny" (sample counts, and a 1 s waveform for "tiny").

    Returns:
        The waveform and scalar64 workloads.
    """
    gen = torch.Generator().manual_seed(0)  # built on CPU, then moved: identical on all devices
    seconds = 1 if mode == "tiny" else 10
    T = seconds * SAMPLE_RATE
    t = torch.arange(T, dtype=torch.float32) / SAMPLE_RATE
    wave = 0.5 * torch.sin(2 * math.pi * 440.0 * t) + 0.1 * torch.randn(T, generator=gen)
    wave_mask = (torch.arange(T) * WAVEFORM_GROUPS // T).unsqueeze(0)
    wave_weight = torch.randn(T, NUM_CLASSES, generator=gen) / math.sqrt(T)
    scalar = torch.randn(1, 64, generator=gen)
    scalar_weight = torch.randn(64, NUM_CLASSES, generator=gen) / 8.0
    n_wave = {"full": [1000, 5000], "quick": [200], "tiny": [100]}[mode]
    n_scalar = {"full": [1000, 5000], "quick": [1000], "tiny": [100]}[mode]
    return [
        Workload(
            name="waveform",
            inputs=wave.unsqueeze(0).to(device),
            feature_mask=wave_mask.to(device),
            forward=LinearForward(wave_weight.to(device)),
            num_features=WAVEFORM_GROUPS,
            n_samples=n_wave,
            description=f"{seconds} s mono waveform at {SAMPLE_RATE} Hz, input (1, {T}), "
            f"{WAVEFORM_GROUPS} contiguous groups, forward x @ W with W ({T}, {NUM_CLASSES})",
        ),
        Workload(
            name="scalar64",
            inputs=scalar.to(device),
            feature_mask=None,
            forward=LinearForward(scalar_weight.to(device)),
            num_features=64,
            n_samples=n_scalar,
            description=f"input (1, 64), default feature mask (64 features), forward x @ W with W (64, {NUM_CLASSES})",
        ),
    ]


# -- running and timing -----------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _explainer(library: str, method: str, forward: Callable[[Tensor], Tensor], ridge: bool = False) -> Any:
    if library == "torchlime":
        if method == "lime":
            return torchlime.Lime(forward, interpretable_model=Ridge(alpha=1.0) if ridge else None)
        return torchlime.KernelShap(forward)
    if method == "lime":
        return captum.attr.Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0) if ridge else None)
    return captum.attr.KernelShap(forward)


def _attribute(
    library: str, explainer: Any, work: Workload, n_samples: int, ppe: int, seed: int, device: torch.device
) -> Tensor:
    kwargs: dict[str, Any] = dict(
        target=TARGET,
        feature_mask=work.feature_mask,
        n_samples=n_samples,
        perturbations_per_eval=ppe,
        return_input_shape=False,
    )
    if library == "torchlime":
        kwargs["generator"] = torch.Generator(device).manual_seed(seed)
    else:
        torch.manual_seed(seed)  # Captum draws from the global RNG (CPU and every CUDA device)
    with warnings.catch_warnings():
        # Captum warns on every call that sklearn's models need tensors moved to numpy;
        # the table, not the log, is the output of this script.
        warnings.simplefilter("ignore")
        return explainer.attribute(work.inputs, **kwargs)


def _timed(fn: Callable[[], Tensor], device: torch.device) -> tuple[float, Tensor]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
        "times_s": times,
    }


def pearson(a: Tensor, b: Tensor) -> float | None:
    """Pearson correlation of two attribution vectors, None when one is constant.

    Args:
        a: ``(1, F)`` attributions.
        b: ``(1, F)`` attributions.

    Returns:
        The correlation in float64, or None where it is undefined (e.g. the lasso zeroed
        every coefficient).
    """
    x = a.detach().reshape(-1).to("cpu", torch.float64)
    y = b.detach().reshape(-1).to("cpu", torch.float64)
    x = x - x.mean()
    y = y - y.mean()
    denom = float(x.norm() * y.norm())
    if denom == 0.0 or not math.isfinite(denom):
        return None
    return float((x @ y) / denom)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_config(
    work: Workload, method: str, n_samples: int, device: torch.device, repeats: int, ppe: int, captum_slow_s: float
) -> dict[str, Any]:
    """Time both libraries on one configuration and measure their agreement.

    Args:
        work: the workload.
        method: "lime" or "kernel_shap".
        n_samples: perturbation samples per explanation.
        device: where everything runs.
        repeats: timed runs per library.
        ppe: ``perturbations_per_eval`` for both libraries.
        captum_slow_s: Captum is timed once when its warm-up and first run are both slower.

    Returns:
        The configuration's JSON record.
    """
    record: dict[str, Any] = {"workload": work.name, "method": method, "n_samples": n_samples,
                              "num_features": work.num_features}
    if hasattr(os, "getloadavg"):
        record["load_average_at_start"] = list(os.getloadavg())
    outs: dict[str, dict[int, Tensor]] = {"torchlime": {}, "captum": {}}
    for library in ("torchlime", "captum"):
        explainer = _explainer(library, method, work.forward)
        warm_s, _ = _timed(lambda: _attribute(library, explainer, work, n_samples, ppe, 10_000, device), device)
        note = None
        times = []
        for seed in range(repeats):
            seconds, out = _timed(lambda: _attribute(library, explainer, work, n_samples, ppe, seed, device), device)
            times.append(seconds)
            outs[library][seed] = out
            # Both the warm-up and the first timed run must be slow: one slow run alone is
            # often a load spike on a shared machine.
            if library == "captum" and seed == 0 and repeats > 1 and min(warm_s, seconds) > captum_slow_s:
                note = (f"warm-up {warm_s:.1f} s and first run {seconds:.1f} s > {captum_slow_s:g} s: "
                        f"timed once instead of {repeats} times")
                break
        record[library] = {"warmup_s": warm_s, **_summary(times), "reduced_repeats_note": note}
        _log(f"  {library:9s} {work.name}/{method}/n={n_samples}: median {statistics.median(times):.3f} s "
             f"over {len(times)} (warm-up {warm_s:.3f} s)")
    record["speedup"] = record["captum"]["median_s"] / record["torchlime"]["median_s"]
    a, b = outs["torchlime"][0], outs["captum"][0]
    if 1 not in outs["captum"]:  # untimed extra run for the independent-seed correlation
        outs["captum"][1] = _attribute("captum", _explainer("captum", method, work.forward), work, n_samples, ppe, 1,
                                       device)
    record["correlation"] = pearson(a, b)
    record["correlation_independent_seeds"] = pearson(a, outs["captum"][1])
    record["attribution_abs_max"] = {"torchlime": float(a.abs().max()), "captum": float(b.abs().max())}
    record["nonzero_coefficients"] = {"torchlime": int((a != 0).sum()), "captum": int((b != 0).sum())}
    if method == "lime":
        ridge = {
            (lib, seed): _attribute(lib, _explainer(lib, method, work.forward, ridge=True), work, n_samples, ppe,
                                    seed, device)
            for lib, seed in (("torchlime", 0), ("captum", 0), ("captum", 1))
        }
        record["correlation_ridge"] = pearson(ridge["torchlime", 0], ridge["captum", 0])
        record["correlation_ridge_independent_seeds"] = pearson(ridge["torchlime", 0], ridge["captum", 1])
    else:  # KernelShap's model is fixed (linear regression) in both libraries
        record["correlation_ridge"] = None
        record["correlation_ridge_independent_seeds"] = None
    return record


# -- machine info, output ---------------------------------------------------------------------


def machine_info(device: torch.device) -> dict[str, Any]:
    """Platform, processor, versions and the device's name."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "torchlime": torchlime.__version__,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ModuleNotFoundError:
        info["sklearn"] = None
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())
    return info


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt_time(summary: dict[str, Any]) -> str:
    return f"{summary['median_s']:.3f} ({summary['min_s']:.3f}-{summary['max_s']:.3f}) x{summary['repeats']}"


def _fmt_corr(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.4f}"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per configuration: seconds as median (min-max) xrepeats, speedup, correlations."""
    lines = [
        "| device | workload | method | n_samples | torchlime s | captum s | speedup "
        "| r default (same seed / indep.) | r ridge (same seed / indep.) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        device = res["machine"]["device"]
        for c in res["configurations"]:
            lines.append(
                f"| {device} | {c['workload']} | {c['method']} | {c['n_samples']} | {_fmt_time(c['torchlime'])} "
                f"| {_fmt_time(c['captum'])} | {c['speedup']:.2f}x "
                f"| {_fmt_corr(c['correlation'])} / {_fmt_corr(c['correlation_independent_seeds'])} "
                f"| {_fmt_corr(c['correlation_ridge'])} / {_fmt_corr(c['correlation_ridge_independent_seeds'])} |"
            )
    return "\n".join(lines)


def run_device(device: torch.device, mode: str, repeats: int, ppe: int, captum_slow_s: float) -> dict[str, Any]:
    """Benchmark every workload, method and sample count on one device."""
    started = time.perf_counter()
    info = machine_info(device)
    workloads = make_workloads(device, mode)
    configs = []
    for work in workloads:
        _log(f"[{device}] {work.name}: {work.description}")
        for method in METHODS:
            for n in work.n_samples:
                configs.append(bench_config(work, method, n, device, repeats, ppe, captum_slow_s))
    if hasattr(os, "getloadavg"):
        info["load_average_at_end"] = list(os.getloadavg())
    return {
        "benchmark": "engine",
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "parameters": {
            "mode": mode,
            "repeats": repeats,
            "perturbations_per_eval": ppe,
            "captum_slow_s": captum_slow_s,
            "target": TARGET,
            "num_classes": NUM_CLASSES,
            "seeds": "timed run i uses seed i (torchlime: generator=torch.Generator(device).manual_seed(i); "
            "captum: torch.manual_seed(i)); warm-up uses seed 10000",
            "correlations": "Pearson r of the (1, F) attributions. 'correlation': torchlime seed 0 vs captum "
            "seed 0; on CPU both libraries then draw identical Lime masks (torch.bernoulli on the same "
            "CPU stream), so it checks the solvers. 'correlation_independent_seeds': torchlime seed 0 vs "
            "captum seed 1. With a linear forward the surrogate's targets are noise-free, so r is close "
            "to 1 even with independent samples; null where a vector is constant",
            "interpretable_models": {
                "lime_default": "torchlime.models.Lasso(alpha=0.01) vs captum SkLearnLasso(alpha=0.01)",
                "lime_ridge": "torchlime.models.Ridge(alpha=1.0) vs captum SkLearnRidge(alpha=1.0)",
                "kernel_shap": "each library's default (weighted linear regression)",
            },
            "workloads": {w.name: {"description": w.description, "n_samples": w.n_samples,
                                   "num_features": w.num_features} for w in workloads},
            "timing": "time.perf_counter around one attribute() call, torch.cuda.synchronize() before and "
            "after on CUDA; one untimed warm-up run per configuration and library",
        },
        "configurations": configs,
        "total_wall_s": time.perf_counter() - started,
    }


def parse_args(argv: Sequence[Any] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n_samples 200 (waveform) / 1000 (scalar64), 1 repeat")
    parser.add_argument("--tiny", action="store_true", help="1 s waveform, n_samples 100, for the test suite")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="cpu, cuda, or all (cpu and, when available, cuda); default all")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per library (default 3, 1 with --quick)")
    parser.add_argument("--ppe", type=int, default=100, help="perturbations_per_eval for both libraries (default 100)")
    parser.add_argument("--captum-slow-s", type=float, default=10.0,
                        help="time Captum once when its warm-up and first run both take longer than this (default 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    if args.repeats is None:
        args.repeats = 1 if (args.quick or args.tiny) else 3
    if args.repeats < 1:
        parser.error(f"expected --repeats >= 1, got {args.repeats}")
    if args.ppe < 1:
        parser.error(f"expected --ppe >= 1, got {args.ppe}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("expected a CUDA device for --device cuda, but torch.cuda.is_available() is False")
    return args


def main(argv: Sequence[Any] | None = None) -> list[Path]:
    """Run the benchmark; returns the JSON files written.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when None); paths may be ``Path``s.

    Returns:
        One ``engine_<device>[_<mode>].json`` path per benchmarked device.
    """
    args = parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.device == "all":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    results, paths = [], []
    for name in devices:
        device = torch.device(name)
        result = run_device(device, mode, args.repeats, args.ppe, args.captum_slow_s)
        path = Path(args.out) / (f"engine_{name}.json" if mode == "full" else f"engine_{name}_{mode}.json")
        write_json_atomic(path, result)
        _log(f"wrote {path}")
        results.append(result)
        paths.append(path)
    print(markdown_table(results))
    return paths


if __name__ == "__main__":
    main()
