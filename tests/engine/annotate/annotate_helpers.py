"""Reading back what an annotation run wrote, in a comparable form."""

from __future__ import annotations

import pyarrow.parquet as pq

from storage.layout import DataRoot


def annotation_rows(root: DataRoot, round_: int = 0) -> list[tuple]:
    """Every annotation row of the round without ``created_at``, sorted, plus file names."""
    rows = []
    for path in sorted(root.annotations(round_).glob("source=*/shard=*.parquet")):
        for row in pq.read_table(path).to_pylist():
            row.pop("created_at")
            rows.append((path.parent.name, path.name, tuple(sorted((k, str(v)) for k, v in row.items()))))
    return sorted(rows)


def error_rows(root: DataRoot, round_: int = 0) -> list[dict]:
    rows = []
    for path in sorted(root.errors.glob(f"round={round_}/source=*/*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows
