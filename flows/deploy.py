"""Scheduled deployments: the ``round`` flow served with a cron schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from flows.round_flow import round_flow


def build_deployment(root: str, config_path: str, cron: str, name: str = "fld-round",
                     timezone: str = "UTC") -> Any:
    """A Prefect ``RunnerDeployment`` of the round flow for ``root``, scheduled by ``cron``.

    The config is validated now, so a bad key fails at deploy time rather than at 2 a.m.
    """
    from prefect.client.schemas.schedules import construct_schedule

    EngineConfig.load(config_path)
    construct_schedule(cron=cron, timezone=timezone)  # raises on a malformed expression
    return round_flow.to_deployment(
        name=name, cron=cron,
        parameters={"root": str(Path(root).resolve()), "config_path": str(Path(config_path).resolve())},
        description=f"fld round on {root}, {cron} ({timezone})", tags=["fld-engine"],
    )


def serve_deployment(deployment: Any) -> None:
    """Serve the deployment until interrupted (runs the flow at each scheduled time)."""
    from prefect import serve

    serve(deployment)
