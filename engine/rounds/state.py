"""Which steps of a round are done, recorded in the catalog, so re-runs skip finished steps.

:func:`run_step` skips a step the catalog already marks done for the round (its summary is
returned again), so re-running a killed round redoes only what was not finished; inside a
step, the engine's own markers and checkpoints resume the unfinished part (annotation
shards, training steps). Prefect flows (``flows/``) wrap :func:`run_step` in a task with
retries; a step a signal stopped leaves as ``engine.rounds.interrupt.Interrupted``, which they
do not retry.
"""

from __future__ import annotations

import json
from typing import Any

from engine.rounds.context import RoundContext
from engine.rounds.interrupt import stop_on_signals
from engine.rounds.records import write_step
from engine.rounds.steps import step_function
from storage import schema
from storage.catalog import Catalog
from storage.layout import DataRoot


def completed_steps(root: DataRoot, round_: int) -> dict[str, dict[str, Any]]:
    """``{step: summary}`` of the steps recorded done for ``round_``."""
    with Catalog.reading(root) as catalog:
        rows = catalog.query("select step, summary from round_steps where round = ? and status = 'done'", [round_])
    return {step: json.loads(summary or "{}") for step, summary in rows}


def run_step(context: RoundContext, name: str) -> dict[str, Any]:
    """Run step ``name`` unless it is already done for this round; record it when it finishes."""
    done = completed_steps(context.root, context.round)
    if name in done:
        return {**done[name], "skipped": True}
    with stop_on_signals():  # SIGINT/SIGTERM: Interrupted, however the step's libraries wrap it
        summary = step_function(name)(context)
    row = {"round": context.round, "step": name, "status": "done", "summary": json.dumps(summary, default=str),
           "finished_at": schema.utc_now()}
    write_step(context.root, row)  # the file first: `fld repair` rebuilds the table from it
    with Catalog(context.root) as catalog:
        catalog.upsert("round_steps", [row])
    return summary
