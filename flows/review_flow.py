"""The ``review`` flow: rank a round's images for a human look, then write them as Label Studio tasks.

It waits for nobody: people correct the tasks when they can, and ``fld review import`` brings
their export back; the next round that starts applies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from engine.cli import data_root
from engine.config import EngineConfig
from engine.review.export import export_label_studio
from engine.review.plan import plan_review, round_thresholds
from flows.quiet_errors import quiet_user_errors
from flows.server_guard import guard_server

quiet_user_errors()  # a config problem or a missing round: one line, no traceback
guard_server()  # Prefect's temporary API server exits when this process dies


@task(name="plan-review", persist_result=False, cache_policy=NO_CACHE)
def plan_task(root: str, round_number: int, budget: int | None, config_path: str | None) -> int:
    config = EngineConfig.load(config_path)
    where = data_root(root)
    thresholds = round_thresholds(where, round_number, config.curation.confidence)
    return plan_review(where, round_number, budget, thresholds, config.review).num_rows


@task(name="export-review", persist_result=False, cache_policy=NO_CACHE)
def export_task(root: str, round_number: int, out: str) -> dict[str, Any]:
    return export_label_studio(data_root(root), round_number, Path(out))


@flow(name="fld-review", log_prints=True, flow_run_name="review of {root}, round {round_number}")
def review_flow(root: str, round_number: int, out: str, budget: int | None = None,
                config_path: str | None = None) -> dict[str, Any]:
    """Plan round ``round_number``'s review queue (``budget`` images, default the config's share)
    and export it to ``out`` for Label Studio."""
    queued = plan_task(root, round_number, budget, config_path)
    summary = export_task(root, round_number, out)
    print(f"review of round {round_number}: {queued} images queued, {summary['tasks']} Label Studio tasks in {out}")
    return {"queued": queued, **summary}
