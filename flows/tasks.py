"""Prefect task wrappers of the engine's round steps (retries from the ``[flow]`` config).

A step stopped by SIGINT or SIGTERM raises ``engine.rounds.interrupt.Interrupted``, a
``KeyboardInterrupt``: Prefect records the task run as crashed and never retries it (it retries
``Exception``s only), so the round stops there.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from engine.rounds.context import RoundContext
from engine.rounds.state import run_step


@task(name="round-step", task_run_name="{name}", persist_result=False, cache_policy=NO_CACHE)
def step_task(context: RoundContext, name: str) -> dict[str, Any]:
    """One round step; re-running a failed or killed step resumes it (see engine.rounds.state)."""
    return run_step(context, name)


def run_step_as_task(context: RoundContext, name: str) -> dict[str, Any]:
    """The step runner the flows hand to ``engine.rounds.loop.run_round``."""
    flow_config = context.config.flow
    configured = step_task.with_options(retries=flow_config.retries,
                                        retry_delay_seconds=flow_config.retry_delay_seconds)
    return configured(context, name)
