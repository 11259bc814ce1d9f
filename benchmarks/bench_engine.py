"""Scenario 1, engine overhead: torchlime's ``Lime``/``KernelShap`` against Captum's, side by side.

The model is a fixed random linear map to 4 classes, so (almost) only the explainer is
timed. Two workloads:

- ``waveform``: a 10 s, 22.05 kHz mono waveform ``(1, T)`` with T = 220500, split into
  F = 60 contiguous groups by its feature mask;
- ``scalar64``: ``(1, 64)`` with Captum's default mask (F = 64).

Both libraries get the same forward, ``n_samples``, ``perturbations_per_eval`` and their
own default interpretable model (Captum's ``SkLearnLasso(alpha=0.01)``, torchlime's
``Lasso(alpha=0.01)``: the same objective). Each configuration runs the two libraries
round-robin: one untimed warm-up round, then ``repeats`` rounds of one call each (rounds
alternate which library goes first), so a change in the machine's load hits both alike.

The model's own time is measured apart: the forward alone, called on a ``(ppe, D)``
input as many times as the explainers call it. ``overhead = total - forward`` is the
explainer's own cost; ``overhead_speedup`` (Captum's overhead / torchlime's) is what the
issue's "engine overhead" targets are checked on, ``speedup`` is the plain ratio of totals.

Agreement is the Pearson correlation of the two libraries' ``(1, F)`` attributions
(``return_input_shape=False``) at the same sample count, with each library's default
model and, for ``Lime``, with ridge on both sides (``torchlime.models.Ridge(alpha=1.0)``
vs ``captum._utils.models.SkLearnRidge(alpha=1.0)``), because the lasso may zero most
coefficients of the waveform. Each is reported with the same seed for both libraries
(on CPU their Lime masks are then identical, so this compares the solvers) and with
independent seeds (torchlime 0, Captum 1).

Operator counts (a proxy of the fixed costs that does not depend on the machine): one more
torchlime call per configuration under ``torch.profiler`` gives the aten operator calls,
kernels and scalar reads per phase of the engine's ranges (:func:`profile_explainer`;
:func:`benchmarks.proxies.lime_fit_ops` is the same for any size).

Run it through the harness: ``python -m benchmarks --only engine [--quick] [--device ...]``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import torchlime
from torchlime.models import Ridge

from ._context import Context, target
from ._fixtures import LinearForward
from ._harness import envelope, fmt_count, fmt_s, fmt_x, log, measure, measure_round_robin, ratio
from ._profile import profile_phases, ranged

__all__ = ["NAME", "run", "markdown", "targets", "pearson", "profile_explainer", "OP_PHASES"]

NAME = "engine"
SAMPLE_RATE = 22050
NUM_CLASSES = 4
TARGET = 1
WAVEFORM_GROUPS = 60
PPE = 100
METHODS = ("lime", "kernel_shap")
#: The engine's phases and the model (``bench.model``) in the operator-count table.
OP_PHASES = ("transform", "model", "forward", "kernel", "fit", "other")


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


def make_workloads(ctx: Context) -> list[Workload]:
    """The two workloads on ``ctx.device`` (same values on every device)."""
    gen = torch.Generator().manual_seed(0)  # built on CPU, then moved: identical on all devices
    seconds = ctx.pick(10, 10, 1)
    T = seconds * SAMPLE_RATE
    t = torch.arange(T, dtype=torch.float32) / SAMPLE_RATE
    wave = 0.5 * torch.sin(2 * math.pi * 440.0 * t) + 0.1 * torch.randn(T, generator=gen)
    wave_mask = (torch.arange(T) * WAVEFORM_GROUPS // T).unsqueeze(0)
    wave_weight = torch.randn(T, NUM_CLASSES, generator=gen) / math.sqrt(T)
    scalar = torch.randn(1, 64, generator=gen)
    scalar_weight = torch.randn(64, NUM_CLASSES, generator=gen) / 8.0
    n_wave = ctx.pick([1000, 5000], [200], [100])
    n_scalar = ctx.pick([1000, 5000], [1000], [100])
    device = ctx.device
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


# -- running --------------------------------------------------------------------------------


def _explainer(library: str, method: str, forward: Callable[[Tensor], Tensor], ridge: bool = False) -> Any:
    import captum.attr
    from captum._utils.models.linear_model import SkLearnRidge

    if library == "torchlime":
        if method == "lime":
            return torchlime.Lime(forward, interpretable_model=Ridge(alpha=1.0) if ridge else None)
        return torchlime.KernelShap(forward)
    if method == "lime":
        return captum.attr.Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0) if ridge else None)
    return captum.attr.KernelShap(forward)


def _attribute(library: str, explainer: Any, work: Workload, n_samples: int, seed: int, device: torch.device) -> Tensor:
    kwargs: dict[str, Any] = dict(
        target=TARGET, feature_mask=work.feature_mask, n_samples=n_samples,
        perturbations_per_eval=PPE, return_input_shape=False,
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


def _forward_only(work: Workload, n_samples: int, device: torch.device, repeats: int) -> dict[str, Any]:
    """The model alone, called as the explainers call it: ceil(n / ppe) times on (<= ppe, D)."""
    D = work.inputs.shape[-1]
    x = work.inputs.expand(PPE, D).contiguous()
    calls = [min(PPE, n_samples - s) for s in range(0, n_samples, PPE)]

    def go() -> Tensor:
        out = None
        for c in calls:
            out = work.forward(x[:c])
        return out

    summary, _ = measure(go, device, repeats=repeats, warmup=1)
    return summary


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


def profile_explainer(method: str, work: Workload, n_samples: int, device: torch.device,
                      interpretable_model: Any = None) -> dict[str, Any]:
    """Operator calls of one torchlime ``attribute`` call per phase (the model in a ``bench.model`` range).

    One warm-up call, then one call under ``torch.profiler`` (see :mod:`benchmarks._profile`).

    Returns:
        ``per_phase`` (label -> ops, kernels, scalar_reads, cpu_time_s, device_time_s),
        ``total`` (the sums) and ``profiled_wall_s``.
    """
    forward = ranged("model", work.forward)
    if method == "lime":
        explainer = torchlime.Lime(forward, interpretable_model=interpretable_model)
    else:
        explainer = torchlime.KernelShap(forward)
    _attribute("torchlime", explainer, work, n_samples, 10_000, device)
    profile, _ = profile_phases(lambda: _attribute("torchlime", explainer, work, n_samples, 0, device), device)
    keys = ("ops", "kernels", "scalar_reads", "cpu_time_s", "device_time_s")
    return {"per_phase": {k: {kk: v[kk] for kk in keys} for k, v in profile["phases"].items()},
            "total": {k: profile["total"][k] for k in keys}, "profiled_wall_s": profile["wall_s"]}


def bench_config(work: Workload, method: str, n_samples: int, ctx: Context, repeats: int) -> dict[str, Any]:
    """Time both libraries and the bare forward on one configuration; measure agreement."""
    device = ctx.device
    record: dict[str, Any] = {"workload": work.name, "method": method, "n_samples": n_samples,
                              "num_features": work.num_features}
    outs: dict[str, dict[int, Tensor]] = {}
    fns = {}
    for library in ("torchlime", "captum"):
        explainer = _explainer(library, method, work.forward)
        # The warm-up uses seed 10000, timed run i seed i (run 0 is the one compared).
        seeds = iter([10_000, *range(10_000)])
        by_seed: dict[int, Tensor] = {}

        def go(library: str = library, explainer: Any = explainer, seeds: Any = seeds, by_seed: Any = by_seed) -> None:
            seed = next(seeds)
            by_seed[seed] = _attribute(library, explainer, work, n_samples, seed, device)

        fns[library] = go
        outs[library] = by_seed
    # Round-robin, one run of each library per round (each round starting with the other).
    times, _ = measure_round_robin(fns, device, repeats, warmup=1)
    for library in fns:
        record[library] = times[library]
        log(f"  {library:9s} {work.name}/{method}/n={n_samples}: median {fmt_s(times[library]['median_s'])} "
            f"over {times[library]['repeats']}")
    record["ops"] = profile_explainer(method, work, n_samples, device)
    fwd = _forward_only(work, n_samples, device, repeats=max(5, repeats))
    record["model_forward"] = fwd
    # The forward's least time is its own cost (a busy machine only adds to it); taking it
    # leaves the most time to the explainers, which lowers their overhead ratio, never raises it.
    f = fwd["min_s"]
    t_ours, t_ref = record["torchlime"]["median_s"], record["captum"]["median_s"]
    record["speedup"] = ratio(t_ref, t_ours)
    record["overhead_s"] = {"torchlime": t_ours - f, "captum": t_ref - f}
    record["overhead_speedup"] = ratio(t_ref - f, t_ours - f) if t_ours - f > 1e-6 else None
    a, b = outs["torchlime"][0], outs["captum"][0]
    b1 = outs["captum"].get(1)
    if b1 is None:  # untimed extra run for the independent-seed correlation
        b1 = _attribute("captum", _explainer("captum", method, work.forward), work, n_samples, 1, device)
    record["correlation"] = pearson(a, b)
    record["correlation_independent_seeds"] = pearson(a, b1)
    record["attribution_abs_max"] = {"torchlime": float(a.abs().max()), "captum": float(b.abs().max())}
    record["nonzero_coefficients"] = {"torchlime": int((a != 0).sum()), "captum": int((b != 0).sum())}
    if method == "lime":
        ridge = {
            (lib, seed): _attribute(lib, _explainer(lib, method, work.forward, ridge=True), work, n_samples, seed, device)
            for lib, seed in (("torchlime", 0), ("captum", 0), ("captum", 1))
        }
        record["correlation_ridge"] = pearson(ridge["torchlime", 0], ridge["captum", 0])
        record["correlation_ridge_independent_seeds"] = pearson(ridge["torchlime", 0], ridge["captum", 1])
    else:  # KernelShap's model is fixed (linear regression) in both libraries
        record["correlation_ridge"] = None
        record["correlation_ridge_independent_seeds"] = None
    return record


def run(ctx: Context) -> dict[str, Any]:
    """Scenario 1 on one device: every workload, method and sample count."""
    import captum

    started = time.perf_counter()
    repeats = ctx.repeats or ctx.pick(3, 3, 1)  # --quick keeps 3: its configurations are cheap
    workloads = make_workloads(ctx)
    configs = []
    for work in workloads:
        log(f"[{ctx.device}] engine/{work.name}: {work.description}")
        for method in METHODS:
            for n in work.n_samples:
                configs.append(bench_config(work, method, n, ctx, repeats))
    parameters = {
        "repeats": repeats,
        "perturbations_per_eval": PPE,
        "round_robin": "per configuration, torchlime and Captum run one call each per round, rounds alternating "
        "which goes first, one warm-up round then `repeats` timed rounds",
        "ops": "one more torchlime call (after a warm-up) under torch.profiler, the model wrapped in a bench.model "
        "range: aten operator calls (nested included), kernels (CPU: computing calls with no computing call "
        "below; CUDA: device kernels launched) and scalar reads per phase of the engine's ranges "
        "(torchlime.transform, .forward, .kernel, .fit; other = outside them: sampling, checks, bookkeeping)",
        "captum_version": captum.__version__,
        "target": TARGET,
        "num_classes": NUM_CLASSES,
        "seeds": "warm-up seed 10000, timed run i seed i, compared run seed 0 (torchlime: "
        "generator=torch.Generator(device).manual_seed(seed); captum: torch.manual_seed(seed))",
        "overhead": "overhead_s = median total - min model_forward, model_forward = the forward alone called "
        "ceil(n/ppe) times on (ppe, D) (its least time: its own cost); overhead_speedup = captum overhead / "
        "torchlime overhead (null when torchlime's overhead is not positive)",
        "correlations": "Pearson r of the (1, F) attributions. 'correlation': torchlime seed 0 vs captum seed 0; "
        "on CPU both libraries then draw identical Lime masks, so it checks the solvers. "
        "'correlation_independent_seeds': torchlime seed 0 vs captum seed 1. Null where a vector is constant",
        "interpretable_models": {
            "lime_default": "torchlime.models.Lasso(alpha=0.01) vs captum SkLearnLasso(alpha=0.01)",
            "lime_ridge": "torchlime.models.Ridge(alpha=1.0) vs captum SkLearnRidge(alpha=1.0)",
            "kernel_shap": "each library's default (weighted linear regression)",
        },
        "workloads": {w.name: {"description": w.description, "n_samples": w.n_samples,
                               "num_features": w.num_features} for w in workloads},
    }
    result = envelope(ctx, NAME, parameters, {"configurations": configs}, started)
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 5: overhead vs Captum >= 10x (waveform) and >= 50x (64 features) on CPU, >= 100x on GPU."""
    cuda = result["device"].startswith("cuda")
    checks = []
    for workload, cpu_goal in (("waveform", 10.0), ("scalar64", 50.0)):
        rows = [c for c in result["configurations"] if c["workload"] == workload]
        if not rows:
            continue
        worst = min(rows, key=lambda c: c["overhead_speedup"] if c["overhead_speedup"] is not None else math.inf)
        measured = worst["overhead_speedup"]
        checks.append(target(
            f"engine overhead vs Captum, {workload}", measured, 100.0 if cuda else cpu_goal,
            where=f"worst of {len(rows)} configurations ({worst['method']}, n={worst['n_samples']})",
            note="ratio of overheads (total minus the bare forward); ratio of totals: "
            + ", ".join(f"{c['method']}/{c['n_samples']}: {fmt_x(c['speedup'])}" for c in rows),
        ))
    return checks


def markdown(result: dict[str, Any]) -> str:
    """Table: one row per configuration."""
    lines = [
        "| workload | method | n_samples | torchlime | captum | speedup | forward | overhead torchlime / captum "
        "| overhead speedup | r (same seed / indep.) | r ridge |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["configurations"]:
        r = "n/a" if c["correlation"] is None else f"{c['correlation']:.4f}"
        ri = "n/a" if c["correlation_independent_seeds"] is None else f"{c['correlation_independent_seeds']:.3f}"
        rr = "n/a" if c["correlation_ridge"] is None else f"{c['correlation_ridge']:.4f}"
        lines.append(
            f"| {c['workload']} | {c['method']} | {c['n_samples']} | {_spread(c['torchlime'])} | {_spread(c['captum'])} "
            f"| {fmt_x(c['speedup'])} | {fmt_s(c['model_forward']['min_s'])} "
            f"| {fmt_s(c['overhead_s']['torchlime'])} / {fmt_s(c['overhead_s']['captum'])} "
            f"| {fmt_x(c['overhead_speedup'])} | {r} / {ri} | {rr} |"
        )
    lines += ["", "torchlime's operator calls per `attribute` call, aten calls / kernels per phase (one profiled "
              "call; model = the linear forward):", "",
              "| workload | method | n_samples | " + " | ".join(OP_PHASES) + " | total |",
              "|---|---|---:|" + "---:|" * (len(OP_PHASES) + 1)]
    for c in result["configurations"]:
        ops = c.get("ops")
        if ops is None:
            continue
        cells = []
        for k in OP_PHASES:
            p = ops["per_phase"].get(k)
            cells.append("-" if p is None else f"{fmt_count(p['ops'])} / {fmt_count(p['kernels'])}")
        lines.append(f"| {c['workload']} | {c['method']} | {c['n_samples']} | " + " | ".join(cells)
                     + f" | {fmt_count(ops['total']['ops'])} / {fmt_count(ops['total']['kernels'])} |")
    return "\n".join(lines)


def _spread(s: dict[str, Any]) -> str:
    if s["repeats"] == 1:
        return f"{fmt_s(s['median_s'])} (x1)"
    return f"{fmt_s(s['median_s'])} (IQR {fmt_s(s['iqr_s'])}, x{s['repeats']})"

