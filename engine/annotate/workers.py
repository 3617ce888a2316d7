"""Beam's SDK worker subprocesses (the multi-process DirectRunner's) run in a session of their own.

A terminal's Ctrl-C sends SIGINT to its whole foreground process group. Beam starts its workers
in ours, so each would die of it on its own, with a traceback, while the engine is still using
them. Started in a session of their own, only the engine is signalled; it stops (``fld round``:
``engine.rounds.interrupt``) and Beam's clean-up closes their control channel, on which they exit
(as they do when the engine is SIGKILLed). :func:`isolate_workers` patches the one ``Popen`` of
Beam's ``local_job_service`` (idempotent).
"""

from __future__ import annotations

import subprocess
import types
from typing import Any


def _popen_in_own_session(*args: Any, **kwargs: Any) -> subprocess.Popen:
    kwargs["start_new_session"] = True
    return subprocess.Popen(*args, **kwargs)


def isolate_workers() -> None:
    """Make Beam start its SDK worker subprocesses in a new session (idempotent)."""
    from apache_beam.runners.portability import local_job_service

    if getattr(local_job_service.subprocess, "fld_isolated", False):
        return
    shim = types.SimpleNamespace(**{name: getattr(subprocess, name) for name in dir(subprocess)
                                    if not name.startswith("__")})
    shim.Popen = _popen_in_own_session
    shim.fld_isolated = True
    local_job_service.subprocess = shim
