"""The shard-reader contract: a shard streams ``Record``s, one per image (or per problem).

A shard is one unit of ingest and annotation work: a WebDataset-style tar, an image folder
or a Parquet file. Readers never load a shard whole; they yield records one by one, grouping
an image with its sidecars (``.json`` / ``.txt`` with the same key) the way WebDataset does:
the key of a member is its path up to the first dot of its file name.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
SIDECAR_EXTENSIONS = frozenset({"json", "txt"})

#: deepest nesting of arrays/objects a JSON sidecar may have (levels; the top-level container is 1)
MAX_SIDECAR_DEPTH = 64


@dataclass
class Record:
    """One image read from a shard, or one problem found while reading it.

    ``key``: unique within the shard. ``name``: the member / file name the image came from.
    ``data``: the raw image bytes (None when ``error`` is set). ``meta``: parsed sidecars,
    ``{"json": ..., "txt": ...}``. ``error``: why the record is unusable before decoding.
    """

    key: str
    name: str
    data: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def split_key(name: str) -> tuple[str, str]:
    """``("dir/abc", "jpg")`` for ``"dir/abc.jpg"``; the key stops at the file name's first dot."""
    directory, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    key = posixpath.join(directory, stem) if directory else stem
    return key, ext.lower() if dot else ""


class SidecarRejected(ValueError):
    """A sidecar that is not kept; ``str(exc)`` is the reason recorded for it."""


def parse_sidecar(ext: str, data: bytes) -> Any:
    """Decoded sidecar content: JSON -> object (raw text when it does not parse), txt -> str.

    Raises :class:`SidecarRejected` for JSON nested deeper than :data:`MAX_SIDECAR_DEPTH`
    (measured before parsing, so the parser never recurses that deep).
    """
    text = data.decode("utf-8", errors="replace")
    if ext != "json":
        return text
    if _nested_deeper(text, MAX_SIDECAR_DEPTH):
        raise SidecarRejected(f"invalid sidecar: JSON nested deeper than {MAX_SIDECAR_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or a number too long to convert
        return text


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _nested_deeper(text: str, limit: int) -> bool:
    """Whether the brackets of JSON ``text`` (outside its strings) nest more than ``limit`` deep."""
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def name_problem(name: str) -> str | None:
    """The reason a member or file name cannot be kept (not valid UTF-8), or None.

    Names come from the file system or a tar header with undecodable bytes as surrogate
    escapes (``os.fsdecode``); the reason shows them escaped.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"name is not valid UTF-8: {name!r} (rename it)"
    return None


def printable_name(name: str) -> str:
    """``name`` with each undecodable byte (a surrogate escape) written ``\\xNN`` (other lone
    surrogates ``\\uNNNN``): valid UTF-8, usable as the key of an error row."""
    return "".join(_escape(ch) if "\ud800" <= ch <= "\udfff" else ch for ch in name)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def file_fingerprint(path: Path, fmt: str) -> str:
    """Shard id of a single-file shard: hash of format, absolute path, size and mtime (16 hex)."""
    stat = path.stat()
    blob = f"{fmt}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: largest image file or member a reader loads into memory, bytes (a bigger one is an error
#: record, refused before it is read: a small compressed tar can hold a huge member)
MAX_MEMBER_BYTES = 256 * 2**20
#: largest sidecar (``.json`` / ``.txt``) a reader loads, bytes; a bigger one is an error record
MAX_SIDECAR_BYTES = 2**20


def oversized(size: int | str, limit: int, setting: str = "max_member_bytes") -> str:
    """The error of a member of ``size`` bytes (a number, or e.g. ``"more than N"``) over
    ``limit``, the value of ``setting`` (``max_member_bytes`` or ``max_sidecar_bytes``)."""
    what = "sidecar" if setting == "max_sidecar_bytes" else "member"
    return f"{what} too large: {size} bytes, over {setting} {limit}"


class ShardReader(abc.ABC):
    """Reads one shard. Subclasses set ``format`` and implement ``matches`` and ``records``.

    ``max_member_bytes``: an image larger than this (bytes) becomes an error record without
    being read (:data:`MAX_MEMBER_BYTES` by default); ``max_sidecar_bytes`` the same for a
    sidecar (:data:`MAX_SIDECAR_BYTES`).
    """

    format: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike[str], max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_sidecar_bytes: int = MAX_SIDECAR_BYTES):
        self.path = Path(path).resolve()
        self.max_member_bytes = max_member_bytes
        self.max_sidecar_bytes = max_sidecar_bytes

    def limit_for(self, ext: str) -> tuple[int, str]:
        """``(bytes, setting name)``: the size limit of a member with extension ``ext``."""
        if ext in SIDECAR_EXTENSIONS:
            return self.max_sidecar_bytes, "max_sidecar_bytes"
        return self.max_member_bytes, "max_member_bytes"

    def too_large(self, ext: str, size: int) -> str | None:
        """The error of a member of ``size`` bytes when it is over its limit, else None."""
        limit, setting = self.limit_for(ext)
        return oversized(size, limit, setting) if size > limit else None

    @classmethod
    def matches(cls, path: Path) -> bool:
        """Whether this reader handles the file ``path`` (folders are handled by discovery)."""
        return False

    @property
    def shard_id(self) -> str:
        """Stable id of this shard's current content (path, size and modification time)."""
        return file_fingerprint(self.path, self.format)

    @property
    def num_bytes(self) -> int:
        return self.path.stat().st_size

    @abc.abstractmethod
    def records(self) -> Iterator[Record]:
        """Stream the shard's records in a deterministic order."""


READERS: dict[str, type[ShardReader]] = {}


def register_reader(name: str) -> Callable[[type[ShardReader]], type[ShardReader]]:
    """Class decorator: register a shard reader under its format name."""

    def wrap(cls: type[ShardReader]) -> type[ShardReader]:
        cls.format = name
        READERS[name] = cls
        return cls

    return wrap


class GroupedMembers:
    """Collects consecutive members that share a key and turns them into records."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.images: list[tuple[str, bytes]] = []
        self.sidecars: dict[str, Any] = {}
        self.sidecar_names: list[str] = []

    def add(self, name: str, key: str, ext: str, data: bytes) -> Iterator[Record]:
        """Add a member; yields the previous group's records when the key changes, and an error
        record for a sidecar that is not kept."""
        if key != self.key:
            yield from self.flush()
            self.key = key
        if ext in IMAGE_EXTENSIONS:
            self.images.append((name, data))
            return
        try:
            self.sidecars[ext] = parse_sidecar(ext, data)
        except SidecarRejected as exc:
            yield Record(key=name, name=name, error=str(exc))
            return
        self.sidecar_names.append(name)

    def refuse(self, name: str, reason: str) -> Iterator[Record]:
        """The error record of member ``name``. A refused sidecar of the group being gathered
        leaves it open (its image keeps its other sidecars); anything else closes it first."""
        key, ext = split_key(name)
        if not (ext in SIDECAR_EXTENSIONS and key == self.key):
            yield from self.flush()
        yield Record(key=name, name=name, error=reason)

    def flush(self) -> Iterator[Record]:
        """Records of the group gathered so far; resets the group."""
        if self.key is not None:
            if not self.images:
                for name in self.sidecar_names:
                    yield Record(key=name, name=name, error="sidecar without an image of the same key")
            for index, (name, data) in enumerate(self.images):
                key = self.key if index == 0 else name  # a second image of one key keeps its full name
                yield Record(key=key, name=name, data=data, meta=dict(self.sidecars))
        self.key, self.images, self.sidecars, self.sidecar_names = None, [], {}, []
