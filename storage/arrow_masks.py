"""Numpy bool masks read straight from Arrow validity bitmaps (no boolean Arrow array is
built and converted per call)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def valid_mask(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Bool ``(len(column),)``: True on the non-null rows; a chunk without nulls costs nothing
    but the fill, one with nulls one unpack of its bitmap (sliced chunks honour their offset)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.ones(len(column), bool)
    start = 0
    for chunk in chunks:
        n = len(chunk)
        if chunk.null_count == n:
            out[start:start + n] = False
        elif chunk.null_count:
            bitmap = np.frombuffer(chunk.buffers()[0], np.uint8)
            out[start:start + n] = np.unpackbits(bitmap, bitorder="little", count=chunk.offset + n)[chunk.offset:]
        start += n
    return out
