"""The benchmark harness: ``python -m benchmarks [--quick | --tiny] [--device cpu|cuda|all] [--only ...] [--out DIR]``.

Runs the scenarios for torchlime and its references side by side, on the CPU and, when
present, on CUDA, and writes to ``--out`` (default ``benchmarks/results/``):

- ``<scenario>_<device>.json`` per scenario and device (``_quick``/``_tiny`` before
  ``.json`` for the smoke runs, so they never overwrite full results);
- ``summary_<device>.md`` (same suffixes): every scenario's table, those of this run and,
  for the scenarios ``--only`` left out, those of the JSON files already in ``--out`` (each
  with the command, time, load and threads of its own run): ``--only X`` updates X in the
  summary and keeps the rest;
- ``<scenario>_<device>.png`` plots for the scenarios that draw one (same suffixes).

Scenarios (``--only`` takes a comma-separated subset):

1. ``engine``: engine overhead vs ``captum.attr.Lime``/``KernelShap`` (trivial model), with
   the operator calls per phase;
2. ``music``: one song end to end vs the MusicLIME reference pipeline, with a breakdown
   and the operator calls per phase;
3. ``many_songs``: explanations per second as songs per call grow, vs a loop;
4. ``growth``: time and peak memory as n_samples, song length and feature count grow
   (``Lime`` to 10^7 samples, songs to 2 hours);
5. ``limit``: composition bytes/s vs the device's copy bandwidth, explainer share;
6. ``compat``: ``torchlime.compat.LimeBase`` vs ``lime.lime_base.LimeBase``, one problem per
   mode and a batch of problems (CPU only);

and, only when named in ``--only`` (about 30 minutes on 2 CPU cores):

7. ``quality``: error per model evaluation of every sampler vs Captum, shap, the MusicLIME
   reference and exact Shapley values, interval coverage, samples and seconds to 10% on the
   demo song (:mod:`benchmarks.bench_quality`).

``--compare-to PATH`` runs the chosen scenarios against the torchlime of another checkout
as well, round-robin with this one (:mod:`benchmarks._compare`), and writes
``compare_<device>[_<mode>].json`` and ``.md`` (ratios, other / current).

The full CPU run takes about 10 minutes on a 2-core machine, ``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import bench_compat, bench_engine, bench_growth, bench_limit, bench_many, bench_music, bench_quality
from ._context import Context
from ._harness import (
    DEFAULT_OUT,
    SCHEMA_VERSION,
    fmt_s,
    log,
    machine_info,
    result_path,
    write_json_atomic,
    write_text_atomic,
)

SCENARIOS = {m.NAME: m for m in (bench_engine, bench_music, bench_many, bench_growth, bench_limit, bench_compat,
                                 bench_quality)}
#: Run only when named in --only (quality: about 30 minutes on 2 CPU cores; python -m benchmarks.bench_quality).
ON_REQUEST = (bench_quality.NAME,)
DEFAULT = [s for s in SCENARIOS if s not in ON_REQUEST]


TITLES = {
    "engine": "1. Engine overhead vs Captum",
    "music": "2. One song end to end vs the MusicLIME reference",
    "many_songs": "3. Many songs per call",
    "growth": "4. Cost growth",
    "limit": "5. The limit",
    "compat": "6. compat.LimeBase vs lime",
    "quality": "7. Explanation quality",
}


def title(scenario: str) -> str:
    return TITLES.get(scenario) or getattr(SCENARIOS[scenario], "TITLE", scenario)


def plots(scenario: str) -> bool:
    return callable(getattr(SCENARIOS[scenario], "plot", None))


def parse_args(argv: Sequence[Any] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="torchlime's benchmarks, each side by side with its references, on the CPU and CUDA.",
        epilog="scenarios: " + ", ".join(f"{k} ({title(k).split('. ', 1)[-1]})" for k in SCENARIOS)
        + ". Results go to <out>/<scenario>_<device>[_quick|_tiny].json, summary_<device>[...].md and PNG plots.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run, about 2 minutes on a 2-core CPU")
    size.add_argument("--tiny", action="store_true", help="smallest run, for the test suite")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="cpu, cuda, or all (cpu and, when available, cuda); default all")
    parser.add_argument("--only", default=",".join(DEFAULT),
                        help=f"comma-separated scenarios among {','.join(SCENARIOS)} (default: all but "
                        f"{', '.join(ON_REQUEST)})")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default: per scenario and mode)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--compare-to", type=Path, default=None, metavar="PATH",
                        help="also run the scenarios against the torchlime of the checkout at PATH, round-robin "
                        "with this one, and write compare_<device>[_mode].json/.md (ratios other / current)")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare-to: runs per side (default 2)")
    args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        parser.error(f"expected --only among {list(SCENARIOS)}, got {unknown or args.only!r}")
    args.only = [s for s in SCENARIOS if s in names]  # always in the suite's order
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"expected --repeats >= 1, got {args.repeats}")
    if args.rounds < 1:
        parser.error(f"expected --rounds >= 1, got {args.rounds}")
    if args.compare_to is not None and not (args.compare_to / "torchlime" / "__init__.py").is_file():
        parser.error(f"expected --compare-to to be a checkout holding torchlime/__init__.py, got {args.compare_to}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("expected a CUDA device for --device cuda, but torch.cuda.is_available() is False")
    args.mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    return args


def main(argv: Sequence[Any] | None = None) -> list[Path]:
    """Run the harness; returns the files written. Exits non-zero if a scenario failed.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when None); paths may be ``Path``s.
    """
    args = parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    if args.compare_to is not None:
        return _compare_main(args, devices)
    written: list[Path] = []
    failed: list[str] = []
    for name in devices:
        device = torch.device(name)
        machine = machine_info(device)
        results: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        started = time.perf_counter()
        for scenario in args.only:
            log(f"[{name}] {scenario} ({args.mode})")
            ctx = Context(device=device, mode=args.mode, repeats=args.repeats, out=args.out, machine=machine,
                          earlier=results, command=command_line(args, name, [scenario]))
            t0 = time.perf_counter()
            try:
                result = SCENARIOS[scenario].run(ctx)
            except Exception as err:  # one broken scenario must not lose the others' results
                traceback.print_exc()
                errors[scenario] = f"{type(err).__name__}: {err}"
                failed.append(f"{scenario}/{name}")
                continue
            results[scenario] = result
            path = result_path(args.out, scenario, name, args.mode)
            write_json_atomic(path, result)
            written.append(path)
            log(f"[{name}] {scenario}: {fmt_s(time.perf_counter() - t0)}, wrote {path}")
            if plots(scenario):
                try:
                    png = result_path(args.out, scenario, name, args.mode, "png")
                    SCENARIOS[scenario].plot(result, png)
                    written.append(png)
                except Exception:  # a plot is a nicety: keep the numbers
                    traceback.print_exc()
        merged = merge_results(args.out, name, args.mode, results)
        summary = summary_markdown(merged, errors, machine, args, time.perf_counter() - started)
        md = result_path(args.out, "summary", name, args.mode, "md")
        write_text_atomic(md, summary)
        written.append(md)
        print(summary)
        log(f"[{name}] wrote {md}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        raise SystemExit(1)
    return written


def _compare_main(args: argparse.Namespace, devices: list[str]) -> list[Path]:
    from ._compare import compare

    written: list[Path] = []
    for device in devices:
        log(f"[{device}] comparing with {args.compare_to}: {', '.join(args.only)} ({args.mode}, {args.rounds} rounds)")
        comparison, paths = compare(args.only, device, args.mode, args.compare_to, args.rounds, args.out,
                                    repeats=args.repeats)
        written += paths
        print(paths[-1].read_text())
        if comparison["errors"]:
            log(f"[{device}] failed runs: {json.dumps(comparison['errors'])}")
    return written


def merge_results(out: Path, device: str, mode: str, fresh: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """This run's results, and for every other scenario the JSON already in ``out`` (if any), in suite order.

    Only JSON of this harness's ``SCHEMA_VERSION``, scenario and mode is read back.
    """
    merged: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        if scenario in fresh:
            merged[scenario] = fresh[scenario]
            continue
        path = result_path(out, scenario, device, mode)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # A result written by an older harness (another schema) is left out: its tables differ.
        same = (data.get("scenario"), data.get("mode"), data.get("schema_version")) == (scenario, mode, SCHEMA_VERSION)
        if same:
            merged[scenario] = {**data, "_earlier": True}
    return merged


def command_line(args: argparse.Namespace, device: str, only: Sequence[str] | None = None) -> str:
    """The command that reproduces this device's run (``--out`` left out)."""
    only = list(args.only if only is None else only)
    flags = {"quick": " --quick", "tiny": " --tiny"}.get(args.mode, "")
    only_flag = "" if only == DEFAULT else f" --only {','.join(only)}"
    repeats = "" if args.repeats is None else f" --repeats {args.repeats}"
    return f"python -m benchmarks --device {device}{flags}{only_flag}{repeats}"


def summary_markdown(results: dict[str, dict[str, Any]], errors: dict[str, str], machine: dict[str, Any],
                     args: argparse.Namespace, wall_s: float) -> str:
    """The Markdown summary of one device: machine, the runs, targets, every scenario's table.

    Args:
        results: by scenario, this run's and (marked ``_earlier``) those read back from ``--out``.
        errors: the scenarios that failed in this run.
        machine: :func:`benchmarks._harness.machine_info` of this run.
        args: the parsed command line.
        wall_s: this run's wall time.
    """
    device = machine["device"]
    gpu = f", {machine['gpu_name']}" if machine.get("gpu_name") else ""
    checkout = machine.get("torchlime_checkout") or {}
    lines = [f"# torchlime benchmarks: {device} ({args.mode})", ""]
    if args.mode != "full":
        lines += [f"**Provisional**: a `{args.mode}` run (fewer, smaller configurations, fewer repeats); "
                  "run without `--quick` for the numbers of record.", ""]
    lines += [
        f"- this run: `{command_line(args, device.split(':')[0])}` (from the repository root); wall time "
        f"{fmt_s(wall_s)}",
        f"- machine: {machine['cpu_model']} ({machine['cpu_count']} CPUs, torch threads "
        f"{machine['torch_num_threads']}{_thread_env(machine)}){gpu}; {machine['platform']}",
        f"- versions: python {machine['python']}, torch {machine['torch']}, captum {machine['captum']}, "
        f"lime {machine['lime']}, torchlime {machine['torchlime']} ({checkout.get('commit') or 'no git commit'}), "
        f"transformers {machine['transformers']}, openunmix {machine['openunmix']}",
        "",
        "Each scenario's run (a scenario not in this run keeps the result of its last run in this folder):",
        "",
        "| scenario | created (UTC) | command | torch threads | load average at start / end | torchlime commit |",
        "|---|---|---|---:|---|---|",
    ]
    for scenario, result in results.items():
        m = result.get("machine", {})
        commit = (m.get("torchlime_checkout") or {}).get("commit") or "n/a"
        lines.append(f"| {scenario}{' (earlier run)' if result.get('_earlier') else ''} | {result.get('created_utc')} "
                     f"| `{result.get('command')}` | {m.get('torch_num_threads')}{_thread_env(m)} "
                     f"| {_load(m.get('load_average_at_start'))} / {_load(m.get('load_average_at_end'))} "
                     f"| {commit[:12]} |")
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | goal | met | where | note |",
        "|---|---:|---:|---|---|---|",
    ]
    for scenario, result in results.items():
        for t in result.get("targets", []):
            lines.append(f"| {t['target']} | {_fmt_target(t['measured'], t['threshold'], t.get('unit'))} "
                         f"| {t['comparison']} {_fmt_target(t['threshold'], t['threshold'], t.get('unit'))} | "
                         f"{'n/a' if t['met'] is None else 'yes' if t['met'] else '**no**'} | {t['where']} "
                         f"| {t['note']} |")
    for scenario in SCENARIOS:
        if scenario not in results and scenario not in errors:
            continue
        lines += ["", f"## {title(scenario)}", ""]
        if scenario in errors:
            lines.append(f"**Failed** in this run: {errors[scenario]}")
            continue
        lines.append(SCENARIOS[scenario].markdown(results[scenario]))
        png = result_path(".", scenario, device.split(":")[0], args.mode, "png")
        if plots(scenario) and (Path(args.out) / png.name).is_file():
            lines += ["", f"![{scenario}]({png.name})"]
    return "\n".join(lines) + "\n"


def _thread_env(machine: dict[str, Any]) -> str:
    env = machine.get("thread_env") or {}
    return "".join(f", {k}={v}" for k, v in env.items())


def _load(load: Any) -> str:
    return "n/a" if not load else f"{load[0]:.2f}"


def _fmt_target(x: float | None, threshold: float, unit: str | None = None) -> str:
    if x is None:
        return "n/a"
    if unit:
        return f"{x:.3g} {unit}"
    if threshold < 1:  # a share or a fraction
        return f"{x:.1%}"
    return f"{x:.2f}x" if threshold == 1 else f"{x:.1f}x"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
