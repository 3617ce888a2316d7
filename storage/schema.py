"""Arrow schemas of every table the engine writes, each defined exactly once.

Coordinate convention for every geometry column: absolute pixels of the *upright* image
(EXIF orientation applied), origin at the top-left corner, x to the right, y down.
Boxes are ``[x0, y0, x1, y1]``; OCR quads are 8 values ``x,y`` clockwise from the top-left
corner; polygons are flat ``[x0, y0, x1, y1, ...]`` lists. Masks are COCO compressed RLE
strings (pycocotools ``counts`` decoded as UTF-8) over the upright image.

Writers build rows as plain dicts and turn them into tables with :func:`table_from_rows`,
which fills missing nullable columns and rejects unknown ones, so every file of a table
has the same schema.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

# ----------------------------------------------------------------------------- images
IMAGE_STATUS_OK = "ok"
IMAGE_STATUS_DUPLICATE = "duplicate"
IMAGE_STATUS_ERROR = "error"

IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string()),  # sha256 hex of the bytes; null when no bytes
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),  # absolute path of the shard
        pa.field("key", pa.string(), nullable=False),  # member / relative path / row key
        pa.field("format", pa.string()),  # Pillow format name: JPEG, PNG, ...
        pa.field("width", pa.int32()),  # upright width in pixels
        pa.field("height", pa.int32()),  # upright height in pixels
        pa.field("exif_orientation", pa.int8()),  # 1..8 as found (1 = already upright)
        pa.field("num_bytes", pa.int64()),
        pa.field("status", pa.string(), nullable=False),  # ok | duplicate | error
        pa.field("error", pa.string()),  # reason, when status == error
        pa.field("meta", pa.string()),  # JSON of the sidecars (.json / .txt) of the key
        pa.field("ingested_at", TIMESTAMP, nullable=False),
    ]
)

# ------------------------------------------------------------------------ annotations
KIND_CAPTION = "caption"
KIND_REGION = "region"
KIND_PHRASE = "phrase"
KINDS = (KIND_CAPTION, KIND_REGION, KIND_PHRASE)
GRANULARITIES = ("brief", "detailed", "more_detailed")

ANNOTATIONS = pa.schema(
    [
        pa.field("annotation_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_version", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("granularity", pa.string()),
        pa.field("region_type", pa.string()),
        pa.field("text", pa.string()),
        # 4 and 8 values; variable-size lists because pyarrow 25 cannot read back from Parquet a
        # fixed_size_list column that holds nulls (ArrowInvalid "Expected all lists to be of
        # size=8"); annotation_row() enforces the lengths instead.
        pa.field("bbox", pa.list_(pa.float32())),
        pa.field("quad", pa.list_(pa.float32())),
        pa.field("polygons", pa.list_(pa.list_(pa.float32()))),
        pa.field("mask_rle", pa.string()),
        pa.field("parent_id", pa.string()),
        pa.field("span_start", pa.int32()),
        pa.field("span_end", pa.int32()),
        pa.field("score", pa.float32()),
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

GEOMETRY_LENGTHS = {"bbox": 4, "quad": 8}

# ---------------------------------------------------------------------------- curated
# What survives curation: an annotation row plus what curation learned about it.
#   label         a region's class label, kept when region_text replaces ``text`` with the
#                 matched description (null for other kinds)
#   absorbed_ids  ids of the rows it absorbed (NMS duplicates, region-text candidates, rows
#                 of later rounds merged into it)
#   seen_by       distinct ``source@source_version`` that produced it or an absorbed duplicate
#   agreement     len(seen_by)
CURATED_EXTRA = [
    pa.field("label", pa.string()),
    pa.field("absorbed_ids", pa.list_(pa.string()), nullable=False),
    pa.field("seen_by", pa.list_(pa.string()), nullable=False),
    pa.field("agreement", pa.int32(), nullable=False),
]

# Columns that define an annotation's identity (see annotation_id()).
PAYLOAD_COLUMNS = (
    "granularity", "region_type", "text", "bbox", "quad", "polygons", "mask_rle",
    "parent_id", "span_start", "span_end",
)

CURATED = pa.schema(list(ANNOTATIONS) + CURATED_EXTRA)

#: columns whose values rarely repeat: ``storage.atomic`` writes them without the dictionary
#: attempt (it hashes every value, then falls back to plain pages) and without min/max
#: statistics; strings (ids, masks) DELTA_LENGTH_BYTE_ARRAY-encoded, integers (row
#: positions) DELTA_BINARY_PACKED
UNIQUE_VALUE_COLUMNS = frozenset({
    "annotation_id", "parent_id", "mask_rle", "absorbed_ids", "absorbed_by", "merged_into", "row", "absorbed_row",
})

# -------------------------------------------------------------------------- decisions
# The contract, one row per (annotation, rule that judged it); the catalog's ``decisions``
# view and storage.decisions.expand_trails() give it in this long form.
DECISIONS = pa.schema(
    [
        pa.field("annotation_id", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),  # filter name, e.g. "confidence"
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),  # why it was dropped; null when kept
        pa.field("absorbed_by", pa.string()),  # id of the row that absorbed the dropped one, if any
    ]
)

# How decisions are stored (decisions/round=R/part-*.parquet): one row per raw annotation of
# the round, with the rules that judged it in the order they ran. Rules run in sequence and a
# dropped row is judged by no later rule, so a row is kept by every rule of ``rules`` except
# ``dropped_by`` (the last one, when set), and ``reason`` is that rule's reason. It is the long
# form without repeating the 32-character id once per rule (5x fewer rows to write and scan).
# Reasons are texts without ids (few distinct values). The row that absorbed a dropped one is
# referenced, not copied: by its ``row`` when it is a row of the same round (NMS, region text),
# by its id (``merged_into``) when it is a previous round's curated row (merge); the long form
# resolves both into ``absorbed_by``. The trails then hold each id once (a third fewer id bytes).
RULE_NAME = pa.dictionary(pa.int32(), pa.string())  # rule names repeat: stored as codes
REASON_TEXT = pa.dictionary(pa.int32(), pa.string())  # id-free reasons repeat: stored as codes too
RULE_SEPARATOR = ","
DECISION_TRAILS = pa.schema(
    [
        pa.field("annotation_id", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),  # 0-based position among the round's raw rows
        pa.field("rules", RULE_NAME, nullable=False),  # judged by, in order, joined by RULE_SEPARATOR
        pa.field("dropped_by", RULE_NAME),  # null when the row survived every rule
        pa.field("reason", REASON_TEXT),  # why dropped_by dropped it; null when it survived
        pa.field("absorbed_row", pa.int32()),  # ``row`` of the same round's row it went into (NMS, region text)
        pa.field("merged_into", pa.string()),  # id of the previous round's curated row it went into (merge)
    ]
)

# ----------------------------------------------------------------------------- errors
ERRORS = pa.schema(
    [
        pa.field("round", pa.int32()),  # null for ingest
        pa.field("stage", pa.string(), nullable=False),  # ingest|decode|inference|postprocess|...
        pa.field("source", pa.string()),  # annotator name, when a stage runs one
        pa.field("shard", pa.string()),
        pa.field("key", pa.string()),
        pa.field("image_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

# ----------------------------------------------------------------------------- rounds
ROUNDS = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # running | done | failed
        pa.field("step", pa.string()),  # last completed step
        pa.field("config", pa.string()),  # resolved config, JSON
        pa.field("model_version", pa.string()),  # checkpoint used to annotate
        pa.field("started_at", TIMESTAMP),
        pa.field("finished_at", TIMESTAMP),
    ]
)

# ----------------------------------------------------------------------------- shards
SHARDS = pa.schema(
    [
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("format", pa.string(), nullable=False),  # tar | folder | parquet
        pa.field("num_bytes", pa.int64()),
        pa.field("images_ok", pa.int64()),
        pa.field("images_duplicate", pa.int64()),
        pa.field("images_error", pa.int64()),
        pa.field("ingested_at", TIMESTAMP),
    ]
)

# ----------------------------------------------------------------------------- catalog tables
MODELS = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("version", pa.string()),
        pa.field("metrics", pa.string()),  # JSON
        pa.field("promoted", pa.bool_()),
        pa.field("reason", pa.string()),
        pa.field("created_at", TIMESTAMP),
    ]
)
RELEASES = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("manifest_sha256", pa.string()),
        pa.field("created_at", TIMESTAMP),
    ]
)

ROUND_STEP_RECORDS = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # done
        pa.field("summary", pa.string()),  # JSON
        pa.field("finished_at", TIMESTAMP),
    ]
)

# ----------------------------------------------------------------------------- curation inputs
#: ``image_id, width, height`` (upright pixels) of the ingested images curation checks against
IMAGE_SIZES = pa.schema([pa.field("image_id", pa.string()), pa.field("width", pa.int32()), pa.field("height", pa.int32())])

#: the paper's Table 3 measures of one text (spaCy dependency parse)
TEXT_METRICS = pa.schema(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("objects", pa.int32(), nullable=False),
        pa.field("attributes", pa.int32(), nullable=False),
        pa.field("actions", pa.int32(), nullable=False),
        pa.field("proper_nouns", pa.int32(), nullable=False),
        pa.field("object_complexity", pa.float32(), nullable=False),
        pa.field("action_complexity", pa.float32(), nullable=False),
    ]
)
# ----------------------------------------------------------------------------- review
#: the source name of people's corrections (``fld review import``)
HUMAN_SOURCE = "human"
#: ``review/round=R/queue.parquet``: images ranked by how much a human look would change the
#: data (``engine.review.plan``); ``reasons`` are one text per finding, counts per signal
REVIEW_QUEUE = pa.schema([
    pa.field("round", pa.int32(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),  # 1 = look at it first
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("priority", pa.float64(), nullable=False),  # weighted sum of the findings
    pa.field("rows", pa.int32(), nullable=False),  # curated rows in review scope on the image
    pa.field("disputed_labels", pa.int32(), nullable=False),
    pa.field("one_source", pa.int32(), nullable=False),
    pa.field("near_threshold", pa.int32(), nullable=False),
    pa.field("borderline_drops", pa.int32(), nullable=False),
    pa.field("reasons", pa.list_(pa.string()), nullable=False),
])
#: ``reviews/import=J/verdicts.parquet``: what people did to every row they were shown
#: (``kept``, ``corrected``, ``deleted``) and every row they drew (``added``)
REVIEW_VERDICTS = pa.schema([
    pa.field("review_id", pa.string(), nullable=False),  # J: sha256 of the imported file, 16 hex
    pa.field("reviewed_round", pa.int32(), nullable=False),  # the round whose curated rows were shown
    pa.field("target_round", pa.int32(), nullable=False),  # the round whose curation applies it
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("annotation_id", pa.string()),  # the row shown; null for ``added``
    pa.field("human_id", pa.string()),  # the human row written; null for ``kept``/``deleted``
    pa.field("verdict", pa.string(), nullable=False),  # kept | corrected | deleted | added
    pa.field("kind", pa.string(), nullable=False),
    pa.field("region_type", pa.string()),
    pa.field("sources", pa.list_(pa.string()), nullable=False),  # sources of the row shown (seen_by's names)
    pa.field("detail", pa.string()),  # what changed, e.g. "label 'circle' -> 'square'; box IoU 0.62"
    pa.field("imported_at", TIMESTAMP, nullable=False),
])

# ----------------------------------------------------------------------------- releases
#: ``images/index.parquet`` of a release: one row per image and where its bytes are
RELEASE_IMAGE_INDEX = pa.schema([pa.field("image_id", pa.string()), pa.field("file_name", pa.string()),
                   pa.field("width", pa.int32()), pa.field("height", pa.int32()),
                   pa.field("format", pa.string()), pa.field("num_bytes", pa.int64()), pa.field("annotated", pa.bool_()),
                   pa.field("member", pa.string()), pa.field("source_shard", pa.string()), pa.field("source_key", pa.string())])

TABLES: dict[str, pa.Schema] = {
    "images": IMAGES,
    "annotations": ANNOTATIONS,
    "curated": CURATED,
    "decisions": DECISIONS,
    "decision_trails": DECISION_TRAILS,
    "errors": ERRORS,
    "rounds": ROUNDS,
    "shards": SHARDS,
}


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the type of every timestamp column)."""
    return datetime.now(timezone.utc)


def table_from_rows(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from dict rows.

    Missing keys become nulls; a key that is not a column raises ``KeyError`` naming it, so a
    typo in a writer fails loudly instead of silently dropping data.
    """
    rows = list(rows)
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in schema: {sorted(extra)}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def _canonical(value: Any) -> Any:
    """Round floats so ids do not depend on float32/float64 noise."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def annotation_id(image_id: str, round_: int, source: str, kind: str, payload: Mapping[str, Any]) -> str:
    """Deterministic id of an annotation: sha256 of (image_id, round, source, kind, payload).

    ``payload`` is the annotation's content columns (any of :data:`PAYLOAD_COLUMNS`); floats are
    rounded to 1/1000 pixel so the same geometry gives the same id whatever its float width.
    Returns 32 hex characters.
    """
    content = {k: _canonical(payload.get(k)) for k in PAYLOAD_COLUMNS if payload.get(k) is not None}
    blob = json.dumps([image_id, int(round_), source, kind, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def annotation_row(
    *, image_id: str, round_: int, source: str, source_version: str, kind: str, **payload: Any
) -> dict[str, Any]:
    """One annotation row as a dict, with its deterministic id and ``created_at`` filled in.

    ``payload`` takes the schema's optional columns (granularity, region_type, text, bbox,
    quad, polygons, mask_rle, parent_id, span_start, span_end, score); anything else raises.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for column, length in GEOMETRY_LENGTHS.items():
        value = payload.get(column)
        if value is not None and len(value) != length:
            raise ValueError(f"{column} must hold {length} values, got {len(value)}: {value!r}")
    allowed = set(PAYLOAD_COLUMNS) | {"score"}
    unknown = set(payload) - allowed
    if unknown:
        raise KeyError(f"not annotation columns: {sorted(unknown)}")
    row = {
        "annotation_id": annotation_id(image_id, round_, source, kind, payload),
        "image_id": image_id,
        "round": int(round_),
        "source": source,
        "source_version": source_version,
        "kind": kind,
        "created_at": utc_now(),
    }
    row.update({k: v for k, v in payload.items() if v is not None})
    return row
