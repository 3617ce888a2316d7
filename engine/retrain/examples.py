"""Curated annotations of a round -> Florence-2 training examples with their split.

The (task, prompt, target) of one image's curated rows are :func:`florence2.targets.image_targets`
(absolute pixels of the upright image, boxes x0, y0, x1, y1); this module reads the round's
rows, locates each image and assigns it a split.

The split is deterministic per image id: an image is in validation when the first 8 bytes of
sha256(f"{seed}:{image_id}") / 2**64 < ``eval_fraction``; all its examples go with it.
Curated Parquet is read by column name through DuckDB (extra columns are ignored, missing
optional ones are null; pyarrow cannot read fixed-size list columns holding nulls).
"""

from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from florence2 import format as ff
from florence2.targets import Row, image_targets, object_rows, row_label
from storage.atomic import write_text_atomic
from storage.layout import DataRoot

CURATED_COLUMNS = ("annotation_id", "image_id", "kind", "granularity", "region_type", "text", "label",
                   "bbox", "quad", "polygons", "parent_id", "span_start", "span_end", "absorbed_ids")
#: the sources that are the model being trained (its own boxes do not calibrate it)
MODEL_SOURCES = ("florence2",)


@dataclass(frozen=True)
class Example:
    """One training example. ``prompt``: task token (+ input); ``target``: the answer text;
    ``width``/``height``: upright image pixels; ``shard``/``key``/``shard_format``: where the
    image bytes are read (``storage.readers.READERS[shard_format](shard)``)."""

    image_id: str
    task: str
    prompt: str
    target: str
    width: int
    height: int
    shard: str
    key: str
    shard_format: str
    split: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def calibration_references(root: DataRoot, round_: int, rows: Iterable[Row],
                           model_sources: Iterable[str] = MODEL_SOURCES,
                           independent: bool = True) -> dict[str, list[tuple[str, list[float]]]]:
    """image_id -> ``(label, box)`` of the curated object regions ``rows`` (of ``round_``)
    that calibration measures a model against (pixels of the upright image, x0 y0 x1 y1).

    ``independent``: only the boxes some source other than ``model_sources`` gave, each as
    that source gave it (its earliest raw row among the curated row and the rows it absorbed;
    fusion moves a curated box toward the model's, which would confirm the model by itself).
    Otherwise every curated box as curated."""
    objects = [r for r in object_rows(list(rows)) if row_label(r)]
    if not independent:
        out: dict[str, list[tuple[str, list[float]]]] = collections.defaultdict(list)
        for row in objects:
            out[row["image_id"]].append((row_label(row), list(row["bbox"])))
        return dict(out)
    members = {row["annotation_id"]: [row["annotation_id"], *(row.get("absorbed_ids") or [])] for row in objects}
    given = _independent_raw_boxes(root, round_, {m for ids in members.values() for m in ids}, tuple(model_sources))
    out = collections.defaultdict(list)
    for row in objects:
        found = [given[m] for m in members[row["annotation_id"]] if m in given]
        if found:
            out[row["image_id"]].append(min(found, key=lambda f: f[0])[1])
    return dict(out)


def _independent_raw_boxes(root: DataRoot, round_: int, ids: set[str], model_sources: tuple[str, ...]
                           ) -> dict[str, tuple[int, tuple[str, list[float]]]]:
    """annotation_id -> (round, (text, box)) of the raw object rows among ``ids`` of rounds
    0..``round_`` that no model source wrote."""
    import duckdb

    files = [str(p) for r in range(round_ + 1) for p in sorted(root.annotations(r).glob("source=*/shard=*.parquet"))]
    if not files or not ids:
        return {}
    with duckdb.connect() as con:
        con.register("wanted", pa.table({"annotation_id": sorted(ids)}))
        rows = con.execute(
            "select a.annotation_id, a.round, a.text, a.bbox "
            "from read_parquet(?, union_by_name = true, hive_partitioning = false) a join wanted using (annotation_id) "
            "where a.bbox is not null and trim(coalesce(a.text, '')) <> '' and a.source <> all(?)",
            [files, list(model_sources)]).fetchall()
    out: dict[str, tuple[int, tuple[str, list[float]]]] = {}
    for annotation_id, round_of, text, bbox in rows:
        out.setdefault(annotation_id, (int(round_of), (text.strip(), list(bbox))))
    return out


def split_of(image_id: str, eval_fraction: float, seed: int = 0) -> str:
    """``"validation"`` or ``"train"``: a pure function of (seed, image_id)."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2.0 ** 64 < eval_fraction else "train"


# ------------------------------------------------------------------------------ I/O
def read_curated_rows(root: DataRoot, round_: int) -> list[Row]:
    """The curated rows of ``round_`` as dicts of :data:`CURATED_COLUMNS` (missing ones None)."""
    import duckdb

    files = sorted(str(p) for p in root.curated(round_).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"round {round_} has no curated set under {root.curated(round_)}")
    with duckdb.connect() as con:
        rel = con.sql("select * from read_parquet(?, union_by_name = true, hive_partitioning = false)",
                      params=[files])
        present = [c for c in CURATED_COLUMNS if c in rel.columns]
        table = rel.select(", ".join(present)).order("image_id, annotation_id").to_arrow_table()
    return [{c: row.get(c) for c in CURATED_COLUMNS} for row in table.to_pylist()]


def shard_formats(root: DataRoot) -> dict[str, str]:
    """shard path -> reader format, from the catalog's ``shards`` table ({} without a catalog)."""
    import duckdb

    if not root.catalog.exists():
        return {}
    try:
        with duckdb.connect(str(root.catalog), read_only=True) as con:
            return dict(con.execute("select shard, format from shards").fetchall())
    except duckdb.Error:  # held by a writer: formats are then found from the paths
        return {}


def _format_of(path: str) -> str:
    from storage.readers.discover import reader_for_file

    if Path(path).is_dir():
        return "folder"
    reader = reader_for_file(Path(path))
    if reader is None:
        raise ValueError(f"no shard reader handles {path}")
    return reader.format


def image_locations(root: DataRoot) -> dict[str, dict[str, Any]]:
    """image_id -> {shard, key, width, height, shard_format, meta} of images with status ok."""
    import duckdb

    files = sorted(str(p) for p in root.images.glob("part-*.parquet"))
    if not files:
        return {}
    with duckdb.connect() as con:
        rows = con.execute(
            "select image_id, shard, key, width, height, meta from read_parquet(?, union_by_name = true) "
            "where status = 'ok' and image_id is not null order by shard, key", [files]).fetchall()
    formats = shard_formats(root)
    out: dict[str, dict[str, Any]] = {}
    for image_id, shard, key, width, height, meta in rows:
        if image_id not in out:
            fmt = formats.get(shard) or _format_of(shard)
            out[image_id] = {"shard": shard, "key": key, "width": int(width), "height": int(height),
                             "shard_format": fmt, "meta": json.loads(meta) if meta else {}}
    return out


def build_examples(root: DataRoot, round_: int, eval_fraction: float = 0.1, seed: int = 0,
                   tasks: Iterable[str] = ff.TASK_ORDER, rows: list[Row] | None = None,
                   target_format: str = "released") -> tuple[list[Example], dict[str, Any]]:
    """Every example of round ``round_``'s curated set, with its split, and a summary
    (examples per task and split, images without a location, skipped row sets); ``rows``: the
    curated rows when the caller has read them already (:func:`read_curated_rows`)."""
    tasks = tuple(ff.task_spec(t).name for t in tasks)
    locations = image_locations(root)
    by_image: dict[str, list[Row]] = collections.defaultdict(list)
    for row in read_curated_rows(root, round_) if rows is None else rows:
        by_image[row["image_id"]].append(row)
    examples: list[Example] = []
    skipped: collections.Counter = collections.Counter()
    missing = 0
    for image_id in sorted(by_image):
        where = locations.get(image_id)
        if where is None:
            missing += 1
            continue
        split = split_of(image_id, eval_fraction, seed)
        for task, prompt, target in image_targets(by_image[image_id], where["width"], where["height"], tasks, skipped,
                                                  target_format):
            examples.append(Example(image_id, task, prompt, target, where["width"], where["height"],
                                    where["shard"], where["key"], where["shard_format"], split))
    counts = collections.Counter(f"{e.split}/{e.task}" for e in examples)
    summary = {"examples": len(examples), "images": len(by_image) - missing, "images_not_found": missing,
               "by_split_task": dict(sorted(counts.items())), "skipped": dict(skipped)}
    return examples, summary


def write_jsonl(examples: Iterable[Example], out: str | Path) -> Path:
    """Write one JSON object per example to ``out`` (atomically); returns the path."""
    lines = [json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True) for e in examples]
    return write_text_atomic("".join(line + "\n" for line in lines), out)
