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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
SIDECAR_EXTENSIONS = frozenset({"json", "txt"})


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


def parse_sidecar(ext: str, data: bytes) -> Any:
    """Decoded sidecar content: JSON -> object (raw text when it does not parse), txt -> str."""
    text = data.decode("utf-8", errors="replace")
    if ext == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def file_fingerprint(path: Path, fmt: str) -> str:
    """Shard id of a single-file shard: hash of format, absolute path, size and mtime (16 hex)."""
    stat = path.stat()
    blob = f"{fmt}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: largest image file or member a reader loads into memory, bytes (a bigger one is an error
#: record, refused before it is read: a small compressed tar can hold a huge member)
MAX_MEMBER_BYTES = 256 * 2**20


def oversized(size: int, limit: int) -> str:
    """The error of a member of ``size`` bytes over ``limit``."""
    return f"member too large: {size} bytes, over max_member_bytes {limit}"


class ShardReader(abc.ABC):
    """Reads one shard. Subclasses set ``format`` and implement ``matches`` and ``records``.

    ``max_member_bytes``: an image or sidecar larger than this (bytes) becomes an error record
    without being read (:data:`MAX_MEMBER_BYTES` by default).
    """

    format: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike[str], max_member_bytes: int = MAX_MEMBER_BYTES):
        self.path = Path(path).resolve()
        self.max_member_bytes = max_member_bytes

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
        """Add a member; yields the previous group's records when the key changes."""
        if key != self.key:
            yield from self.flush()
            self.key = key
        if ext in IMAGE_EXTENSIONS:
            self.images.append((name, data))
        else:
            self.sidecars[ext] = parse_sidecar(ext, data)
            self.sidecar_names.append(name)

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
