"""Entry point of the ``fld`` console script: the engine's commands plus the flow commands."""

from __future__ import annotations

import importlib
import os
import sys

# Prefect's local server would send a telemetry heartbeat (a network call this tool must not
# make, and on start-up it races the server's own SQLite writes: "database is locked").
# Users who want it can set the variable themselves.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from engine.cli import load_commands  # noqa: E402 (after the environment default above)
from engine.cli import main as engine_main  # noqa: E402

load_commands()  # the engine's commands first, so `fld --help` lists them first
importlib.import_module("flows.commands")  # then round, loop, deploy


def main(argv: list[str] | None = None) -> int:
    return engine_main(argv)


if __name__ == "__main__":
    sys.exit(main())
