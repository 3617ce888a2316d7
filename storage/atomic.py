"""Atomic file writes: write to a hidden temp file in the same folder, then rename.

A reader (DuckDB globbing ``part-*.parquet``, a resumed run checking a marker) never sees a
half-written file: the temp name starts with ``.`` and ends with ``.tmp``, and ``os.replace``
is atomic on POSIX within one file system. An exception inside the block removes the temp.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage.schema import UNIQUE_VALUE_COLUMNS


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``final``; on normal exit rename it to ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {final}")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet_atomic(table: pa.Table, final: str | os.PathLike[str], row_group_size: int | None = None) -> Path:
    """Write ``table`` as Parquet (zstd) to ``final`` atomically; returns ``final``. Columns of
    ``storage.schema.UNIQUE_VALUE_COLUMNS`` are written without a dictionary attempt and
    without min/max statistics (random ids span the whole range: no reader skips by them)."""
    dictionary = [c for c in table.column_names if c not in UNIQUE_VALUE_COLUMNS]
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size, use_dictionary=dictionary,
                       write_statistics=dictionary)
    return Path(final)


def write_text_atomic(text: str, final: str | os.PathLike[str]) -> Path:
    """Write UTF-8 ``text`` to ``final`` atomically (markers, JSON, HTML); returns ``final``."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
