"""WebDataset-style tar shards (``.tar``, ``.tar.gz``, ``.tgz``), read as a stream.

The tar is opened in streaming mode (``r|*``), so it is read once, front to back, and never
held in memory. A member whose name is absolute or contains ``..`` is refused (it would
escape an extraction folder); a member that is neither an image nor a sidecar is reported;
a tar cut short yields what was read plus one error record saying where it stopped.
"""

from __future__ import annotations

import posixpath
import tarfile
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

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def unsafe_member_name(name: str) -> bool:
    """True for absolute names and names with a ``..`` component."""
    return name.startswith("/") or posixpath.isabs(name) or ".." in name.split("/")


COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
END_MARKER = 2 * tarfile.BLOCKSIZE


def _ends_with_marker(path: Path, offset: int) -> bool:
    """Whether a plain tar has its end-of-archive marker (two zero blocks) at ``offset``.

    A tar cut exactly at a member boundary reads like a complete one; the missing marker is
    the only sign. Compressed tars are checked by their codec (a cut stream raises).
    """
    with path.open("rb") as handle:
        if handle.read(6).startswith(COMPRESSED_MAGIC):
            return True
        handle.seek(offset)
        block = handle.read(END_MARKER)
    return len(block) == END_MARKER and not any(block)


@register_reader("tar")
class TarShardReader(ShardReader):
    """Streams a WebDataset-style tar: one record per image member, sidecars as ``meta``."""

    @classmethod
    def matches(cls, path: Path) -> bool:
        return path.name.lower().endswith(TAR_SUFFIXES)

    def records(self) -> Iterator[Record]:
        group = GroupedMembers()
        read = 0
        try:
            with tarfile.open(self.path, mode="r|*") as archive:
                for member in archive:
                    name = member.name
                    if member.isdir():
                        continue
                    if unsafe_member_name(name):
                        yield from group.flush()
                        yield Record(key=name, name=name, error="unsafe member name (absolute or contains '..')")
                        continue
                    if not member.isfile():
                        yield from group.flush()
                        yield Record(key=name, name=name, error="not a regular file (link or device member)")
                        continue
                    key, ext = split_key(name)
                    if ext not in IMAGE_EXTENSIONS and ext not in SIDECAR_EXTENSIONS:
                        yield from group.flush()
                        yield Record(key=name, name=name, error=f"not an image member (extension {ext or 'none'!r})")
                        continue
                    if member.size > self.max_member_bytes:  # skipped in the stream, never read
                        yield from group.flush()
                        yield Record(key=name, name=name, error=oversized(member.size, self.max_member_bytes))
                        continue
                    handle = archive.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    read += 1
                    yield from group.add(name, key, ext, data)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            yield from group.flush()
            yield Record(
                key=f"<truncated after {read} members>",
                name=self.path.name,
                error=f"truncated or corrupt tar after {read} members: {type(exc).__name__}: {exc}",
            )
            return
        yield from group.flush()
        if not _ends_with_marker(self.path, archive.offset):
            yield Record(
                key=f"<truncated after {read} members>",
                name=self.path.name,
                error=f"truncated or corrupt tar after {read} members: the end-of-archive marker is missing",
            )
