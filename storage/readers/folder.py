"""Image folders, walked recursively in sorted order.

Keys are paths relative to the folder (up to the file name's first dot), so ``a/b.jpg`` and
``a/b.json`` form one record. Hidden files and folders (leading dot) are skipped. A folder that
cannot be listed and a file that cannot be read are error records (key: the path, a folder's
ending in ``/``), never skipped silently.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

from storage.readers.base import (
    IMAGE_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    GroupedMembers,
    Record,
    ShardReader,
    oversized,
    register_reader,
    split_key,
)


def _walk(root: Path) -> Iterator[Path | OSError]:
    """Files in sorted order, and the error of each folder that could not be listed."""
    failures: list[OSError] = []
    for directory, dirs, files in os.walk(root, onerror=failures.append):
        yield from failures
        failures.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name
    yield from failures


def _folder_key(root: Path, error: OSError) -> str:
    where = Path(error.filename) if error.filename else root
    try:
        relative = where.relative_to(root).as_posix()
    except ValueError:
        relative = str(where)
    return ("" if relative == "." else relative) + "/"


@register_reader("folder")
class FolderShardReader(ShardReader):
    """Streams the images of a folder tree, with their sidecars."""

    @property
    def shard_id(self) -> str:
        digest = hashlib.sha256(f"folder|{self.path}".encode())
        for path in _walk(self.path):
            if isinstance(path, OSError):
                digest.update(f"|unlistable {_folder_key(self.path, path)}".encode())
                continue
            stat = path.stat()
            digest.update(f"|{path.relative_to(self.path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    @property
    def num_bytes(self) -> int:
        return sum(path.stat().st_size for path in _walk(self.path) if not isinstance(path, OSError))

    def records(self) -> Iterator[Record]:
        group = GroupedMembers()
        for path in _walk(self.path):
            if isinstance(path, OSError):
                yield from group.flush()
                key = _folder_key(self.path, path)
                yield Record(key=key, name=key, error=f"unreadable folder: {path.strerror or path}")
                continue
            name = path.relative_to(self.path).as_posix()
            key, ext = split_key(name)
            if ext not in IMAGE_EXTENSIONS and ext not in SIDECAR_EXTENSIONS:
                yield from group.flush()
                yield Record(key=name, name=name, error=f"not an image file (extension {ext or 'none'!r})")
                continue
            try:
                size = path.stat().st_size
                if size > self.max_member_bytes:
                    yield from group.flush()
                    yield Record(key=name, name=name, error=oversized(size, self.max_member_bytes))
                    continue
                data = path.read_bytes()
            except OSError as exc:
                yield from group.flush()
                yield Record(key=name, name=name, error=f"unreadable file: {exc}")
                continue
            yield from group.add(name, key, ext, data)
        yield from group.flush()
