"""What the harness hands each scenario, and the target checks each scenario hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Context:
    """One scenario run on one device.

    Attributes:
        device: where the scenario runs.
        mode: "full", "quick" (the 2-minute smoke run) or "tiny" (the test suite's run).
        repeats: timed repeats asked for on the command line (None: the scenario's default).
        out: output folder.
        machine: :func:`benchmarks._harness.machine_info` for ``device``.
        earlier: results of the scenarios already run on this device in this invocation,
            by name (the limit scenario reads the one-song result from here).
        command: the command line that reproduces the run.
    """

    device: torch.device
    mode: str
    repeats: int | None
    out: Path
    machine: dict[str, Any]
    earlier: dict[str, dict[str, Any]] = field(default_factory=dict)
    command: str = "python -m benchmarks"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def pick(self, full: Any, quick: Any, tiny: Any, cuda: Any = None) -> Any:
        """The value for this mode (``cuda`` overrides ``full`` on a CUDA device)."""
        if self.mode == "tiny":
            return tiny
        if self.mode == "quick":
            return quick
        return cuda if (self.cuda and cuda is not None) else full

    def n_repeats(self, full: int, quick: int = 1) -> int:
        if self.repeats is not None:
            return self.repeats
        return full if self.mode == "full" else quick


def target(name: str, measured: float | None, threshold: float, *, higher_is_better: bool = True,
           where: str = "", note: str = "", unit: str | None = None) -> dict[str, Any]:
    """One target check for the JSON and the summary (``met`` is None when not measured).

    ``unit`` names what ``measured`` counts (None: a ratio, shown as ``1.5x`` or ``12%``).
    """
    met = None if measured is None else (measured >= threshold if higher_is_better else measured < threshold)
    return {"target": name, "measured": measured, "threshold": threshold,
            "comparison": ">=" if higher_is_better else "<", "met": met, "where": where, "note": note, "unit": unit}
