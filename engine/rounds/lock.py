"""One run at a time per data root: an operating-system file lock that a crashed run cannot leave
stuck and that two racers cannot both take.

``ROOT/.round.lock`` is opened (created if missing, never deleted) and locked with
``flock(LOCK_EX | LOCK_NB)``: the kernel grants it to one open file at a time and drops it when
its holder exits, however it exits, so there is no stale lock to judge and no PID to trust. The
holder then writes its record (pid, host, purpose, start time) into the file for the message
another run shows; the record is informative only and is emptied on release. A second
:class:`RoundLock` in the same process is refused too (each opens its own file). The lock is
local to one machine's kernel: on a network file system shared by several hosts use one host
per data root. No lock file is made in a folder that is not a data root (``DataRoot.refusal``:
``~``, ``/``, a folder of the user's files): taking the lock there raises :class:`NotADataRoot`,
and :func:`refuse_if_busy` creates nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from storage.layout import DataRoot


class RoundBusy(RuntimeError):
    """Another run holds the root's lock."""


class NotADataRoot(ValueError):
    """The folder is not a data root, nor a new or empty one to make into one."""


def check_root(root: DataRoot) -> None:
    """Raise :class:`NotADataRoot` (one line naming ``--root``) unless ``root`` is a data root or
    a missing or empty folder a command may make one."""
    if (reason := root.refusal()) is not None:
        raise NotADataRoot(reason)


class RoundLock:
    """Context manager holding ``ROOT/.round.lock`` for the duration of a run."""

    def __init__(self, root: DataRoot, purpose: str = "round"):
        self.root = root
        self.path: Path = root.path / ".round.lock"
        self.purpose = purpose
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose}
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """The record the current holder wrote (None: none, or not readable)."""
        try:
            record = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _busy_message(self) -> str:
        holder = self.holder()
        if holder is None:
            return (f"another run holds the lock of this data root ({self.path}); wait for it to finish "
                    f"(the lock goes with its process)")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0) or 0)))
        if holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]:
            return f"this process already holds the round lock of {self.path.parent} (for its {holder.get('purpose')})"
        return (f"another {holder.get('purpose', 'round')} is running on this data root (pid {holder.get('pid')} "
                f"on {holder.get('host')}, since {since}); wait for it to finish (the lock goes with its process)")

    def acquire(self) -> None:
        if self._fd is not None:
            raise RoundBusy(self._busy_message())
        check_root(self.root)  # never a lock file in a folder that is not a data root
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RoundBusy(self._busy_message()) from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps({**self.owner, "started": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no record: nobody holds it
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RoundLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def refuse_if_busy(root: DataRoot) -> None:
    """Raise :class:`NotADataRoot` when ``root`` is not a data root (nor a new or empty folder)
    and :class:`RoundBusy` when another run holds its lock, at once (a check before starting
    Prefect; the run itself still takes the lock). Creates nothing: a lock file that does not
    exist is held by nobody."""
    check_root(root)
    lock = RoundLock(root, purpose="check")
    if not lock.path.is_file():
        return
    with lock:
        pass
