"""The first SIGINT (Ctrl-C) or SIGTERM stops a run: no retry, no next step, one line, exit 128 + signal.

:func:`stop_on_signals` installs a handler for both signals (main thread only) that records the
signal and raises :class:`Interrupted`, a ``KeyboardInterrupt``. Libraries remake it on the way
up (a Beam DoFn's exception comes back as a ``RuntimeError``, Prefect turns SIGTERM into its
``TerminationSignal``), so the recorded signal decides, not the exception's type: whatever leaves
the context after a signal arrived leaves it as :class:`Interrupted`. Prefect retries only
``Exception``s, so a step stopped so is not retried; ``engine.rounds.loop`` records it as
interrupted (the round resumes at that step) and names the step and round in the exception, whose
:meth:`Interrupted.line` the CLI prints. Beam's report of the stopped DoFn (a traceback) is dropped.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: the signals that stop a run
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the signals received since the outermost stop_on_signals began
_depth = [0]


class Interrupted(KeyboardInterrupt):
    """A run stopped by ``signum``; ``round`` and ``step`` say where, once a round knows.

    Built as ``Interrupted(message, signum)`` so that Beam, which re-creates a DoFn's exception
    with its step name appended to the first argument, keeps the type.
    """

    def __init__(self, message: str = "interrupted", signum: int = signal.SIGINT):
        super().__init__(message, int(signum))
        self.signum = int(signum)
        self.round: int | None = None
        self.step: str | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM (the shell's convention)."""
        return 128 + self.signum

    def __str__(self) -> str:
        return str(self.args[0])

    def line(self) -> str:
        """The one line the CLI prints (after ``fld COMMAND: ``)."""
        where = f" at {self.step} (round {self.round})" if self.step is not None else ""
        return f"interrupted{where}; run the same command to resume"


def received() -> int | None:
    """The first signal received by a :func:`stop_on_signals` handler (None: none)."""
    return _received[0] if _received else None


def interruption(error: BaseException) -> Interrupted | None:
    """``error`` as :class:`Interrupted` when a signal caused it (whatever became of it), else None."""
    if isinstance(error, Interrupted):
        return error
    signum = received()
    if signum is None and isinstance(error, KeyboardInterrupt):
        signum = signal.SIGINT  # Python's own Ctrl-C, outside our handler
    return None if signum is None else Interrupted(signum=signum)


class DropInterruptReports(logging.Filter):
    """Drops a log record of an interrupted run's exception (Beam logs a stopped DoFn's with its
    traceback before re-raising it; the CLI's one line says it all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] is not None and interruption(record.exc_info[1]))


#: the logger Beam reports a failed DoFn on
logging.getLogger("apache_beam.runners.common").addFilter(DropInterruptReports())


def _handle(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Interrupted(signum=signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block, and any exception leaving it
    after one arrived leaves as :class:`Interrupted`; the previous handlers come back after it.
    Nested blocks share the record of the outermost one (a step inside a round inside a command),
    which ends with it. Outside the main thread (where no handler can be set) it only converts."""
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS} if main else {}
    if main:
        _depth[0] += 1
    try:
        for sig in previous:
            signal.signal(sig, _handle)
        yield
    except BaseException as error:
        stopped = interruption(error)
        if stopped is None or stopped is error:
            raise
        raise stopped from error
    finally:
        if main:
            _depth[0] -= 1
            if _depth[0] == 0:
                _received.clear()  # what leaves the outermost block was converted already
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be restored
                signal.signal(sig, handler)
