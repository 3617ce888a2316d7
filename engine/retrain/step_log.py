"""Training steps printed with their pace: a ``train(log=...)`` callback that adds the step of
the total, the rate and the ETA to each line its caller formats.

``train`` calls :meth:`StepLog.begin` with the step it starts at (a resumed run's) and the total
before its first step, then the log after every step. The first step of a call is not timed
(allocation, warm-up), as in ``train``'s own ``samples_per_second``; the rate is the mean over
the steps since.
"""

from __future__ import annotations

import time
from typing import Callable

from tqdm import tqdm


class StepLog:
    """``emit(line(step, loss, lr) + " (S/T steps, R step/s, ETA HH:MM:SS)")`` at step 1, every
    ``every``-th step and the last one."""

    def __init__(self, line: Callable[[int, float, float], str], emit: Callable[[str], None], every: int = 1,
                 clock: Callable[[], float] = time.monotonic):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.line, self.emit, self.every, self.clock = line, emit, every, clock
        self.total = 0
        self.first: tuple[int, float] | None = None  # (step, time) of this call's first step

    def begin(self, step: int, total: int) -> None:
        """Training starts after ``step`` of ``total`` steps."""
        self.total, self.first = int(total), None

    def pace(self, step: int, now: float) -> str:
        """``S/T steps, R step/s, ETA HH:MM:SS`` (``?`` until a second step is timed)."""
        head = f"{step}/{self.total} steps" if self.total else f"step {step}"
        first_step, start = self.first or (step, now)
        if step <= first_step or now <= start:
            return f"{head}, ETA ?"
        rate = (step - first_step) / (now - start)
        speed = f"{rate:.3g} step/s" if rate >= 1 else f"{1 / rate:.3g} s/step"
        eta = tqdm.format_interval(max(0, self.total - step) / rate) if self.total else "?"
        return f"{head}, {speed}, ETA {eta}"

    def __call__(self, step: int, loss: float, lr: float) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
        if step == 1 or step % self.every == 0 or step == self.total:
            self.emit(f"{self.line(step, loss, lr)} ({self.pace(step, now)})")
