"""Image folders, walked recursively in sorted order.

Keys are paths relative to the folder (up to the file name's first dot), so ``a/b.jpg`` and
``a/b.json`` form one record. Hidden files and folders (leading dot) are skipped.
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
    register_reader,
    split_key,
)


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


@register_reader("folder")
class FolderShardReader(ShardReader):
    """Streams the images of a folder tree, with their sidecars."""

    @property
    def shard_id(self) -> str:
        digest = hashlib.sha256(f"folder|{self.path}".encode())
        for path in _walk(self.path):
            stat = path.stat()
            digest.update(f"|{path.relative_to(self.path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    @property
    def num_bytes(self) -> int:
        return sum(path.stat().st_size for path in _walk(self.path))

    def records(self) -> Iterator[Record]:
        group = GroupedMembers()
        for path in _walk(self.path):
            name = path.relative_to(self.path).as_posix()
            key, ext = split_key(name)
            if ext not in IMAGE_EXTENSIONS and ext not in SIDECAR_EXTENSIONS:
                yield from group.flush()
                yield Record(key=name, name=name, error=f"not an image file (extension {ext or 'none'!r})")
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield from group.flush()
                yield Record(key=name, name=name, error=f"unreadable file: {exc}")
                continue
            yield from group.add(name, key, ext, data)
        yield from group.flush()
