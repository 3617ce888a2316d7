"""A user-caused failure inside a running round ends in one line, without Prefect's traceback."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

from flows.quiet_errors import DropUserTracebacks, user_caused
from tests.flows.conftest import REPO, write_config


def test_the_filter_drops_only_user_caused_tracebacks():
    def record(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException as caught:
            return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None,
                                     (type(caught), caught, caught.__traceback__))

    full = record(OSError(errno.ENOSPC, "No space left on device"))
    bug = record(KeyError("a bug"))
    assert DropUserTracebacks().filter(full) and full.exc_info is None
    assert DropUserTracebacks().filter(bug) and bug.exc_info is not None  # a bug keeps its traceback
    assert user_caused(ValueError("bad value")) and not user_caused(OSError(errno.EIO, "I/O error"))


FULL_DISK = """
import errno, sys
import flows.tasks
from flows.main import main
real = flows.tasks.run_step
def run_step(context, name):
    if name == "ingest":
        raise OSError(errno.ENOSPC, "No space left on device", str(context.root.images))
    return real(context, name)
flows.tasks.run_step = run_step
sys.exit(main(["round", "--root", sys.argv[1], "--config", sys.argv[2]]))
"""


def test_a_full_disk_mid_round_is_one_line(tmp_path, tiny_sample):
    """The disk fills up during a step (a real `fld` process, Prefect logging to stderr)."""
    config = write_config(tmp_path / "engine.toml", tiny_sample)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "root"), str(config)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Task run 'ingest' - Task run failed with exception: OSError" in run.stderr  # Prefect's line stays
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "fld round: error: [Errno 28] No space left on device" in run.stderr
    assert "run the same command again" in run.stderr
