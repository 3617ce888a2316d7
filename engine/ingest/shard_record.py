"""A shard's ``shards`` row kept with its images part, so ``fld repair`` rebuilds the table from
the parts alone.

``images/part-<shard_id>.parquet`` carries, under the Parquet metadata key ``fld_shard``, JSON of
the row's fields no image row holds: ``shard`` (path), ``format`` (the reader's: tar, folder,
parquet), ``num_bytes`` (of the source shard) and ``ingested_at`` (ISO 8601 with its offset); the
counts come from the part's ``status`` column. A part written before the key existed gives its
``shard`` and newest ``ingested_at`` from its rows, the format from the shard's name (the reader
whose name rule matches it, else ``folder``) and no ``num_bytes``.
"""

from __future__ import annotations

import collections
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from storage import schema
from storage.readers import READERS
from storage.readers.folder import FolderShardReader

SHARD_KEY = b"fld_shard"
_PART_PREFIX = "part-"


def shard_metadata(row: dict[str, Any]) -> str:
    """The ``fld_shard`` metadata value of a ``shards`` row."""
    stamp = row.get("ingested_at")
    return json.dumps({"shard": row["shard"], "format": row["format"], "num_bytes": row.get("num_bytes"),
                       "ingested_at": stamp.isoformat() if isinstance(stamp, datetime) else stamp}, sort_keys=True)


def format_of(shard: str) -> str:
    """The reader format whose name rule matches ``shard`` (``folder`` when none does)."""
    path = Path(shard)
    return next((cls.format for cls in READERS.values() if cls.matches(path)), FolderShardReader.format)


def row_from_part(part: Path) -> dict[str, Any]:
    """The ``shards`` row of a complete images part (module docstring); ``ValueError`` naming the
    file when it cannot be read as one."""
    try:
        recorded = json.loads((pq.read_schema(part).metadata or {}).get(SHARD_KEY, b"{}"))
        table = pq.read_table(part, columns=["shard", "status", "ingested_at"])
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{part}: not a readable images part ({error})") from None
    shards = table.column("shard").to_pylist()
    shard = recorded.get("shard") or (shards[0] if shards else None)
    if shard is None:
        raise ValueError(f"{part}: an images part with no rows and no shard record")
    stamps = [s for s in table.column("ingested_at").to_pylist() if s is not None]
    stamp = recorded.get("ingested_at")
    statuses = collections.Counter(table.column("status").to_pylist())
    return {"shard_id": part.stem[len(_PART_PREFIX):], "shard": shard, "format": recorded.get("format") or format_of(shard),
            "num_bytes": recorded.get("num_bytes"), "images_ok": statuses[schema.IMAGE_STATUS_OK],
            "images_duplicate": statuses[schema.IMAGE_STATUS_DUPLICATE],
            "images_error": statuses[schema.IMAGE_STATUS_ERROR],
            "ingested_at": datetime.fromisoformat(stamp) if stamp else (max(stamps) if stamps else None)}
