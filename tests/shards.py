"""Helpers that write shards (tar, folder, Parquet) from (name, bytes) members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w", **options) -> Path:
    """A tar (``mode`` "w" or "w:gz"; ``options`` to ``tarfile.open``, e.g. ``format``) with the members
    in the given order."""
    with tarfile.open(path, mode, **options) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_folder(path: Path, members: list[tuple[str, bytes]]) -> Path:
    for name, data in members:
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def write_parquet(path: Path, keys: list[str], images: list[bytes | None], captions: list[str]) -> Path:
    table = pa.table({"key": keys, "image": pa.array(images, pa.binary()), "caption": captions})
    pq.write_table(table, path)
    return path
