"""``ExplanationMonitor``: explain a fixed probe set every k training steps and report drift.

Shape glossary: B probe instances, n perturbation samples, F interpretable features,
C classes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..functional.segments import feature_stem_segment, segment_layout
from ._step import ExplainStep, _first_tensor

__all__ = ["ExplanationMonitor", "MonitorReport"]

_LABELS = ("predicted", "explained")
_KINDS = ("lime", "average", "homogeneity")


@dataclass
class MonitorReport:
    """What the monitor saw at one report.

    Attributes:
        step: the training step of the report.
        seconds: wall time of the report (explaining the probe set, aggregating, reading
            the results back), the monitor's cost per call.
        rows: model rows forwarded (B * n).
        importance: the :class:`torchlime.aggregation.GlobalImportance` of the probe set.
        top: per class name, its ``top_k`` features ``[(name, importance)]``.
        drift: per class name, the total-variation distance in [0, 1] between this report's
            and the last report's importance of the class, each normalised to sum to 1
            (None at the first report, or for a class without explanations in either).
        entered, left: per class name, features that entered or left its top ``top_k``
            since the last report.
        group_share: per class name, the share of the class's |weight| mass held by each
            feature group (with ``groups``; empty otherwise).
        counts: per class name, how many probe explanations counted for it.
    """

    step: int
    seconds: float
    rows: int
    importance: Any
    top: dict[str, list[tuple[str, float]]]
    drift: dict[str, float | None]
    entered: dict[str, list[str]]
    left: dict[str, list[str]]
    group_share: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def scalars(self, prefix: str = "explanations") -> dict[str, float]:
        """A flat ``{name: float}`` for any logger (cost, drift, group shares, top importances)."""
        out = {f"{prefix}/seconds": self.seconds}
        for cls, value in self.drift.items():
            if value is not None:
                out[f"{prefix}/drift/{cls}"] = value
        for cls, shares in self.group_share.items():
            for group, share in shares.items():
                out[f"{prefix}/share/{cls}/{group}"] = share
        for cls, items in self.top.items():
            for name, value in items:
                out[f"{prefix}/top/{cls}/{name}"] = value
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything but the importance tensors, as plain JSON types."""
        return {
            "step": self.step,
            "seconds": self.seconds,
            "rows": self.rows,
            "top": {c: [[n, v] for n, v in items] for c, items in self.top.items()},
            "drift": dict(self.drift),
            "entered": dict(self.entered),
            "left": dict(self.left),
            "group_share": {c: dict(s) for c, s in self.group_share.items()},
            "counts": dict(self.counts),
        }

    def text(self) -> str:
        """A few human-readable lines: per class, its top features, drift and group shares."""
        lines = [f"step {self.step}: explained the probe set in {self.seconds * 1000:.0f} ms ({self.rows} rows)"]
        for cls, items in self.top.items():
            drift = self.drift.get(cls)
            tops = ", ".join(f"{n} {v:.3g}" for n, v in items) or "(no explanation counted)"
            line = f"  {cls} [{self.counts.get(cls, 0)}]: {tops}"
            if drift is not None:
                line += f"; drift {drift:.2f}"
            if self.entered.get(cls):
                line += f"; entered {self.entered[cls]}"
            shares = self.group_share.get(cls)
            if shares:
                line += "; shares " + ", ".join(f"{g} {s:.0%}" for g, s in sorted(shares.items(), key=lambda x: -x[1]))
            lines.append(line)
        return "\n".join(lines)


def _tensors(obj: Any, path: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{path}[{key!r}]")
    elif isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{path}[{i}]")


def _model_device(model: Any) -> torch.device | None:
    if not isinstance(model, torch.nn.Module):
        return None
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _stem_groups(feature_names: Sequence[str]) -> dict[str, list[int]]:
    """Feature indices per stem, for feature names that start with stems x segments names."""
    stem_names, G = segment_layout(feature_names)
    if not G:
        raise ValueError(f"expected feature names like 'drums_T3' for groups='stems', got {list(feature_names)[:5]}")
    groups: dict[str, list[int]] = {s: [] for s in stem_names}
    for j in range(len(stem_names) * G):
        groups[stem_names[feature_stem_segment(j, len(stem_names))[0]]].append(j)
    return groups


class ExplanationMonitor:
    """Every k steps, explain a fixed probe set and report the top features per class and their drift.

    Each report runs the :class:`ExplainStep` once on the probe set (B instances x n
    samples, under ``torch.no_grad`` and with the model in eval mode), with the same masks
    every time (drawn once from ``seed``), so that a change between reports is a change of
    the model, not of the sampling. The coefficients update a fresh
    :class:`torchlime.GlobalAggregator`, whose :class:`~torchlime.aggregation.GlobalImportance`
    gives the top features per class; the report (:class:`MonitorReport`) goes to
    ``callback``, to TensorBoard if asked, and to :attr:`reports`. Its cost is B * n model
    rows and one read-back; ``seconds`` says how long it took.

    Args:
        step: the explain step (its forward, transform, n_samples and kernel).
        probe: the probe set, as ``step`` takes it (e.g. ``(stems, input_ids,
            attention_mask)`` for :class:`StemsTransform`); its first tensor's first dim is B.
        feature_names: F names.
        num_classes: C, the columns of the model's output.
        every: report every ``every`` calls of :meth:`on_step` (k >= 1).
        class_names: C names (default "0".."C-1").
        top_k: features per class in the report.
        label: "predicted" (each probe instance counts its predicted class's explanation for
            that class) or "explained" (every class's explanation counts for that class).
        kind: the global importance the top features and drift use: "lime", "average" or
            "homogeneity".
        groups: feature groups whose share of each class's |weight| mass is reported:
            ``{name: feature indices}``, or "stems" to group ``<stem>_T<g>`` names by stem.
        callback: called with every :class:`MonitorReport`.
        tensorboard: a log directory (needs the ``tensorboard`` package) or a
            ``SummaryWriter``-like object (``add_scalar``, ``add_text``).
        model: the ``nn.Module`` explained (default: ``step.forward`` if it is one): put in
            eval mode during a report, and its device checked against the probe's.
        seed: seeds the probe masks.
        prefix: prefix of the logged names.

    Raises:
        ValueError: ``every < 1``, a probe set on another device than the model, feature
            names that do not match the step, bad options.
        ModuleNotFoundError: a TensorBoard log directory without the ``tensorboard`` package.

    Example:
        >>> import torch
        >>> from torchlime.training import ExplainStep, ExplanationMonitor
        >>> net = torch.nn.Linear(4, 2)
        >>> step = ExplainStep(net, lambda z, x: (z * x.unsqueeze(1)).flatten(0, 1),
        ...                    num_features=4, n_samples=64)
        >>> monitor = ExplanationMonitor(step, torch.randn(16, 4), feature_names=list("abcd"),
        ...                              num_classes=2, every=10)
        >>> for i in range(20):
        ...     report = monitor.on_step()  # a MonitorReport at calls 10 and 20, else None
        >>> len(monitor.reports), sorted(monitor.reports[-1].top)
        (2, ['0', '1'])
    """

    def __init__(
        self,
        step: ExplainStep,
        probe: Any,
        *,
        feature_names: Sequence[str],
        num_classes: int,
        every: int = 100,
        class_names: Sequence[str] | None = None,
        top_k: int = 5,
        label: str = "predicted",
        kind: str = "lime",
        groups: Mapping[str, Sequence[int]] | str | None = None,
        callback: Callable[[MonitorReport], Any] | None = None,
        tensorboard: str | os.PathLike[str] | Any | None = None,
        model: torch.nn.Module | None = None,
        seed: int = 0,
        prefix: str = "explanations",
    ) -> None:
        if not isinstance(step, ExplainStep):
            raise TypeError(f"expected step to be an ExplainStep, got {type(step).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"expected every >= 1 (report every k steps), got {every!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"expected top_k >= 1, got {top_k!r}")
        if label not in _LABELS:
            raise ValueError(f"expected label in {list(_LABELS)}, got {label!r}")
        if kind not in _KINDS:
            raise ValueError(f"expected kind in {list(_KINDS)}, got {kind!r}")
        names = [str(f) for f in feature_names]
        if len(names) != step.num_features:
            raise ValueError(f"expected {step.num_features} feature names (the step's features), got {len(names)}")
        if callback is not None and not callable(callback):
            raise TypeError(f"expected callback to be callable or None, got {type(callback).__name__}")
        from ..aggregation import GlobalAggregator

        self.step = step
        self.probe = probe
        self.feature_names = names
        self.every = every
        self.top_k = top_k
        self.label = label
        self.kind = kind
        self.callback = callback
        self.prefix = prefix
        if model is None and isinstance(step.forward, torch.nn.Module):
            model = step.forward
        self.model = model
        self.groups = self._check_groups(groups)
        first = _first_tensor(probe)
        if first.dim() < 1:
            raise ValueError(
                f"expected the probe set's first tensor to have a batch dim, got shape {tuple(first.shape)}"
            )
        self.device = first.device
        self._check_devices()
        self.aggregator = GlobalAggregator(
            num_classes, names, label="explained", components="both", class_names=class_names
        ).to(self.device)
        self.num_classes = num_classes
        self.class_names = list(self.aggregator.class_names)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.masks = step.draw(first.shape[0], generator=generator, device=self.device)
        self.writer = self._writer(tensorboard)
        self.calls = 0
        self.reports: list[MonitorReport] = []
        self._previous: Tensor | None = None
        self._previous_top: dict[str, list[tuple[str, float]]] = {}

    # -- configuration -------------------------------------------------------------------

    def _check_groups(self, groups: Mapping[str, Sequence[int]] | str | None) -> dict[str, list[int]]:
        if groups is None:
            return {}
        if isinstance(groups, str):
            if groups != "stems":
                raise ValueError(f"expected groups as a mapping, 'stems' or None, got {groups!r}")
            return _stem_groups(self.feature_names)
        out = {}
        F = len(self.feature_names)
        for name, index in groups.items():
            idx = [int(i) for i in index]
            if any(not 0 <= i < F for i in idx):
                raise ValueError(f"expected feature indices in [0, {F}) for group {name!r}, got {idx}")
            out[str(name)] = idx
        return out

    def _check_devices(self) -> None:
        model_device = _model_device(self.model)
        for path, t in _tensors(self.probe, "probe"):
            if model_device is not None and t.device != model_device:
                raise ValueError(
                    f"expected the probe set on the model's device ({model_device}), got {path} on {t.device}; "
                    f"move it with .to({str(model_device)!r})"
                )
            if t.device != self.device:
                raise ValueError(
                    f"expected every tensor of the probe set on one device ({self.device}), got {path} on {t.device}"
                )

    def _writer(self, tensorboard: Any) -> Any:
        if tensorboard is None:
            return None
        if isinstance(tensorboard, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ModuleNotFoundError as err:
                raise ModuleNotFoundError(
                    "logging to TensorBoard needs the tensorboard package: pip install 'torchlime[tensorboard]'"
                ) from err
            return SummaryWriter(log_dir=os.fspath(tensorboard))
        if not callable(getattr(tensorboard, "add_scalar", None)):
            raise TypeError(
                "expected tensorboard as a log directory or a SummaryWriter-like object, got "
                f"{type(tensorboard).__name__}"
            )
        return tensorboard

    # -- reporting -----------------------------------------------------------------------

    def on_step(self, global_step: int | None = None) -> MonitorReport | None:
        """Count a training step; every ``every``-th call explains the probe set.

        Args:
            global_step: the step to label the report with (default: this call's count).

        Returns:
            The :class:`MonitorReport` when one was made, else None.
        """
        self.calls += 1
        if self.calls % self.every:
            return None
        return self.report(self.calls if global_step is None else global_step)

    def report(self, global_step: int | None = None) -> MonitorReport:
        """Explain the probe set now and report (see the class docstring).

        Args:
            global_step: the step to label the report with (default: :attr:`calls`).

        Raises:
            ValueError: the probe set is no longer on the model's device, or the model's
                output does not have ``num_classes`` columns.
        """
        start = time.perf_counter()
        self._check_devices()
        model = self.model
        was_training = bool(model.training) if model is not None else False
        try:
            if model is not None:
                model.eval()
            with torch.no_grad():
                coef, predicted = self._explain()
        finally:
            if model is not None and was_training:
                model.train()
        B, C = coef.shape[0], self.num_classes
        if self.label == "predicted":
            weights = coef.gather(1, predicted.view(B, 1, 1).expand(B, 1, coef.shape[-1]))[:, 0]
            classes = predicted
        else:
            weights = coef
            classes = torch.arange(C, device=coef.device).expand(B, C)
        self.aggregator.reset()
        self.aggregator.update(coef=weights, labels=classes)
        importance = self.aggregator.compute()
        current = importance.get(self.kind).detach().to("cpu", torch.float64)  # the one read-back
        sums = importance.weight_sums.detach().to("cpu", torch.float64)
        counts = torch.bincount(classes.reshape(-1).cpu(), minlength=C)
        top = importance.ranking(self.kind, self.top_k)
        drift, entered, left = self._drift(current, top)
        shares = self._shares(sums)
        self._previous = current
        self._previous_top = top
        report = MonitorReport(
            step=self.calls if global_step is None else int(global_step),
            seconds=time.perf_counter() - start,
            rows=B * self.step.n_samples,
            importance=importance,
            top=top,
            drift=drift,
            entered=entered,
            left=left,
            group_share=shares,
            counts={name: int(counts[c]) for c, name in enumerate(self.class_names)},
        )
        self.reports.append(report)
        if self.writer is not None:
            for name, value in report.scalars(self.prefix).items():
                self.writer.add_scalar(name, value, report.step)
            if callable(getattr(self.writer, "add_text", None)):
                self.writer.add_text(f"{self.prefix}/report", report.text(), report.step)
        if self.callback is not None:
            self.callback(report)
        return report

    @property
    def last(self) -> MonitorReport | None:
        """The latest report (None before the first)."""
        return self.reports[-1] if self.reports else None

    def _explain(self) -> tuple[Tensor, Tensor]:
        """Coefficients ``(B, C, F)`` of every class and the predicted classes ``(B,)``."""
        step, masks = self.step, self.masks
        outputs = step.outputs(self.probe, masks)
        if outputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"expected the model to return num_classes={self.num_classes} outputs per row, got "
                f"{outputs.shape[-1]}"
            )
        if step.first_row_ones:
            prediction = outputs[:, 0]
        else:
            ones = torch.ones_like(masks[:, :1])
            inputs = step.transform(ones, self.probe)
            prediction = step.forward(*inputs) if isinstance(inputs, tuple) else step.forward(inputs)
        fit = step.fit(masks, outputs)
        coef = fit.coef if fit.coef.dim() == 3 else fit.coef.unsqueeze(1)
        return coef, prediction.reshape(masks.shape[0], -1).argmax(-1)

    def _drift(
        self, current: Tensor, top: dict[str, list[tuple[str, float]]]
    ) -> tuple[dict[str, float | None], dict[str, list[str]], dict[str, list[str]]]:
        drift: dict[str, float | None] = {}
        entered: dict[str, list[str]] = {}
        left: dict[str, list[str]] = {}
        previous = self._previous
        for c, name in enumerate(self.class_names):
            now = {f for f, _ in top[name]}
            if previous is None:
                drift[name], entered[name], left[name] = None, [], []
                continue
            before = {f for f, _ in self._previous_top[name]}
            entered[name] = [f for f, _ in top[name] if f not in before]
            left[name] = [f for f, _ in self._previous_top[name] if f not in now]
            p, q = current[c].abs(), previous[c].abs()
            if float(p.sum()) == 0 or float(q.sum()) == 0:
                drift[name] = None
            else:
                drift[name] = 0.5 * float((p / p.sum() - q / q.sum()).abs().sum())
        return drift, entered, left

    def _shares(self, sums: Tensor) -> dict[str, dict[str, float]]:
        if not self.groups:
            return {}
        out = {}
        for c, name in enumerate(self.class_names):
            total = float(sums[c].sum())
            out[name] = {g: (float(sums[c, idx].sum()) / total if total > 0 else 0.0) for g, idx in self.groups.items()}
        return out
