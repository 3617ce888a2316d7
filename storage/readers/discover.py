"""Turn the sources a user names (files, folders, globs) into shard readers.

A file is a shard when a registered reader matches it. A folder that contains shard files
(recursively; regular files only, links inside it are never followed) stands for those files;
a folder with none is itself an image-folder shard. A source that does not exist, a named file
that is not a regular file (a FIFO, a device) and a shard path that is not valid UTF-8 (the
catalog could not name it) raise :class:`SourceError`, before anything is read.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

# Importing the modules registers their readers.
from storage.readers import parquet as _parquet  # noqa: F401
from storage.readers import tar as _tar  # noqa: F401
from storage.readers.base import READERS, ShardReader, name_problem
from storage.readers.folder import FolderShardReader
from storage.readers.folder_walk import FolderEntry, walk_folder
from storage.readers.regular import file_kind, not_regular


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


def _shard_files(folder: Path) -> list[ShardReader]:
    """Readers of the regular shard files under ``folder`` (hidden ones included), in path order."""
    readers = (reader_for_file(folder / entry.name) for entry in walk_folder(folder, skip_hidden=False)
               if isinstance(entry, FolderEntry) and entry.kind == "regular")
    return sorted((r for r in readers if r is not None), key=lambda r: r.path)


def _usable(reader: ShardReader) -> ShardReader:
    problem = name_problem(str(reader.path))
    if problem is not None:
        raise SourceError(f"shard path {problem}")
    return reader


def discover_shards(sources: Iterable[str]) -> list[ShardReader]:
    """Readers for every shard the sources name, deduplicated, in a stable order."""
    shards: dict[Path, ShardReader] = {}
    for source in sources:
        for path in _expand(str(source)):
            if path.is_dir():
                for reader in _shard_files(path) or [FolderShardReader(path)]:
                    shards.setdefault(reader.path, _usable(reader))
                continue
            reader = reader_for_file(path)
            if reader is None:
                raise SourceError(f"{path} is not a shard (expected .tar, .tar.gz, .tgz, .parquet or a folder)")
            kind = file_kind(path.stat().st_mode)
            if kind != "regular":
                raise SourceError(f"{path} is {not_regular(kind)}; name a shard file or a folder")
            shards.setdefault(reader.path, _usable(reader))
    return list(shards.values())
