"""A folder tree walked without following links: every entry found through descriptors.

Each folder is opened relative to its parent's descriptor with ``O_NOFOLLOW | O_DIRECTORY`` and
listed through its own descriptor, and each entry is ``lstat``-ed relative to it, so nothing
outside the named folder is listed or read, even when a folder is swapped for a link while the
walk runs. A link (to a file or a folder) is an entry of kind ``symlink``, never followed.

Order: a folder's files in sorted name order, then its sub-folders, each walked whole, in
sorted order (depth first, without recursion, so any depth is walked). Names are file-system
names (undecodable bytes as surrogate escapes); relative paths are ``/``-separated.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from storage.readers.regular import file_kind

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class FolderEntry:
    """A non-folder entry. ``name``: its path relative to the walked folder. ``base``: its name
    in the folder open as ``dir_fd`` (valid until the walk moves on). ``stat``: its ``lstat``.
    """

    name: str
    base: str
    dir_fd: int
    stat: os.stat_result

    @property
    def kind(self) -> str:
        """``"regular"``, ``"symlink"``, ``"fifo"``, ... (:func:`storage.readers.regular.file_kind`)."""
        return file_kind(self.stat.st_mode)


@dataclass(frozen=True)
class WalkProblem:
    """A folder that could not be opened or listed (``name`` ends in ``/``; ``"/"`` is the walked
    folder itself), or an entry that could not be ``lstat``-ed. ``name``: its relative path."""

    name: str
    error: OSError

    @property
    def is_folder(self) -> bool:
        return self.name.endswith("/")


class _Descriptors:
    """The open folder descriptors of a walk; one is closed once its folder and every
    sub-folder opened from it are done (``users`` counts them)."""

    def __init__(self) -> None:
        self.users: dict[int, int] = {}

    def add(self, fd: int) -> int:
        self.users[fd] = 1
        return fd

    def release(self, fd: int) -> None:
        self.users[fd] -= 1
        if self.users[fd] == 0:
            del self.users[fd]
            os.close(fd)

    def close_all(self) -> None:
        for fd in self.users:
            os.close(fd)
        self.users.clear()


def walk_folder(root: Path, skip_hidden: bool = True) -> Iterator[FolderEntry | WalkProblem]:
    """Every non-folder entry under ``root`` (the user's folder: a link there is followed), and
    every problem met. ``skip_hidden``: leave out names with a leading dot."""
    pending: list[tuple[int | None, str]] = [(None, "")]  # (parent's descriptor, relative path)
    descriptors = _Descriptors()
    try:
        while pending:
            parent, relative = pending.pop()
            try:
                fd = descriptors.add(
                    os.open(root, _DIR_FLAGS) if parent is None else
                    os.open(relative.rsplit("/", 1)[-1], _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent))
            except OSError as exc:
                yield WalkProblem(relative + "/", exc)
                continue
            finally:
                if parent is not None:
                    descriptors.release(parent)
            try:
                with os.scandir(fd) as listing:
                    names = sorted(entry.name for entry in listing)
            except OSError as exc:
                descriptors.release(fd)
                yield WalkProblem(relative + "/", exc)
                continue
            subfolders = []
            for base in names:
                if skip_hidden and base.startswith("."):
                    continue
                name = f"{relative}/{base}" if relative else base
                try:
                    info = os.stat(base, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:  # gone since the listing: nothing to record
                    continue
                except OSError as exc:
                    yield WalkProblem(name, exc)
                    continue
                if stat.S_ISDIR(info.st_mode):
                    subfolders.append(name)
                else:
                    yield FolderEntry(name, base, fd, info)
            descriptors.users[fd] += len(subfolders)
            pending.extend((fd, name) for name in reversed(subfolders))
            descriptors.release(fd)
    finally:
        descriptors.close_all()
