"""Parquet files with an image-bytes column, read in record batches.

The image column is found by name (``image``, ``jpg``, ``png``, ``img``, ``image_bytes``,
``bytes``) or as the first binary column; Hugging Face ``datasets`` image structs
(``{bytes, path}``) are understood. The key comes from ``__key__``, ``key`` or ``id`` when
present, else the row number. Other scalar columns are kept as ``meta["columns"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from storage.readers.base import Record, ShardReader, oversized, register_reader
from storage.readers.regular import open_regular

IMAGE_COLUMN_NAMES = ("image", "jpg", "png", "img", "image_bytes", "bytes")
KEY_COLUMN_NAMES = ("__key__", "key", "id")
BATCH_ROWS = 64


def _is_image_struct(dtype: pa.DataType) -> bool:
    return pa.types.is_struct(dtype) and any(dtype.field(i).name == "bytes" for i in range(dtype.num_fields))


def find_image_column(schema: pa.Schema) -> str | None:
    """Name of the column holding image bytes, or None."""
    usable = {f.name: f for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
              or _is_image_struct(f.type)}
    for name in IMAGE_COLUMN_NAMES:
        if name in usable:
            return name
    return next(iter(usable), None)


def _scalar_meta(row: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in skip and isinstance(v, (str, int, float, bool))}


@register_reader("parquet")
class ParquetShardReader(ShardReader):
    """Streams images out of a Parquet file, ``BATCH_ROWS`` rows at a time."""

    @classmethod
    def matches(cls, path: Path) -> bool:
        return path.suffix.lower() == ".parquet"

    def records(self) -> Iterator[Record]:
        try:
            handle = open_regular(self.path, follow=True)  # never a FIFO or device, whatever its name
        except OSError as exc:
            yield Record(key="<unreadable>", name=self.path.name, error=f"unreadable Parquet file: {exc}")
            return
        with handle:
            yield from self._records(handle)

    def _records(self, handle: BinaryIO) -> Iterator[Record]:
        try:
            parquet = pq.ParquetFile(handle)
        except Exception as exc:
            yield Record(key="<unreadable>", name=self.path.name, error=f"unreadable Parquet file: {exc}")
            return
        schema = parquet.schema_arrow
        image_column = find_image_column(schema)
        if image_column is None:
            yield Record(key="<no image column>", name=self.path.name,
                         error=f"no image-bytes column among {schema.names}")
            return
        key_column = next((c for c in KEY_COLUMN_NAMES if c in schema.names), None)
        meta_columns = [f.name for f in schema if f.name != image_column and not pa.types.is_nested(f.type)
                        and not pa.types.is_binary(f.type)]
        row_number = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[image_column, *meta_columns]):
                for row in batch.to_pylist():
                    value = row[image_column]
                    name = ""
                    if isinstance(value, dict):
                        name = value.get("path") or ""
                        value = value.get("bytes")
                    key = str(row[key_column]) if key_column and row.get(key_column) is not None else f"{row_number:08d}"
                    row_number += 1
                    meta = {"columns": _scalar_meta(row, {image_column})} if meta_columns else {}
                    if value is None:
                        yield Record(key=key, name=name or key, meta=meta, error="null image bytes")
                    elif not isinstance(value, (bytes, bytearray, memoryview)):  # judged row by row
                        yield Record(key=key, name=name or key, meta=meta,
                                     error=f"the image value is {type(value).__name__}, not bytes")
                    elif len(value) > self.max_member_bytes:
                        yield Record(key=key, name=name or key, meta=meta, error=oversized(len(value), self.max_member_bytes))
                    else:
                        yield Record(key=key, name=name or key, data=bytes(value), meta=meta)
        except Exception as exc:
            yield Record(key=f"<truncated after {row_number} rows>", name=self.path.name,
                         error=f"truncated or corrupt Parquet after {row_number} rows: {exc}")
