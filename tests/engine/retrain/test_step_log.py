"""engine.retrain.step_log: training steps printed with the step of the total, the rate and the
ETA, timed on a fake clock (the first step of a call is warm-up, never timed)."""

from __future__ import annotations

import pytest

from engine.retrain.step_log import StepLog


def _log(times: list[float], every: int = 1) -> tuple[StepLog, list[str]]:
    lines: list[str] = []
    clock = iter(times)
    return StepLog(lambda step, loss, lr: f"step {step} loss {loss:.2f}", lines.append, every,
                   clock=lambda: next(clock)), lines


def test_lines_carry_the_total_the_rate_and_the_eta():
    log, lines = _log([100.0, 102.0, 104.0])
    log.begin(0, 10)
    for step in (1, 2, 3):
        log(step, 0.5, 1e-3)
    assert lines == ["step 1 loss 0.50 (1/10 steps, ETA ?)",
                     "step 2 loss 0.50 (2/10 steps, 2 s/step, ETA 00:16)",
                     "step 3 loss 0.50 (3/10 steps, 2 s/step, ETA 00:14)"]


def test_a_resumed_run_times_its_own_steps_and_prints_every_nth_and_the_last():
    log, lines = _log([0.0, 0.25, 0.5, 0.75], every=2)
    log.begin(5, 8)  # resumed after step 5
    for step in (6, 7, 8):
        log(step, 0.1, 1e-3)
    assert lines == ["step 6 loss 0.10 (6/8 steps, ETA ?)", "step 8 loss 0.10 (8/8 steps, 4 step/s, ETA 00:00)"]


def test_every_must_be_positive():
    with pytest.raises(ValueError, match="every"):
        StepLog(str, print, every=0)
