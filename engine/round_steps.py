"""The steps of one annotate-refine round, each recorded in the catalog when done.

A round is ``ROUND_STEPS`` in order. :func:`run_step` skips a step the catalog already marks
done for the round (its summary is returned again), so re-running a killed round redoes only
what was not finished; inside a step, the engine's own markers and checkpoints resume the
unfinished part (annotation shards, training steps). Steps are plain functions of a
:class:`RoundContext`; Prefect flows (``flows/``) wrap each in a task with retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from storage import schema
from storage.catalog import Catalog
from storage.layout import DataRoot

StepFn = Callable[["RoundContext"], dict[str, Any]]
_STEPS: dict[str, StepFn] = {}


@dataclass
class RoundContext:
    """What every step gets: the data root, the round number and the resolved config."""

    root: DataRoot
    round: int
    config: Any  # engine.config.EngineConfig (typed loosely to keep imports one-way)
    progress: bool = True


def round_step(name: str) -> Callable[[StepFn], StepFn]:
    """Register a step function under ``name`` (the order comes from ``ROUND_STEPS``)."""

    def wrap(fn: StepFn) -> StepFn:
        _STEPS[name] = fn
        return fn

    return wrap


def step_function(name: str) -> StepFn:
    from engine import dashboard, round_step_impls  # noqa: F401  (they register the built-in steps)

    try:
        return _STEPS[name]
    except KeyError:
        raise ValueError(f"unknown round step {name!r}; known: {', '.join(_STEPS)}") from None


def completed_steps(root: DataRoot, round_: int) -> dict[str, dict[str, Any]]:
    """``{step: summary}`` of the steps recorded done for ``round_``."""
    with Catalog(root) as catalog:
        rows = catalog.query("select step, summary from round_steps where round = ? and status = 'done'", [round_])
    return {step: json.loads(summary or "{}") for step, summary in rows}


def run_step(context: RoundContext, name: str) -> dict[str, Any]:
    """Run step ``name`` unless it is already done for this round; record it when it finishes."""
    done = completed_steps(context.root, context.round)
    if name in done:
        return {**done[name], "skipped": True}
    summary = step_function(name)(context)
    with Catalog(context.root) as catalog:
        catalog.upsert("round_steps", [{"round": context.round, "step": name, "status": "done",
                                        "summary": json.dumps(summary, default=str),
                                        "finished_at": schema.utc_now()}])
    return summary
