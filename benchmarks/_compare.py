"""The suite against another checkout of torchlime, round-robin in one run: ``--compare-to PATH``.

Both sides run this checkout's benchmark code, each scenario as ``python -m benchmarks
--only <scenario>`` in a fresh subprocess whose working folder holds only a link to this
``benchmarks`` package and whose ``PYTHONPATH`` starts with that folder, then the side's
checkout (``PATH`` for "other", the torchlime this process imported for "current"): the
same benchmark, two libraries. Rounds alternate which side goes first, scenario by scenario,
so both sides of a scenario run minutes apart under about the same load.

Every number the scenario's JSON holds that says how fast or how big (each timing
summary's ``median_s``, each ``ops``/``kernels`` count, each ``peak*_bytes``) becomes a
metric, named by its place in the JSON (list items by their identifying fields). Per
metric: the median over rounds on each side and ``ratio = other / current`` (above 1:
the current checkout is faster or smaller), with the per-round paired ratios. Metrics of
code that is the same on both sides (Captum, lime, the reference pipeline, copy bandwidth,
the bare model, the benchmark's sketches) are kept apart as the run's noise band.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._harness import (
    checkout_of,
    fmt_bytes,
    fmt_count,
    fmt_s,
    load_average,
    log,
    machine_info,
    result_path,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["compare", "metrics", "markdown", "REFERENCE_PARTS"]

SCHEMA_VERSION = 1
#: Path parts of metrics whose code is the same on both sides (not torchlime's).
REFERENCE_PARTS = frozenset({"captum", "reference", "copy", "copy_bandwidth", "model_forward", "inplace_probe",
                             "bmm_probe", "inplace", "bmm", "lime", "lime_loop"})
#: Fields that name a list item in a metric's label, in this order.
ID_KEYS = ("workload", "method", "sweep", "mode", "name", "songs_per_call", "seconds", "minutes", "n_samples", "n",
           "F", "k", "B", "features", "segments", "stems")
SKIP_KEYS = frozenset({"machine", "parameters", "targets", "times_s", "warmup_s", "profile", "ops_by_phase",
                       "breakdown_s", "sweeps"})
BYTES_KEYS = frozenset({"peak_bytes", "peak_total_bytes", "peak_alloc_bytes"})
COUNT_KEYS = frozenset({"ops", "kernels"})
SLOWER = 1 / 1.1  # a ratio below this in every round is reported as a slowdown


def metrics(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every speed and size number of a scenario's JSON, by label: ``{label: {value, unit, kind}}``."""
    out: dict[str, dict[str, Any]] = {}

    def emit(path: list[str], value: float, unit: str) -> None:
        kind = "reference" if any(p.split("[", 1)[0] in REFERENCE_PARTS for p in path) else "torchlime"
        out["/".join(path)] = {"value": float(value), "unit": unit, "kind": kind}

    def walk(obj: Any, path: list[str]) -> None:
        if isinstance(obj, dict):
            if "median_s" in obj and "times_s" in obj:
                emit(path, obj["median_s"], "s")
                return
            for key, value in obj.items():
                if key in SKIP_KEYS:
                    continue
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if number and key in COUNT_KEYS:
                    emit(path + [key], value, "count")
                elif number and key in BYTES_KEYS:
                    emit(path + [key], value, "bytes")
                else:
                    walk(value, path + [key])
        elif isinstance(obj, list):
            for i, item in enumerate(obj):
                walk(item, path[:-1] + [path[-1] + _item_label(item, i)] if path else [_item_label(item, i)])

    walk({k: v for k, v in result.items() if k not in SKIP_KEYS}, [])
    return out


def _item_label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        parts = [f"{k}={_short(item[k])}" for k in ID_KEYS if k in item and isinstance(item[k], (str, int, float))]
        if parts:
            return "[" + ",".join(parts) + "]"
    return f"[{index}]"


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _side_env(pythonpath: Sequence[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def compare(scenarios: Sequence[str], device: str, mode: str, other: Path, rounds: int, out: Path,
            repeats: int | None = None, current: Path | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Run ``scenarios`` on both checkouts, round-robin, and write the comparison.

    Args:
        scenarios: names, run one at a time in this order.
        device: "cpu" or "cuda".
        mode: "full", "quick" or "tiny".
        other: the other checkout's root (the folder holding its ``torchlime`` package).
        rounds: runs of each scenario per side.
        out: where ``compare_<device>[_<mode>].json`` and ``.md`` go.
        repeats: ``--repeats`` for every run (None: the scenarios' defaults).
        current: this side's checkout (default: where the imported torchlime lives).

    Returns:
        ``(the comparison, the files written)``.
    """
    import torchlime

    other = Path(other).resolve()
    if not (other / "torchlime" / "__init__.py").is_file():
        raise ValueError(f"expected --compare-to to be a checkout holding torchlime/__init__.py, got {other}")
    current = Path(current).resolve() if current else Path(torchlime.__file__).resolve().parent.parent
    sides = {"current": current, "other": other}
    package = Path(__file__).resolve().parent
    machine = machine_info(device)  # the runs inherit this process's environment (threads included)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    values: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    info: dict[str, dict[str, Any]] = {}
    errors: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        shim = Path(tmp) / "shim"
        shim.mkdir()
        (shim / "benchmarks").symlink_to(package, target_is_directory=True)
        for scenario in scenarios:
            values[scenario] = {}
            for r in range(rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    folder = Path(tmp) / side / f"round{r}"
                    run = _run_side(scenario, device, mode, repeats, shim, sides[side], folder)
                    run.update(side=side, round=r)
                    runs.append(run)
                    if "error" in run:
                        errors.setdefault(scenario, {})[f"{side} round {r}"] = run["error"]
                        log(f"[compare] {scenario} {side} round {r}: {run['error']}")
                        continue
                    result = json.loads(Path(run["path"]).read_text())
                    info.setdefault(side, {"checkout": result["machine"].get("torchlime_checkout"),
                                           "torchlime": result["machine"].get("torchlime")})
                    for label, m in metrics(result).items():
                        slot = values[scenario].setdefault(label, {"unit": m["unit"], "kind": m["kind"],
                                                                   "current": [None] * rounds,
                                                                   "other": [None] * rounds})
                        slot[side][r] = m["value"]
                    log(f"[compare] {scenario} {side} round {r}: {fmt_s(run['wall_s'])}")
    comparison = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m benchmarks --compare-to {other} --device {device}"
        + {"quick": " --quick", "tiny": " --tiny"}.get(mode, "") + f" --rounds {rounds} --only {','.join(scenarios)}"
        + ("" if repeats is None else f" --repeats {repeats}"),
        "device": device,
        "mode": mode,
        "rounds": rounds,
        "machine": machine,
        "sides": {side: {"root": str(root), **info.get(side, {"checkout": checkout_of(str(root / "torchlime" /
                                                                                      "__init__.py"))})}
                  for side, root in sides.items()},
        "ratio": "other / current per metric (medians over rounds; above 1: the current checkout is faster or "
        "smaller); paired: other / current within each round",
        "method": __doc__.strip(),
        "runs": runs,
        "scenarios": {s: _summarize(values[s]) for s in scenarios},
        "errors": errors,
        "total_wall_s": time.perf_counter() - started,
    }
    json_path = result_path(out, "compare", device, mode)
    md_path = result_path(out, "compare", device, mode, "md")
    write_json_atomic(json_path, comparison)
    write_text_atomic(md_path, markdown(comparison))
    return comparison, [json_path, md_path]


def _run_side(scenario: str, device: str, mode: str, repeats: int | None, shim: Path, root: Path,
              folder: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks", "--only", scenario, "--device", device, "--out", str(folder)]
    if mode != "full":
        cmd.append(f"--{mode}")
    if repeats is not None:
        cmd += ["--repeats", str(repeats)]
    folder.mkdir(parents=True, exist_ok=True)
    load = load_average()
    start = time.perf_counter()
    with open(folder / "log.txt", "w") as logf:
        proc = subprocess.run(cmd, cwd=shim, env=_side_env([shim, root]), stdout=subprocess.DEVNULL, stderr=logf)
    run = {"scenario": scenario, "wall_s": time.perf_counter() - start, "load_average_at_start": load,
           "load_average_at_end": load_average()}
    path = result_path(folder, scenario, device, mode)
    if proc.returncode != 0 or not path.is_file():
        tail = (folder / "log.txt").read_text().strip().splitlines()[-3:]
        run["error"] = f"exited {proc.returncode}: {' | '.join(tail)}"
    else:
        run["path"] = str(path)
    return run


def _median(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _summarize(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for label, v in values.items():
        cur, oth = _median(v["current"]), _median(v["other"])
        paired = [o / c for c, o in zip(v["current"], v["other"]) if c and o is not None]
        ratio = oth / cur if cur and oth is not None else None
        out[label] = {**v, "current_median": cur, "other_median": oth, "ratio": ratio, "paired_ratios": paired,
                      "slower": bool(paired) and v["unit"] == "s" and max(paired) < SLOWER}
    return out


def _geomean(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return fmt_s(value) if unit == "s" else fmt_bytes(value) if unit == "bytes" else fmt_count(value)


def _fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def markdown(c: dict[str, Any]) -> str:
    """Per scenario: the torchlime metrics' ratios (times, operator counts, memory), then the noise band."""
    cur, oth = c["sides"]["current"], c["sides"]["other"]
    m = c.get("machine") or {}
    threads = "".join(f", {k}={v}" for k, v in (m.get("thread_env") or {}).items())
    lines = [f"# torchlime benchmarks: current vs another checkout ({c['device']}, {c['mode']})", "",
             f"- command: `{c['command']}`", f"- created: {c['created_utc']}; wall time {fmt_s(c['total_wall_s'])}",
             f"- machine: {m.get('cpu_model')} ({m.get('cpu_count')} CPUs, torch threads {m.get('torch_num_threads')}"
             f"{threads}); python {m.get('python')}, torch {m.get('torch')}, captum {m.get('captum')}, lime "
             f"{m.get('lime')}, transformers {m.get('transformers')}, openunmix {m.get('openunmix')}",
             f"- current: {cur.get('checkout')} (torchlime {cur.get('torchlime')})",
             f"- other: {oth.get('checkout')} (torchlime {oth.get('torchlime')})",
             f"- ratio = other / current (above 1: the current checkout is faster or smaller); {c['rounds']} rounds "
             "per side, alternating which side goes first; paired = the per-round ratios",
             "- load average at the start of each run: " + ", ".join(
                 f"{r['scenario']}/{r['side']}/{r['round']}: {r['load_average_at_start'][0]:.1f}" for r in c["runs"]
                 if r.get("load_average_at_start")), ""]
    for scenario, ms in c["scenarios"].items():
        lines += [f"## {scenario}", ""]
        for where, err in c["errors"].get(scenario, {}).items():
            lines.append(f"- **failed** ({where}): {err}")
        ours = {k: v for k, v in ms.items() if v["kind"] == "torchlime"}
        ref = {k: v for k, v in ms.items() if v["kind"] == "reference"}
        times = {k: v for k, v in ours.items() if v["unit"] == "s"}
        # Operator counts: totals, the model's and anything outside a phase split (an older checkout has
        # no engine ranges, so its per-phase counts other than the model's are not comparable).
        counts = {k: v for k, v in ours.items() if v["unit"] == "count" and v["ratio"] is not None
                  and ("/per_phase/" not in k or "/per_phase/model/" in k)}
        sizes = {k: v for k, v in ours.items() if v["unit"] == "bytes"}
        t = [v["ratio"] for v in times.values() if v["ratio"]]
        r = [v["ratio"] for v in ref.values() if v["unit"] == "s" and v["ratio"]]
        if t:
            lines.append(f"- torchlime times: geometric mean {_fmt_ratio(_geomean(t))}, range "
                         f"{_fmt_ratio(min(t))} .. {_fmt_ratio(max(t))} over {len(t)} metrics")
        if r:
            lines.append(f"- unchanged code (references, copy, bare model: the noise band): geometric mean "
                         f"{_fmt_ratio(_geomean(r))}, range {_fmt_ratio(min(r))} .. {_fmt_ratio(max(r))}")
        slower = [k for k, v in times.items() if v["slower"]]
        lines.append(f"- slower in every round by more than 10%: {', '.join(slower) if slower else 'none'}")
        more = [k for k, v in counts.items() if v["ratio"] < SLOWER]
        if counts:
            lines.append(f"- more than 10% more operator calls: {', '.join(more) if more else 'none'}")
        for heading, table in (("Times", times), ("Operator calls (totals and the model's)", counts),
                               ("Peak memory", sizes), ("Unchanged code (the noise band)",
                                                        {k: v for k, v in ref.items() if v["unit"] == "s"})):
            if not table:
                continue
            lines += ["", f"{heading}:", "", "| metric | other | current | ratio | paired |",
                      "|---|---:|---:|---:|---|"]
            for label, v in table.items():
                paired = ", ".join(f"{p:.2f}" for p in v["paired_ratios"])
                flag = " **slower**" if v["slower"] else ""
                lines.append(f"| {label} | {_fmt(v['other_median'], v['unit'])} "
                             f"| {_fmt(v['current_median'], v['unit'])} | {_fmt_ratio(v['ratio'])}{flag} | {paired} |")
        lines.append("")
    return "\n".join(lines)
