"""The benchmark harness: ``python -m benchmarks [--quick | --tiny] [--device cpu|cuda|all] [--only ...] [--out DIR]``.

Runs the scenarios of issue 5 for torchlime and its references side by side, on the CPU
and, when present, on CUDA, and writes to ``--out`` (default ``benchmarks/results/``):

- ``<scenario>_<device>.json`` per scenario and device (``_quick``/``_tiny`` before
  ``.json`` for the smoke runs, so they never overwrite full results);
- ``summary_<device>.md`` (same suffixes): machine, versions, command, the targets and
  every scenario's table;
- ``growth_<device>.png`` and ``many_songs_<device>.png`` plots (same suffixes).

Scenarios (``--only`` takes a comma-separated subset):

1. ``engine``: engine overhead vs ``captum.attr.Lime``/``KernelShap`` (trivial model);
2. ``music``: one song end to end vs the MusicLIME reference pipeline, with a breakdown;
3. ``many_songs``: explanations per second as songs per call grow, vs a loop;
4. ``growth``: time and peak memory as n_samples, song length and feature count grow;
5. ``limit``: composition bytes/s vs the device's copy bandwidth, explainer share.

The full CPU run takes about 10 minutes on a 2-core machine, ``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import bench_engine, bench_growth, bench_limit, bench_many, bench_music, bench_quality
from ._context import Context
from ._harness import DEFAULT_OUT, fmt_s, log, machine_info, result_path, write_json_atomic, write_text_atomic

SCENARIOS = {m.NAME: m for m in (bench_engine, bench_music, bench_many, bench_growth, bench_limit)}
#: Run only when named in --only (quality: about 40 minutes on 2 CPU cores; python -m benchmarks.bench_quality).
OPTIONAL = {bench_quality.NAME: bench_quality}
PLOTS = ("many_songs", "growth")
TITLES = {
    "engine": "1. Engine overhead vs Captum",
    "music": "2. One song end to end vs the MusicLIME reference",
    "many_songs": "3. Many songs per call",
    "growth": "4. Cost growth",
    "limit": "5. The limit",
    "quality": "6. Quality per model evaluation (issue 13)",
}


def parse_args(argv: Sequence[Any] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="torchlime's benchmarks, each side by side with its references, on the CPU and CUDA.",
        epilog="scenarios: " + ", ".join(f"{k} ({TITLES[k].split('. ', 1)[1]})" for k in SCENARIOS)
        + ". Results go to <out>/<scenario>_<device>[_quick|_tiny].json, summary_<device>[...].md and PNG plots.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run, about 2 minutes on a 2-core CPU")
    size.add_argument("--tiny", action="store_true", help="smallest run, for the test suite")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="cpu, cuda, or all (cpu and, when available, cuda); default all")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios among {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default: per scenario and mode)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS and s not in OPTIONAL]
    if unknown or not names:
        parser.error(f"expected --only among {list(SCENARIOS)}, got {unknown or args.only!r}")
    args.only = [s for s in {**SCENARIOS, **OPTIONAL} if s in names]  # always in the order
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"expected --repeats >= 1, got {args.repeats}")
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
                          earlier=results, command=command_line(args, name))
            t0 = time.perf_counter()
            try:
                result = {**SCENARIOS, **OPTIONAL}[scenario].run(ctx)
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
            if scenario in PLOTS:
                try:
                    png = result_path(args.out, scenario, name, args.mode, "png")
                    SCENARIOS[scenario].plot(result, png)
                    written.append(png)
                except Exception:  # a plot is a nicety: keep the numbers
                    traceback.print_exc()
        summary = summary_markdown(results, errors, machine, args, time.perf_counter() - started)
        md = result_path(args.out, "summary", name, args.mode, "md")
        write_text_atomic(md, summary)
        written.append(md)
        print(summary)
        log(f"[{name}] wrote {md}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        raise SystemExit(1)
    return written


def command_line(args: argparse.Namespace, device: str) -> str:
    """The command that reproduces this device's run (``--out`` left out)."""
    flags = {"quick": " --quick", "tiny": " --tiny"}.get(args.mode, "")
    only = "" if list(args.only) == list(SCENARIOS) else f" --only {','.join(args.only)}"
    repeats = "" if args.repeats is None else f" --repeats {args.repeats}"
    return f"python -m benchmarks --device {device}{flags}{only}{repeats}"


def summary_markdown(results: dict[str, dict[str, Any]], errors: dict[str, str], machine: dict[str, Any],
                     args: argparse.Namespace, wall_s: float) -> str:
    """The Markdown summary of one device: machine, targets, every scenario's table."""
    device = machine["device"]
    created = next((r["created_utc"] for r in results.values()), "n/a")
    gpu = f", {machine['gpu_name']}" if machine.get("gpu_name") else ""
    lines = [
        f"# torchlime benchmarks: {device} ({args.mode})",
        "",
    ]
    if args.mode != "full":
        lines += [f"**Provisional**: a `{args.mode}` run (fewer, smaller configurations, fewer repeats); "
                  "run without `--quick` for the numbers of record.", ""]
    lines += [
        f"- command: `{command_line(args, device.split(':')[0])}` (from the repository root)",
        f"- created: {created}; wall time {fmt_s(wall_s)}",
        f"- machine: {machine['cpu_model']} ({machine['cpu_count']} CPUs, torch threads "
        f"{machine['torch_num_threads']}){gpu}; {machine['platform']}",
        f"- versions: python {machine['python']}, torch {machine['torch']}, captum {machine['captum']}, "
        f"lime {machine['lime']}, torchlime {machine['torchlime']}, transformers {machine['transformers']}, "
        f"openunmix {machine['openunmix']}",
        f"- load average at start: {machine['load_average_at_start']}",
        "",
        "## Targets",
        "",
        "| target | measured | goal | met | where | note |",
        "|---|---:|---:|---|---|---|",
    ]
    for scenario, result in results.items():
        for t in result.get("targets", []):
            lines.append(f"| {t['target']} | {_fmt_target(t['measured'], t['threshold'])} | {t['comparison']} "
                         f"{_fmt_target(t['threshold'], t['threshold'])} | "
                         f"{'n/a' if t['met'] is None else 'yes' if t['met'] else '**no**'} | {t['where']} "
                         f"| {t['note']} |")
    for scenario in args.only:
        lines += ["", f"## {TITLES[scenario]}", ""]
        if scenario in errors:
            lines.append(f"**Failed**: {errors[scenario]}")
            continue
        lines.append({**SCENARIOS, **OPTIONAL}[scenario].markdown(results[scenario]))
        if scenario in PLOTS:
            png = result_path(".", scenario, device.split(":")[0], args.mode, "png").name
            lines += ["", f"![{scenario}]({png})"]
    return "\n".join(lines) + "\n"


def _fmt_target(x: float | None, threshold: float) -> str:
    if x is None:
        return "n/a"
    if threshold < 1:  # a share or a fraction
        return f"{x:.1%}"
    return f"{x:.1f}x"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
