"""Rounds of the annotate-refine loop: numbering, locking, recording, early stopping.

:func:`run_round` runs every step of ``engine.rounds.steps.ROUND_STEPS`` through a ``step_runner`` (plain
:func:`engine.rounds.state.run_step` by default; the Prefect flows pass a task-wrapped one),
under the root's :class:`~engine.rounds.lock.RoundLock`, and records the round in the
catalog's ``rounds`` table with its resolved config (also saved as
``rounds/round=R/config.json``). A round already marked done is not run again. The first
SIGINT or SIGTERM stops it (``engine.rounds.interrupt``): the round is recorded ``interrupted``
at its step, and the next run resumes it there.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from engine.config import EngineConfig
from engine.preflight import preflight
from engine.rounds.context import RoundContext
from engine.rounds.interrupt import interruption, stop_on_signals
from engine.rounds.lock import RoundLock
from engine.rounds.records import write_round
from engine.rounds.state import run_step
from engine.rounds.steps import step_names
from storage import schema
from storage.atomic import remove_stale_temps, write_text_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot

StepRunner = Callable[[RoundContext, str], dict[str, Any]]


def round_status(root: DataRoot) -> dict[int, str]:
    """``{round: status}`` of every recorded round."""
    with Catalog.reading(root) as catalog:
        return {int(r): s for r, s in catalog.query("select round, status from rounds order by round")}


def next_round(root: DataRoot) -> int:
    """The first round not done yet (an unfinished round is resumed before a new one starts)."""
    status = round_status(root)
    for round_, state in sorted(status.items()):
        if state != "done":
            return round_
    return max(status) + 1 if status else 0


def check_round_number(root: DataRoot, round_: int) -> None:
    """``round_`` (``--round``) must be a recorded round (resumed, or skipped when done) or the
    next one (:func:`next_round`): a gap in the numbering is refused, naming the next round."""
    status = round_status(root) if root.path.is_dir() else {}
    following = next_round(root) if status else 0
    if round_ not in status and round_ != following:
        raise ValueError(f"--round {round_}: rounds are numbered without gaps and round {following} is next; "
                         f"give --round {following}, an earlier round to resume it, or leave --round out")


def _record(root: DataRoot, row: dict[str, Any]) -> None:
    with Catalog(root) as catalog:
        previous = catalog.query("select started_at from rounds where round = ?", [row["round"]])
        if previous and "started_at" not in row:
            row["started_at"] = previous[0][0]
        write_round(root, row)  # the file first: `fld repair` rebuilds the table from it
        catalog.upsert("rounds", [row])


def run_round(root: DataRoot, config: EngineConfig, round_: int | None = None, step_runner: StepRunner = run_step,
              progress: bool = True) -> dict[str, Any]:
    """Run (or resume) one round; returns ``{"round": R, "steps": {step: summary}}``."""
    preflight(config)  # every path and device the steps need, before the first step
    root.ensure()
    with RoundLock(root):
        remove_stale_temps(root.path)  # what a killed run was writing: no live writer owns it now
        if round_ is not None:
            check_round_number(root, int(round_))
        round_ = next_round(root) if round_ is None else int(round_)
        if round_status(root).get(round_) == "done":
            return {"round": round_, "skipped": True, "steps": {}}
        resolved = json.dumps(config.to_dict(), sort_keys=True)
        write_text_atomic(resolved, root.round_folder(round_) / "config.json")
        _record(root, {"round": round_, "status": "running", "config": resolved, "started_at": schema.utc_now()})
        context = RoundContext(root=root, round=round_, config=config, progress=progress)
        steps: dict[str, Any] = {}
        name = step_names()[0]
        try:
            with stop_on_signals():  # the first SIGINT/SIGTERM stops the round: no retry, no next step
                for name in step_names():
                    _record(root, {"round": round_, "status": "running", "step": name, "config": resolved})
                    steps[name] = step_runner(context, name)
        except BaseException as error:
            stopped = interruption(error)
            _record(root, {"round": round_, "status": "failed" if stopped is None else "interrupted",
                           "config": resolved, "step": name})
            if stopped is None:
                raise
            stopped.round, stopped.step = round_, name
            if stopped is error:
                raise
            raise stopped from error
        _record(root, {"round": round_, "status": "done", "step": step_names()[-1], "config": resolved,
                       "finished_at": schema.utc_now()})
        return {"round": round_, "steps": steps}


def metric_history(root: DataRoot, metric: str) -> list[tuple[int, float]]:
    """``(round, value)`` of ``metric`` from every recorded model, in round order."""
    with Catalog.reading(root) as catalog:
        rows = catalog.query("select round, metrics from models order by round")
    history = []
    for round_, metrics in rows:
        recorded = json.loads(metrics or "{}")
        value = recorded.get("new", recorded).get(metric)  # the round's new model's (promote.record)
        if isinstance(value, (int, float)):
            history.append((int(round_), float(value)))
    return history


def should_stop(history: list[tuple[int, float]], loop: Any) -> bool:
    """True when the last ``loop.patience`` rounds did not beat the best before them by
    ``loop.min_improvement`` (in the direction ``loop.higher_is_better``)."""
    if len(history) <= loop.patience:
        return False
    values = [v if loop.higher_is_better else -v for _, v in history]
    best_before = max(values[:-loop.patience])
    return max(values[-loop.patience:]) < best_before + loop.min_improvement


def run_loop(root: DataRoot, config: EngineConfig, rounds: int, run_one: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``run_one`` (one round) up to ``rounds`` times, stopping early when the configured
    metric stops improving. Returns the round summaries."""
    results = []
    for _ in range(rounds):
        results.append(run_one())
        if should_stop(metric_history(root, config.loop.metric), config.loop):
            results[-1]["stopped_early"] = f"{config.loop.metric} stopped improving"
            break
    return results
