"""The ``round`` and ``loop`` flows: thin Prefect wrappers of ``engine.rounds.loop``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from engine.cli import data_root
from engine.config import EngineConfig
from engine.rounds.loop import run_loop, run_round
from flows.artifacts import publish_round
from flows.quiet_errors import quiet_user_errors
from flows.server_guard import guard_server
from flows.tasks import run_step_as_task

quiet_user_errors()  # a full disk or a config problem: one line, no traceback
guard_server()  # Prefect's temporary API server exits when this process dies, even by SIGKILL


@flow(name="fld-round", log_prints=True, flow_run_name="round of {root}")
def round_flow(root: str, config_path: str | None = None, round_number: int | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Annotate -> curate -> train -> evaluate -> promote -> dashboard for one round."""
    config = EngineConfig.load(config_path)
    result = run_round(data_root(root), config, round_number, step_runner=run_step_as_task, progress=progress)
    publish_round(result, str(data_root(root).path))
    return result


@flow(name="fld-loop", log_prints=True, flow_run_name="loop of {root}")
def loop_flow(root: str, config_path: str | None = None, rounds: int | None = None,
              progress: bool = False) -> list[dict[str, Any]]:
    """Up to ``rounds`` rounds (default: the config's loop.rounds), stopping early when the
    configured metric stops improving."""
    config = EngineConfig.load(config_path)
    count = rounds or config.loop.rounds
    return run_loop(data_root(root), config, count,
                    lambda: round_flow(root=root, config_path=config_path, progress=progress))
