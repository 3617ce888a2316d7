"""Ingest: register shards and their images in the data root.

For every shard not ingested yet, stream its records, fully decode each image on a thread
pool (Pillow releases the GIL while decoding), hash it (``image_id`` = sha256 hex of the
bytes) and write one row per record to ``images/part-<shard_id>.parquet``. That file is
written atomically and last, so it doubles as the shard's completion marker: a re-run skips
shards whose part exists, and a killed run redoes only the shard it was in.

Broken input is data: every refused record is a row with ``status = 'error'`` and a reason.
An exact duplicate of an image seen before (in this run or an earlier one) gets
``status = 'duplicate'`` and the same ``image_id``, so every location of an image is kept. A key
that repeats within a shard keeps its first record; the later ones are error rows (the key is
how annotation finds the bytes again).

A shard is judged again (its part rewritten; its own images are not duplicates of themselves)
when ``retry_errors`` is set and its part has error rows, or when the part was judged with other
settings (``max_pixels``, ``min_side``, ``max_member_bytes``, ``max_sidecar_bytes``, kept in the
part's metadata under ``fld_ingest``; a part without them counts as judged with the defaults).
"""

from __future__ import annotations

import collections
import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow.parquet as pq
from tqdm import tqdm

from engine.ingest.shard_record import SHARD_KEY, shard_metadata
from storage import schema
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.decode import DecodeLimits, ImageRejected, probe_image
from storage.layout import DataRoot
from storage.readers import Record, ShardReader, discover_shards
from storage.readers.base import MAX_MEMBER_BYTES, MAX_SIDECAR_BYTES


@dataclass(frozen=True)
class IngestConfig:
    """Settings of ``fld ingest``.

    ``max_pixels``/``min_side``: see :class:`storage.decode.DecodeLimits` (pixels).
    ``max_member_bytes``: larger image files or members are refused unread (bytes).
    ``max_sidecar_bytes``: larger ``.json``/``.txt`` sidecars are refused unread (bytes): an error
    row of their own, the image kept without them.
    ``workers``: decode threads. ``progress``: show a progress bar on stderr.
    ``retry_errors``: judge again the shards that have error rows.
    """

    max_pixels: int = DecodeLimits.max_pixels
    min_side: int = DecodeLimits.min_side
    workers: int = 2
    progress: bool = True
    max_member_bytes: int = MAX_MEMBER_BYTES
    retry_errors: bool = False
    max_sidecar_bytes: int = MAX_SIDECAR_BYTES

    def __post_init__(self) -> None:
        DecodeLimits(self.max_pixels, self.min_side)  # validates both
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for name in ("max_member_bytes", "max_sidecar_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def judging(self) -> dict[str, int]:
        """The settings an image's status depends on (stored with each part)."""
        return {"max_pixels": self.max_pixels, "min_side": self.min_side, "max_member_bytes": self.max_member_bytes,
                "max_sidecar_bytes": self.max_sidecar_bytes}

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(self.max_pixels, self.min_side)


@dataclass
class IngestSummary:
    """Counts of one ingest run. ``shards_skipped``: already ingested before."""

    shards_ingested: int = 0
    shards_skipped: int = 0
    shards_rejudged: int = 0
    ok: int = 0
    duplicate: int = 0
    error: int = 0
    errors_by_reason: collections.Counter = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards_ingested": self.shards_ingested, "shards_skipped": self.shards_skipped,
            "shards_rejudged": self.shards_rejudged,
            "ok": self.ok, "duplicate": self.duplicate, "error": self.error,
            "errors_by_reason": dict(self.errors_by_reason.most_common()),
        }


def reason_family(reason: str) -> str:
    """The part of a reason before its first colon (groups reasons for summaries)."""
    return reason.split(":", 1)[0]


def _examine(record: Record, limits: DecodeLimits) -> dict[str, Any]:
    """Decode-check one record (runs on a worker thread); returns the image-row fields."""
    if record.error is not None:
        return {"status": schema.IMAGE_STATUS_ERROR, "error": record.error}
    data = record.data or b""
    fields: dict[str, Any] = {"image_id": hashlib.sha256(data).hexdigest() if data else None,
                              "num_bytes": len(data)}
    try:
        info = probe_image(data, limits)
    except ImageRejected as exc:
        fields.update(status=schema.IMAGE_STATUS_ERROR, error=str(exc))
        return fields
    fields.update(status=schema.IMAGE_STATUS_OK, format=info.format, width=info.width,
                  height=info.height, exif_orientation=info.exif_orientation)
    return fields


def _examined(records: Iterator[Record], pool: ThreadPoolExecutor, limits: DecodeLimits,
              depth: int) -> Iterator[tuple[Record, dict[str, Any]]]:
    """``(record, fields)`` in shard order, with up to ``depth`` records decoding ahead."""
    pending: collections.deque[tuple[Record, Future]] = collections.deque()
    for record in records:
        pending.append((record, pool.submit(_examine, record, limits)))
        if len(pending) >= depth:
            head, future = pending.popleft()
            yield head, future.result()
    while pending:
        head, future = pending.popleft()
        yield head, future.result()


def ingest_shard(shard: ShardReader, root: DataRoot, known: set[str], pool: ThreadPoolExecutor,
                 config: IngestConfig, summary: IngestSummary, bar: tqdm | None = None) -> dict[str, Any]:
    """Ingest one shard; adds its new ``ok`` ids to ``known``; returns its ``shards`` row."""
    now = schema.utc_now()
    shard_id, shard_path = shard.shard_id, str(shard.path)
    rows: list[dict[str, Any]] = []
    counts = collections.Counter()
    keys: set[str] = set()
    shard.max_member_bytes, shard.max_sidecar_bytes = config.max_member_bytes, config.max_sidecar_bytes
    for record, fields in _examined(shard.records(), pool, config.limits, depth=4 * config.workers):
        row = {"shard_id": shard_id, "shard": shard_path, "key": record.key, "ingested_at": now,
               "meta": json.dumps(record.meta, sort_keys=True) if record.meta else None, **fields}
        if record.key in keys and row["status"] != schema.IMAGE_STATUS_ERROR:
            row.update(status=schema.IMAGE_STATUS_ERROR, error="repeated key: an earlier record of the shard has it")
        keys.add(record.key)
        if row["status"] == schema.IMAGE_STATUS_OK:
            if row["image_id"] in known:
                row["status"] = schema.IMAGE_STATUS_DUPLICATE
            else:
                known.add(row["image_id"])
        if row["status"] == schema.IMAGE_STATUS_ERROR:
            summary.errors_by_reason[reason_family(row["error"])] += 1
        counts[row["status"]] += 1
        rows.append(row)
        if bar is not None:
            bar.update(1)
    shard_row = {"shard_id": shard_id, "shard": shard_path, "format": shard.format, "num_bytes": shard.num_bytes,
                 "images_ok": counts[schema.IMAGE_STATUS_OK], "images_duplicate": counts[schema.IMAGE_STATUS_DUPLICATE],
                 "images_error": counts[schema.IMAGE_STATUS_ERROR], "ingested_at": now}
    table = schema.table_from_rows(rows, schema.IMAGES)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), JUDGING_KEY: json.dumps(config.judging),
                                           SHARD_KEY: shard_metadata(shard_row)})  # for `fld repair`
    write_parquet_atomic(table, root.images_part(shard_id))
    summary.ok += counts[schema.IMAGE_STATUS_OK]
    summary.duplicate += counts[schema.IMAGE_STATUS_DUPLICATE]
    summary.error += counts[schema.IMAGE_STATUS_ERROR]
    summary.shards_ingested += 1
    return shard_row


JUDGING_KEY = b"fld_ingest"


def _judge_again(part, config: IngestConfig) -> bool:
    """Whether an ingested shard's part must be judged again (module docstring)."""
    metadata = pq.read_schema(part).metadata or {}
    try:
        judged = {**IngestConfig().judging, **json.loads(metadata[JUDGING_KEY])} if JUDGING_KEY in metadata \
            else IngestConfig().judging
    except ValueError:
        judged = {}
    if judged != config.judging:
        return True
    if not config.retry_errors:
        return False
    statuses = pq.read_table(part, columns=["status"]).column("status").to_pylist()
    return schema.IMAGE_STATUS_ERROR in statuses


def _ok_ids(part) -> set[str]:
    table = pq.read_table(part, columns=["image_id", "status"])
    return {i for i, s in zip(table.column("image_id").to_pylist(), table.column("status").to_pylist())
            if s == schema.IMAGE_STATUS_OK}


def _shard_row_from_part(shard: ShardReader, part) -> dict[str, Any]:
    """Rebuild a shard's catalog row from its (complete) images part."""
    statuses = collections.Counter(pq.read_table(part, columns=["status"]).column("status").to_pylist())
    return {"shard_id": shard.shard_id, "shard": str(shard.path), "format": shard.format,
            "num_bytes": shard.num_bytes, "images_ok": statuses[schema.IMAGE_STATUS_OK],
            "images_duplicate": statuses[schema.IMAGE_STATUS_DUPLICATE],
            "images_error": statuses[schema.IMAGE_STATUS_ERROR], "ingested_at": schema.utc_now()}


def ingest(root: DataRoot, sources: list[str], config: IngestConfig = IngestConfig()) -> IngestSummary:
    """Ingest every shard named by ``sources`` into ``root``; already-ingested shards are skipped.

    Raises ``storage.readers.SourceError`` for a source that does not exist, before any write.
    """
    shards = discover_shards(sources)
    summary = IngestSummary()
    with Catalog(root) as catalog:
        known = catalog.known_image_ids()
        registered = catalog.registered_shards()
        todo = []
        for shard in shards:
            part = root.images_part(shard.shard_id)
            if not part.exists():
                todo.append(shard)
                continue
            if _judge_again(part, config):
                known -= _ok_ids(part)  # its own images are not duplicates of themselves
                todo.append(shard)
                summary.shards_rejudged += 1
                continue
            summary.shards_skipped += 1
            if shard.shard_id not in registered:  # killed between the part and the catalog row
                catalog.upsert("shards", [_shard_row_from_part(shard, part)])
        bar = tqdm(desc="ingest", unit="img", disable=not config.progress, dynamic_ncols=True)
        with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="decode") as pool, bar:
            for shard in todo:
                bar.set_postfix_str(shard.path.name)
                catalog.upsert("shards", [ingest_shard(shard, root, known, pool, config, summary, bar)])
        catalog.refresh_views()
    return summary
