"""Regular files only: opened without following a link or blocking, checked on the descriptor,
read with a bound.

A FIFO opened for reading blocks until a writer comes, a device reads forever and a link may
point anywhere outside a source, so every file a reader opens goes through
:func:`open_regular`: it opens with ``O_NONBLOCK`` (and ``O_NOFOLLOW`` unless the user named
the path itself), checks ``S_ISREG`` with ``fstat`` on the descriptor it got (the file checked
is the file read: no check-then-open race) and raises :class:`NotRegularFile` otherwise.
:func:`read_at_most` reads at most ``limit + 1`` bytes, so a caller sees that a file is over
its limit without reading the rest.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import BinaryIO

_KINDS = ((stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


class NotRegularFile(OSError):
    """The path is a link, folder, FIFO, socket or device; ``str(exc)`` is the recorded reason."""

    def __init__(self, kind: str):
        super().__init__(not_regular(kind))
        self.kind = kind


def file_kind(mode: int) -> str:
    """``"regular"`` or what else an ``st_mode`` (of ``lstat``: links not followed) is."""
    if stat.S_ISREG(mode):
        return "regular"
    return next((name for test, name in _KINDS if test(mode)), "unknown type")


def not_regular(kind: str) -> str:
    """The recorded reason for a file of ``kind`` (see :func:`file_kind`)."""
    return f"not a regular file ({kind})"


def open_regular(path: str | os.PathLike[str], *, dir_fd: int | None = None, follow: bool = False) -> BinaryIO:
    """``path`` (relative to ``dir_fd`` when given) opened for binary reading if it is a regular
    file. ``follow``: follow a link in the last component (only for a path the user named).
    Raises :class:`NotRegularFile` for anything else, ``OSError`` when it cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:  # O_NOFOLLOW met a link
            raise NotRegularFile("symlink") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(file_kind(mode))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: bytes asked of a file per read: a read of n bytes allocates n first, so a limit is never asked at once
READ_CHUNK = 2**20


def read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``handle``, read in chunks of :data:`READ_CHUNK`: a result
    longer than ``limit`` means the file is over it, and nothing past that was read."""
    chunks, left = [], limit + 1
    while left > 0:
        chunk = handle.read(min(left, READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
