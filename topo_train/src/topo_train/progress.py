"""A run's progress, for the terminal and for the log file.

tqdm redraws its bar with carriage returns on stderr, which no log file can hold. Beside the
bar, :class:`Progress` logs one INFO line at every tenth of the run and at its end (step, loss,
speed, time left); those lines are what ``<run dir>/topo_train.log`` shows of the progress. While
the bar is on screen the same lines would repeat it, so they carry ``bar_shown`` and the
console handler drops them with :class:`HideWhenBarShown` (``hydra.job_logging`` in
``conf/train.yaml``); with ``trainer.progress=false`` they are the terminal's progress too.
"""

from __future__ import annotations

import logging
import math
import time

from tqdm.auto import tqdm

log = logging.getLogger("topo_train.progress")

REPORTS = 10  # progress lines per run


class HideWhenBarShown(logging.Filter):
    """Drops the progress lines a progress bar already shows (for the console handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "bar_shown", False)


def duration(seconds: float) -> str:
    """``1h 02m``, ``3m 07s``, ``12s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """The progress bar (when ``bar``) and a progress line every tenth of ``total`` steps.

    Args:
        total: the run's length in steps.
        initial: the step the run starts at (a resumed run's).
        bar: show a tqdm bar on stderr.
        lines: log the progress lines (rank 0 only).
    """

    def __init__(self, total: int, initial: int, bar: bool, lines: bool = True) -> None:
        self.total = int(total)
        self.start_step = int(initial)
        self.step = int(initial)
        self.loss = math.nan
        self.loss_name = "loss/total"
        self.shown = bar
        self.lines = lines
        self.started = time.monotonic()
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc="train",
            unit="step",
            disable=not bar,
            dynamic_ncols=True,
        )

    def _tenth(self, step: int) -> int:
        return step * REPORTS // max(self.total, 1)

    def update(self, step: int) -> None:
        """One step done (now at ``step``); a progress line when it crosses a tenth."""
        previous, self.step = self.step, step
        self._bar.update(step - previous)
        if self._tenth(step) > self._tenth(previous) and step < self.total:
            self.report()

    def set_loss(self, loss: float, name: str = "loss/total") -> None:
        """The loss the bar and the lines show (the objective's ``progress_metric``), by name."""
        self.loss, self.loss_name = float(loss), name
        self._bar.set_postfix({name: f"{self.loss:.4g}"})

    def report(self) -> None:
        if not self.lines:
            return
        done = self.step - self.start_step
        elapsed = time.monotonic() - self.started
        line = f"step {self.step}/{self.total} ({100 * self.step / max(self.total, 1):.0f}%)"
        if not math.isnan(self.loss):
            line += f" · {self.loss_name} {self.loss:.4g}"
        if done > 0:
            per_step = elapsed / done
            line += f" · {per_step:.3g} s/step · {duration(elapsed)} elapsed"
            if self.step < self.total:
                line += f", ~{duration(per_step * (self.total - self.step))} left"
        log.info("%s", line, extra={"bar_shown": self.shown})

    def close(self) -> None:
        """Close the bar and log where the run stopped (the bar's final state)."""
        self._bar.close()
        self.report()
