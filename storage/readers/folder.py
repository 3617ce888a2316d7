"""Image folders, walked recursively in sorted order.

Keys are paths relative to the folder (up to the file name's first dot), so ``a/b.jpg`` and
``a/b.json`` form one record. Hidden files and folders (leading dot) are skipped. Nothing
outside the folder is read: links (to files or folders) are never followed, and only regular
files are opened (:mod:`storage.readers.folder_walk`, :mod:`storage.readers.regular`), with
their reads bounded by the reader's limits. A link, FIFO, socket or device, a name that is not
valid UTF-8, a folder that cannot be listed and a file that cannot be read are error records
(key: the path, a folder's ending in ``/``), never skipped silently.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

from storage.readers.base import (
    IMAGE_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    GroupedMembers,
    Record,
    ShardReader,
    name_problem,
    oversized,
    printable_name,
    register_reader,
    split_key,
)
from storage.readers.folder_walk import FolderEntry, WalkProblem, walk_folder
from storage.readers.regular import NotRegularFile, not_regular, open_regular, read_at_most


@register_reader("folder")
class FolderShardReader(ShardReader):
    """Streams the images of a folder tree, with their sidecars."""

    @property
    def shard_id(self) -> str:
        digest = hashlib.sha256(f"folder|{self.path}".encode())
        for entry in walk_folder(self.path):
            if isinstance(entry, WalkProblem):
                digest.update(f"|unlistable {printable_name(entry.name)}".encode())
                continue
            info = entry.stat
            digest.update(f"|{printable_name(entry.name)}:{info.st_size}:{info.st_mtime_ns}".encode())
            if entry.kind != "regular":
                digest.update(f":{entry.kind}".encode())
        return digest.hexdigest()[:16]

    @property
    def num_bytes(self) -> int:
        return sum(entry.stat.st_size for entry in walk_folder(self.path)
                   if isinstance(entry, FolderEntry) and entry.kind == "regular")

    def records(self) -> Iterator[Record]:
        group = GroupedMembers()
        for entry in walk_folder(self.path):
            name = printable_name(entry.name)
            if isinstance(entry, WalkProblem):
                what = "folder" if entry.is_folder else "file"
                yield from group.refuse(name, f"unreadable {what}: {entry.error.strerror or entry.error}")
                continue
            problem = name_problem(entry.name)
            if problem is not None:
                yield from group.refuse(name, problem)
                continue
            if entry.kind != "regular":  # never opened
                yield from group.refuse(name, not_regular(entry.kind))
                continue
            key, ext = split_key(name)
            if ext not in IMAGE_EXTENSIONS and ext not in SIDECAR_EXTENSIONS:
                yield from group.refuse(name, f"not an image file (extension {ext or 'none'!r})")
                continue
            data_or_error = self._read(entry, ext)
            if isinstance(data_or_error, str):
                yield from group.refuse(name, data_or_error)
                continue
            yield from group.add(name, key, ext, data_or_error)
        yield from group.flush()

    def _read(self, entry: FolderEntry, ext: str) -> bytes | str:
        """The bytes of a regular file, or the reason they are not read (over the limit, no
        longer a regular file, unreadable)."""
        too_large = self.too_large(ext, entry.stat.st_size)
        if too_large is not None:
            return too_large
        limit, setting = self.limit_for(ext)
        try:
            with open_regular(entry.base, dir_fd=entry.dir_fd) as handle:
                data = read_at_most(handle, limit)
        except NotRegularFile as exc:
            return str(exc)
        except OSError as exc:
            return f"unreadable file: {exc.strerror or exc}"
        if len(data) > limit:  # grew since it was listed
            return oversized(f"more than {limit}", limit, setting)
        return data
