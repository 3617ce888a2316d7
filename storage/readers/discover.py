"""Turn the sources a user names (files, folders, globs) into shard readers.

A file is a shard when a registered reader matches it. A folder that contains shard files
(recursively) stands for those files; a folder with none is itself an image-folder shard.
A source that does not exist raises :class:`SourceError`.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

# Importing the modules registers their readers.
from storage.readers import parquet as _parquet  # noqa: F401
from storage.readers import tar as _tar  # noqa: F401
from storage.readers.base import READERS, ShardReader
from storage.readers.folder import FolderShardReader


class SourceError(ValueError):
    """A source argument cannot be used; the message says which and why."""


def reader_for_file(path: Path) -> ShardReader | None:
    """The reader of a shard file, or None when no registered reader handles it."""
    for cls in READERS.values():
        if cls.matches(path):
            return cls(path)
    return None


def _expand(source: str) -> list[Path]:
    if any(ch in source for ch in "*?["):
        matches = sorted(glob.glob(os.path.expanduser(source), recursive=True))
        if not matches:
            raise SourceError(f"no file matches {source!r}")
        return [Path(m) for m in matches]
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {source}")
    return [path]


def discover_shards(sources: Iterable[str]) -> list[ShardReader]:
    """Readers for every shard the sources name, deduplicated, in a stable order."""
    shards: dict[Path, ShardReader] = {}
    for source in sources:
        for path in _expand(str(source)):
            if path.is_dir():
                files = [reader_for_file(p) for p in sorted(path.rglob("*")) if p.is_file()]
                found = [r for r in files if r is not None]
                for reader in found or [FolderShardReader(path)]:
                    shards.setdefault(reader.path, reader)
            else:
                reader = reader_for_file(path)
                if reader is None:
                    raise SourceError(f"{path} is not a shard (expected .tar, .tar.gz, .tgz, .parquet or a folder)")
                shards.setdefault(reader.path, reader)
    return list(shards.values())
