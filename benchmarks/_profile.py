"""Phase times and operator counts of one call, read from ``torch.profiler`` ranges.

The engine (``torchlime/functional/engine.py``) marks its phases with
``torch.profiler.record_function`` ranges named in ``torchlime.functional.engine.PHASES``
(``torchlime.transform``, ``torchlime.forward``, ``torchlime.kernel``, ``torchlime.fit``);
the benchmarks mark what they own (the model, a factorization's ``compose``, the setup, the
reference pipeline's steps) with ``bench.<name>`` ranges (:func:`bench_range`,
:func:`ranged`). :func:`profile_phases` runs a callable once under the profiler and gives,
per phase label:

- ``ops``: aten operator calls whose nearest enclosing range is that phase (nested calls
  counted: ``aten::matmul`` and the ``aten::mm`` it dispatches are two), the dispatcher's
  fixed cost per call, the same on every device;
- ``kernels``: on CUDA the device kernels launched from the phase; on a CPU the aten calls
  that compute and call no other computing aten call (views, reshapes, allocations and
  conj/neg flags are not computing): what would be a kernel launch on a GPU;
- ``scalar_reads``: ``aten::_local_scalar_dense`` calls (``.item()``, ``bool(t)``, ``int(t)``:
  host syncs on a GPU);
- ``cpu_time_s``: the phase's own time on the calling thread (nested phases subtracted),
  ``device_time_s``: the durations of its CUDA kernels (0 on a CPU).

Ops outside every named range count as ``other``. A checkout without the engine's ranges
(before the engine refactor) has its kernel and fit ops under ``other``.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from ._harness import sync

try:
    from torchlime.functional.engine import PHASES as ENGINE_PHASES
except ImportError:  # a checkout from before the engine: no ranges, its ops fall under "other"
    ENGINE_PHASES = ("torchlime.transform", "torchlime.forward", "torchlime.kernel", "torchlime.fit")

__all__ = ["ENGINE_PHASES", "ENGINE_LABELS", "bench_range", "ranged", "profile_phases", "OTHER"]

BENCH_PREFIX = "bench."
OTHER = "other"
#: The engine's ranges by label ("torchlime.fit" -> "fit").
ENGINE_LABELS: dict[str, str] = {name: name.split(".", 1)[1] for name in ENGINE_PHASES}

#: aten calls that compute nothing (views, shape changes, allocation, conj/neg flags).
NO_COMPUTE = frozenset(
    "aten::" + n
    for n in (
        "view", "_unsafe_view", "as_strided", "expand", "expand_as", "reshape", "transpose", "t", "permute",
        "squeeze", "unsqueeze", "slice", "select", "narrow", "unfold", "alias", "detach", "lift_fresh",
        "empty", "empty_strided", "empty_like", "resolve_conj", "resolve_neg", "split", "split_with_sizes",
        "chunk", "unbind", "flatten", "unflatten", "view_as", "movedim", "numpy_T", "contiguous", "to",
        "_reshape_alias", "broadcast_to", "diagonal", "_to_copy_noop", "result_type", "lift_fresh_copy",
        "set_", "is_nonzero", "item",
    )
)
SCALAR_READ = "aten::_local_scalar_dense"


def bench_range(name: str) -> record_function:
    """A profiler range ``bench.<name>`` (a no-op when no profiler runs but for ~1 us)."""
    return record_function(BENCH_PREFIX + name)


def ranged(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every call inside a ``bench.<name>`` range (same signature, for inspection)."""

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with record_function(BENCH_PREFIX + name):
            return fn(*args, **kwargs)

    return inner


def _zero() -> dict[str, float]:
    return {"ops": 0, "kernels": 0, "scalar_reads": 0, "cpu_time_s": 0.0, "device_time_s": 0.0, "ranges": 0}


def _is_cpu(evt: Any) -> bool:
    return str(evt.device_type).endswith("CPU")


def profile_phases(
    fn: Callable[[], Any],
    device: torch.device | str,
    labels: Mapping[str, str] | None = None,
    *,
    memory: bool = False,
) -> tuple[dict[str, Any], Any]:
    """Run ``fn()`` once under ``torch.profiler`` and split its work by phase ranges.

    Args:
        fn: the call to profile (warm it up before: first calls allocate and compile).
        device: CUDA adds the CUDA activity (kernels and their durations) and syncs around.
        labels: range name -> phase label (several names may share a label); default the
            engine's ranges (``ENGINE_LABELS``) and every ``bench.<name>`` range as ``name``.
        memory: also record allocations: ``peak_alloc_bytes`` is the highest sum of the
            bytes torch allocated and freed during the call on ``device`` (allocations made
            before the call and freed during it count negative).

    Returns:
        ``(profile, fn's output)``; ``profile`` holds ``wall_s`` (the profiled call, profiler
        overhead included), ``phases`` (label -> ``ops``, ``kernels``, ``scalar_reads``,
        ``cpu_time_s``, ``device_time_s``, ``ranges`` = how many times the range ran;
        ``other`` last), ``total`` (the sums) and ``peak_alloc_bytes`` (None without
        ``memory``).
    """
    device = torch.device(device)
    labels = dict(ENGINE_LABELS if labels is None else labels)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync(device)
    with warnings.catch_warnings():
        # "Profiler clears events at the end of each cycle": one cycle here, nothing is lost.
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=activities, profile_memory=memory) as prof:
            start = time.perf_counter()
            out = fn()
            sync(device)
            wall = time.perf_counter() - start
        events = [e for e in prof.events() if _is_cpu(e)]
    phases = _split(events, labels, cpu_kernels=device.type != "cuda")
    # Time outside every range: the wall time of the call less the ranges' (on the calling thread).
    phases[OTHER]["cpu_time_s"] = max(0.0, wall - sum(p["cpu_time_s"] for k, p in phases.items() if k != OTHER))
    result: dict[str, Any] = {
        "wall_s": wall,
        "phases": phases,
        "total": {k: sum(p[k] for p in phases.values()) for k in _zero() if k != "ranges"},
        "peak_alloc_bytes": _peak_alloc(prof, device) if memory else None,
        "device": str(device),
    }
    return result, out


def _label_of(name: str, labels: Mapping[str, str]) -> str | None:
    if name in labels:
        return labels[name]
    if name.startswith(BENCH_PREFIX):
        return name[len(BENCH_PREFIX):]
    return None


def _split(events: Iterable[Any], labels: Mapping[str, str], cpu_kernels: bool) -> dict[str, dict[str, float]]:
    """Ops, kernels and times per phase label, by each event's nearest enclosing range."""
    inner: dict[int, str] = {}  # id of a non-range event -> the phase it (and all below it) is in

    def phase(evt: Any) -> str:
        chain = []
        p = evt.cpu_parent
        while p is not None and id(p) not in inner:
            label = _label_of(p.name, labels)
            if label is not None:
                found = label
                break
            chain.append(id(p))
            p = p.cpu_parent
        else:
            found = OTHER if p is None else inner[id(p)]
        for key in chain:
            inner[key] = found
        return found

    out: dict[str, dict[str, float]] = {}

    def slot(label: str) -> dict[str, float]:
        if label not in out:
            out[label] = _zero()
        return out[label]

    for e in events:
        label = _label_of(e.name, labels)
        if label is not None:  # a range: its time, less that of the phase ranges nested in it
            s = slot(label)
            s["ranges"] += 1
            s["cpu_time_s"] += e.cpu_time_total / 1e6
            outer = phase(e)
            if outer != OTHER:
                slot(outer)["cpu_time_s"] -= e.cpu_time_total / 1e6
            continue
        kernels = e.kernels if getattr(e, "kernels", None) else ()
        aten = e.name.startswith("aten::")
        if not aten and not kernels:
            continue
        s = slot(phase(e))
        s["kernels"] += len(kernels)
        s["device_time_s"] += sum(k.duration for k in kernels) / 1e6
        if not aten:
            continue
        s["ops"] += 1
        if e.name == SCALAR_READ:
            s["scalar_reads"] += 1
        if cpu_kernels and _computes(e):
            s["kernels"] += 1
    other = out.pop(OTHER, _zero())
    out[OTHER] = other
    return out


def _computes(evt: Any) -> bool:
    """A CPU kernel: an aten call that computes and calls no other computing aten call."""
    return evt.name not in NO_COMPUTE and not any(
        c.name.startswith("aten::") and c.name not in NO_COMPUTE for c in evt.cpu_children)


def _peak_alloc(prof: Any, device: torch.device) -> int | None:
    """The highest running sum of allocations minus frees on ``device`` during the profile."""
    try:
        records = [ev for ev in prof.profiler.kineto_results.events() if ev.name() == "[memory]"]
    except AttributeError:  # the profiler's internals moved: report nothing rather than a guess
        return None
    want = "CUDA" if device.type == "cuda" else "CPU"
    running = peak = 0
    for ev in sorted(records, key=lambda r: r.start_ns()):
        if not str(ev.device_type()).endswith(want):
            continue
        running += ev.nbytes()
        peak = max(peak, running)
    return int(peak)
