"""One round at a time per data root: a lock file that a crashed run does not leave stuck.

``ROOT/.round.lock`` is created with ``O_EXCL`` and holds the owner's pid, host and start
time. A lock whose owner is gone (same host, pid no longer alive) or that is older than
``stale_after`` seconds is stale and taken over; any other lock refuses with a message that
says who holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from storage.layout import DataRoot


class RoundBusy(RuntimeError):
    """Another run holds the root's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RoundLock:
    """Context manager holding ``ROOT/.round.lock`` for the duration of a run."""

    def __init__(self, root: DataRoot, purpose: str = "round", stale_after: float = 48 * 3600):
        self.path: Path = root.path / ".round.lock"
        self.purpose, self.stale_after = purpose, stale_after
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose}

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            return True  # unreadable: its writer died between create and write
        if time.time() - float(holder.get("started", 0)) > self.stale_after:
            return True
        return holder.get("host") == self.owner["host"] and not _alive(int(holder.get("pid", -1)))

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == self.owner["host"]:
                    raise RoundBusy("this process already holds the round lock") from None
                if self._stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
                raise RoundBusy(
                    f"another {holder.get('purpose', 'round')} is running on this data root (pid {holder.get('pid')} "
                    f"on {holder.get('host')}, since {since}); wait for it to finish, or delete {self.path} "
                    f"if that process is gone") from None
            with os.fdopen(fd, "w") as handle:
                json.dump({**self.owner, "started": time.time()}, handle)
            return
        raise RoundBusy(f"could not take {self.path}; another run keeps re-creating it")

    def release(self) -> None:
        holder = self._holder()
        if holder and holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RoundLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
