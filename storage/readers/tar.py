"""WebDataset-style tar shards (``.tar``, ``.tar.gz``, ``.tgz``), read as a stream.

The tar is opened in streaming mode (``r|*``), so it is read once, front to back, and never
held in memory. A member whose name is absolute or contains ``..`` is refused (it would
escape an extraction folder), and so is a link or device member and a name that is not valid
UTF-8; a member that is neither an image nor a sidecar is reported; a member over its size
limit (images ``max_member_bytes``, sidecars ``max_sidecar_bytes``) is refused by its declared
size, unread, and no read goes past the limit; an extended header (pax, GNU long name) over
:data:`MAX_HEADER_BYTES` ends the shard as corrupt before it is read. A tar cut short yields
what was read plus one error record saying where it stopped.
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO, Iterator

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
from storage.readers.regular import open_regular, read_at_most

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def unsafe_member_name(name: str) -> bool:
    """True for absolute names and names with a ``..`` component."""
    return name.startswith("/") or posixpath.isabs(name) or ".." in name.split("/")


COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
END_MARKER = 2 * tarfile.BLOCKSIZE
#: largest extended header (pax record, GNU long name or link) read, bytes
MAX_HEADER_BYTES = 2**20
_EXTENDED_HEADERS = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                               tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose extended headers are refused by their declared size before tarfile
    reads them whole."""

    def _proc_member(self, archive):
        if self.type in _EXTENDED_HEADERS and self.size > MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"extended header of {self.size} bytes, over {MAX_HEADER_BYTES}")
        return super()._proc_member(archive)


def _ends_with_marker(handle: BinaryIO, offset: int) -> bool:
    """Whether a plain tar has its end-of-archive marker (two zero blocks) at ``offset``.

    A tar cut exactly at a member boundary reads like a complete one; the missing marker is
    the only sign. Compressed tars are checked by their codec (a cut stream raises).
    """
    handle.seek(0)
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
            with open_regular(self.path, follow=True) as handle:
                with tarfile.open(fileobj=handle, mode="r|*", tarinfo=_BoundedTarInfo) as archive:
                    for member in archive:
                        if member.isdir():
                            continue
                        problem = self._refusal(member)
                        if problem is not None:
                            yield from group.refuse(printable_name(member.name), problem)
                            continue
                        key, ext = split_key(member.name)
                        limit, setting = self.limit_for(ext)
                        source = archive.extractfile(member)
                        data = read_at_most(source, limit) if source is not None else b""
                        read += 1
                        if len(data) > limit:  # the header understated the size
                            yield from group.refuse(member.name, oversized(f"more than {limit}", limit, setting))
                            continue
                        yield from group.add(member.name, key, ext, data)
                complete = _ends_with_marker(handle, archive.offset)
        except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError) as exc:
            yield from group.flush()
            yield self._cut(read, f"{type(exc).__name__}: {exc}")
            return
        yield from group.flush()
        if not complete:
            yield self._cut(read, "the end-of-archive marker is missing")

    def _refusal(self, member: tarfile.TarInfo) -> str | None:
        """Why a (non-folder) member is not read, judged from its header alone, or None."""
        name = member.name
        problem = name_problem(name)
        if problem is not None:
            return problem
        if unsafe_member_name(name):
            return "unsafe member name (absolute or contains '..')"
        if not member.isfile():
            return "not a regular file (link or device member)"
        _, ext = split_key(name)
        if ext not in IMAGE_EXTENSIONS and ext not in SIDECAR_EXTENSIONS:
            return f"not an image member (extension {ext or 'none'!r})"
        return self.too_large(ext, member.size)  # skipped in the stream, never read

    def _cut(self, read: int, why: str) -> Record:
        return Record(key=f"<truncated after {read} members>", name=self.path.name,
                      error=f"truncated or corrupt tar after {read} members: {why}")
