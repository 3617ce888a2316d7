"""Entry point of the ``fld`` console script: the engine's commands plus the flow commands."""

from __future__ import annotations

import importlib
import sys

from engine.cli import load_commands  # the package flows/__init__.py set Prefect's defaults first
from engine.cli import main as engine_main

load_commands()  # the engine's commands first, so `fld --help` lists them first
importlib.import_module("flows.commands")  # then round, loop, deploy


def main(argv: list[str] | None = None) -> int:
    return engine_main(argv)


if __name__ == "__main__":
    sys.exit(main())
