"""``ExplanationMonitorCallback``: the monitor as a Lightning callback (the ``lightning`` extra)."""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback
except ModuleNotFoundError:
    try:
        from pytorch_lightning import Callback
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "torchlime.training.ExplanationMonitorCallback needs Lightning: pip install 'torchlime[lightning]'"
        ) from err

from ._monitor import ExplanationMonitor, MonitorReport

__all__ = ["ExplanationMonitorCallback"]


class ExplanationMonitorCallback(Callback):
    """Runs an :class:`ExplanationMonitor` after every training batch.

    Every ``monitor.every`` batches the monitor explains its probe set; the report's
    :meth:`~MonitorReport.scalars` go to every logger of the trainer (``log_metrics`` at
    the trainer's global step). Reports also reach the monitor's own callback, TensorBoard
    writer and :attr:`ExplanationMonitor.reports`. Only the global-rank-0 process reports.

    Args:
        monitor: the monitor (its probe set on the LightningModule's device).

    Example:
        >>> import lightning  # doctest: +SKIP
        >>> from torchlime.training import ExplanationMonitor, ExplanationMonitorCallback
        >>> monitor = ExplanationMonitor(step, probe, feature_names=names, num_classes=2, every=50)  # doctest: +SKIP
        >>> trainer = lightning.Trainer(callbacks=[ExplanationMonitorCallback(monitor)])  # doctest: +SKIP
        >>> trainer.fit(module, data)  # doctest: +SKIP
    """

    def __init__(self, monitor: ExplanationMonitor) -> None:
        super().__init__()
        if not isinstance(monitor, ExplanationMonitor):
            raise TypeError(f"expected an ExplanationMonitor, got {type(monitor).__name__}")
        self.monitor = monitor

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not getattr(trainer, "is_global_zero", True):
            return
        report = self.monitor.on_step(int(trainer.global_step))
        if report is not None:
            self._log(trainer, report)

    def _log(self, trainer: Any, report: MonitorReport) -> None:
        scalars = report.scalars(self.monitor.prefix)
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics(scalars, step=report.step)
