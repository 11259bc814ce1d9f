"""What every scenario of the benchmark harness shares: timing, statistics, machine info, output.

- :func:`measure` times a callable with untimed warm-up runs first and
  ``torch.cuda.synchronize()`` around every timed run on CUDA;
- :class:`PhaseTimer` accumulates a per-phase breakdown inside one run (synchronised too);
- :func:`summarize` gives median, min, max, quartiles and IQR of the repeats;
- :func:`machine_info` records the machine, the device and the versions of everything timed;
- :func:`write_json_atomic` writes through a temp file and ``os.replace`` (never a half file);
- :func:`result_path` names outputs: ``<scenario>_<device>.json`` for full runs,
  ``<scenario>_<device>_<mode>.json`` for ``--quick``/``--tiny``, so a smoke run never
  overwrites real results.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

#: 2: phases and operator counts from profiler ranges (music ``breakdown_s``, ``ops``), growth's memory sweeps.
SCHEMA_VERSION = 2
MODES = ("full", "quick", "tiny")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

TIMING_NOTE = (
    "time.perf_counter around each run; on CUDA torch.cuda.synchronize() before and after every timed run "
    "(and around every phase of a breakdown); untimed warm-up run(s) first; statistics over the timed repeats"
)


def log(msg: str) -> None:
    """Progress goes to stderr; stdout carries the Markdown tables."""
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- statistics -----------------------------------------------------------------------------


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize(times: Sequence[float]) -> dict[str, Any]:
    """Median and spread of timed repeats (seconds).

    Returns:
        ``median_s``, ``min_s``, ``max_s``, ``q1_s``, ``q3_s``, ``iqr_s`` (q3 - q1, linear
        interpolation as numpy's default), ``repeats`` and the raw ``times_s``.
    """
    if not times:
        raise ValueError("expected at least one timing, got none")
    s = sorted(float(t) for t in times)
    q1, q3 = _quantile(s, 0.25), _quantile(s, 0.75)
    return {
        "median_s": statistics.median(s),
        "min_s": s[0],
        "max_s": s[-1],
        "q1_s": q1,
        "q3_s": q3,
        "iqr_s": q3 - q1,
        "repeats": len(s),
        "times_s": [float(t) for t in times],
    }


def summarize_phases(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per-phase statistics over several breakdowns (a phase missing from a run counts 0)."""
    names: list[str] = []
    for r in runs:
        names += [k for k in r if k not in names]
    return {k: summarize([r.get(k, 0.0) for r in runs]) for k in names}


# -- timing ---------------------------------------------------------------------------------


def measure(
    fn: Callable[[], Any],
    device: torch.device | str,
    *,
    repeats: int,
    warmup: int = 1,
    budget_s: float | None = None,
) -> tuple[dict[str, Any], Any]:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed runs.

    Args:
        fn: the work; its last return value is handed back.
        device: synchronised before and after every run when it is a CUDA device.
        repeats: timed runs (>= 1).
        warmup: untimed runs first (kernels, allocator, caches, lazy imports).
        budget_s: stop repeating once the timed runs so far took this long (at least one
            timed run always happens); the JSON says how many ran.

    Returns:
        ``(summary, last output)`` where ``summary`` is :func:`summarize` plus ``warmup_s``
        (the warm-up runs' seconds) and ``budget_s``.
    """
    if repeats < 1:
        raise ValueError(f"expected repeats >= 1, got {repeats}")
    warm = []
    out = None
    for _ in range(warmup):
        seconds, out = _timed_once(fn, device)
        warm.append(seconds)
    times = []
    for _ in range(repeats):
        seconds, out = _timed_once(fn, device)
        times.append(seconds)
        if budget_s is not None and sum(times) >= budget_s:
            break
    return {**summarize(times), "warmup_s": warm, "budget_s": budget_s}, out


def _timed_once(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def measure_round_robin(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
                        warmup: int = 2) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Time every callable ``repeats`` times, one run of each per round (same load on all).

    Each round starts one callable further along, so each follows every other equally often
    (what ran just before, a large copy say, leaves the caches in its own state). On a
    shared machine whose load changes by the minute, the ratio of two callables timed in
    the same rounds is what holds; their absolute times move with the load.

    Returns:
        ``({name: summary}, {name: last output})``, summaries as :func:`measure` gives them.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    warm: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    names = list(fns)
    for r in range(warmup + repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = fns[name]
            sync(device)
            start = time.perf_counter()
            outs[name] = fn()
            sync(device)
            (warm if r < warmup else times)[name].append(time.perf_counter() - start)
    return {k: {**summarize(times[k]), "warmup_s": warm[k], "budget_s": None} for k in fns}, outs


class PhaseTimer:
    """Accumulates seconds per named phase; synchronises a CUDA device around each phase.

    Example:
        >>> t = PhaseTimer("cpu")
        >>> with t("composition"):
        ...     pass
        >>> sorted(t.totals)
        ['composition']
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every call counted under ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self(name):
                return fn(*args, **kwargs)

        return timed


# -- machine and versions -------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def total_memory_bytes() -> int | None:
    """The machine's RAM (``MemTotal``), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def checkout_of(module_file: str) -> dict[str, Any]:
    """Where an imported package comes from: its folder and, in a git checkout, the commit."""
    root = Path(module_file).resolve().parent.parent
    commit = None
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if proc.returncode == 0:
            commit = proc.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                    "torchlime"], capture_output=True, text=True, timeout=10)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += " (torchlime/ modified)"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"path": str(root), "commit": commit}


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """Machine, device, threads and versions (and which torchlime checkout), for the JSON's ``machine`` field."""
    import torchlime

    device = torch.device(device)
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": total_memory_bytes(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                       if k in os.environ},
        "python": platform.python_version(),
        "device": str(device),
        "gpu_name": None,
        "gpu_memory_bytes": None,
        "cuda_runtime": torch.version.cuda,
        "torch": torch.__version__,
        "torchlime": torchlime.__version__,
        "torchlime_checkout": checkout_of(torchlime.__file__),
        "captum": _version("captum"),
        "lime": _version("lime"),
        "numpy": _version("numpy"),
        "scikit-learn": _version("scikit-learn"),
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
        "torchaudio": _version("torchaudio"),
        "openunmix": _version("openunmix"),
        "load_average_at_start": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = props.total_memory
    return info


# -- output ---------------------------------------------------------------------------------


def result_path(out: Path | str, scenario: str, device: str, mode: str, ext: str = "json") -> Path:
    """``<out>/<scenario>_<device>.<ext>``; ``..._<mode>.<ext>`` unless ``mode == "full"``."""
    suffix = "" if mode == "full" else f"_{mode}"
    return Path(out) / f"{scenario}_{device}{suffix}.{ext}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    _write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN/inf: they become null."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def envelope(ctx: Any, scenario: str, parameters: dict[str, Any], body: dict[str, Any], started: float
             ) -> dict[str, Any]:
    """The common top level of every scenario's JSON.

    Args:
        ctx: the scenario's :class:`benchmarks._context.Context`.
        scenario: its name.
        parameters: what was run (sizes, repeats, models, definitions).
        body: the measurements.
        started: ``time.perf_counter()`` when the scenario started.
    """
    machine = dict(ctx.machine)
    machine["load_average_at_end"] = load_average()
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": scenario,
        "mode": ctx.mode,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ctx.command,
        "machine": machine,
        "device": str(ctx.device),
        "parameters": {**parameters, "timing": TIMING_NOTE},
        **body,
        "total_wall_s": time.perf_counter() - started,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return finite_or_none(a / b)


def fmt_s(seconds: float | None) -> str:
    """Seconds in a readable unit for tables."""
    if seconds is None:
        return "n/a"
    if seconds < 0:
        return "-" + fmt_s(-seconds)
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_x(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x"


def fmt_count(n: float | None) -> str:
    """A count for tables: 950, 12.3k, 1.25M."""
    if n is None:
        return "n/a"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g}M"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.3g}k"
    return f"{n:.0f}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"
