"""Open a file inside a folder, every check made on the opened file itself.

A check before an open (``resolve()``, ``is_file()``, then ``open``) races with anyone who swaps
the path between the two: a regular file at the check can be a link to a file elsewhere at the
open. :func:`open_inside` opens first and then checks the open descriptor: it is a regular file
(``fstat``) and its real path (the kernel's, ``/proc/self/fd/N`` on Linux, ``F_GETPATH`` on
macOS) lies inside the folder's real path, so a link inside the folder to a file inside it is
followed and one that leads outside is refused, whatever happens to the path meanwhile. The
open is non-blocking (a named pipe never waits for a writer) and takes no terminal; a ``..``
segment is refused before anything is opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def fd_path(fd: int) -> str | None:
    """The real path of the open descriptor ``fd`` as the kernel knows it, or None where the
    system cannot tell."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    import fcntl

    getpath = getattr(fcntl, "F_GETPATH", None)
    if getpath is None:
        return None
    try:
        return os.fsdecode(fcntl.fcntl(fd, getpath, bytes(1024)).split(b"\0", 1)[0])
    except OSError:
        return None


def open_inside(folder: Path, relative: str) -> tuple[BinaryIO, os.stat_result] | None:
    """``(file opened for binary reading, its stat)`` of ``folder/relative`` (``/``-separated),
    or None: no such file, not a regular file, outside ``folder``'s real path, a name too long,
    no permission, or a ``..`` segment."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    base = os.path.realpath(folder)
    try:
        fd = os.open(os.path.join(base, *parts), _FLAGS)
    except (OSError, ValueError):  # missing, a loop, a name too long, no permission; ValueError: a NUL
        return None
    try:
        info = os.fstat(fd)
        real = fd_path(fd)
        if stat.S_ISREG(info.st_mode) and real is not None and Path(real).is_relative_to(base):
            return os.fdopen(fd, "rb"), info
    except OSError:
        pass
    os.close(fd)
    return None
