"""No traceback for a user-caused failure inside a flow.

Prefect logs every failed task and flow run with its traceback. When the cause is the user's to
fix (a full disk, a read-only or unwritable root, a config problem, a busy catalog), ``fld``
prints one line saying what to do (``engine.cli``), and the traceback only buries it: this
logging filter keeps Prefect's line and drops the traceback of those exceptions.
"""

from __future__ import annotations

import errno
import logging

#: OSError numbers a user fixes (space, permissions, a read-only file system, a missing path)
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT})
#: the Prefect loggers that report failed runs
PREFECT_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


def user_caused(error: BaseException | None) -> bool:
    """Whether ``error`` is one the CLI answers with one line (see ``engine.cli.main``)."""
    from engine.cli import USER_ERRORS

    if isinstance(error, OSError):
        return error.errno in USER_ERRNOS
    return isinstance(error, USER_ERRORS)


class DropUserTracebacks(logging.Filter):
    """Keeps the record, without the traceback of a user-caused exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and user_caused(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_errors() -> None:
    """Install the filter on Prefect's run loggers (idempotent)."""
    for name in PREFECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropUserTracebacks) for f in logger.filters):
            logger.addFilter(DropUserTracebacks())
