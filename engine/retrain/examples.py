"""Curated annotations of a round -> Florence-2 training examples with their split.

The (task, prompt, target) of one image's curated rows are :func:`florence2.targets.image_targets`
(absolute pixels of the upright image, boxes x0, y0, x1, y1); this module takes the round's
rows (``engine.dataset.curated``), locates each image (``engine.dataset.locations``) and
assigns it its split (``engine.dataset.splits``: deterministic per image id, all of an
image's examples go with it).
"""

from __future__ import annotations

import collections
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from engine.dataset.curated import MODEL_SOURCES, read_curated_rows
from engine.dataset.locations import image_locations
from engine.dataset.splits import split_of
from florence2 import format as ff
from florence2.targets import Row, image_targets, object_rows, row_label
from storage.atomic import write_text_atomic
from storage.layout import DataRoot


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


def build_examples(root: DataRoot, round_: int, eval_fraction: float = 0.1, seed: int = 0,
                   tasks: Iterable[str] = ff.TASK_ORDER, rows: list[Row] | None = None,
                   target_format: str = "released") -> tuple[list[Example], dict[str, Any]]:
    """Every example of round ``round_``'s curated set, with its split, and a summary
    (examples per task and split, images without a location, skipped row sets); ``rows``: the
    curated rows when the caller has read them already (``engine.dataset.curated.read_curated_rows``)."""
    tasks = tuple(ff.task_spec(t).name for t in tasks)
    by_image: dict[str, list[Row]] = collections.defaultdict(list)
    for row in read_curated_rows(root, round_) if rows is None else rows:
        by_image[row["image_id"]].append(row)
    locations = image_locations(root, by_image)
    examples: list[Example] = []
    skipped: collections.Counter = collections.Counter()
    missing = 0
    for image_id in sorted(by_image):
        where = locations.get(image_id)
        if where is None:
            missing += 1
            continue
        split = split_of(image_id, eval_fraction, seed)
        for task, prompt, target in image_targets(by_image[image_id], where.width, where.height, tasks, skipped,
                                                  target_format):
            examples.append(Example(image_id, task, prompt, target, where.width, where.height,
                                    where.shard, where.key, where.shard_format, split))
    counts = collections.Counter(f"{e.split}/{e.task}" for e in examples)
    summary = {"examples": len(examples), "images": len(by_image) - missing, "images_not_found": missing,
               "by_split_task": dict(sorted(counts.items())), "skipped": dict(skipped)}
    return examples, summary


def write_jsonl(examples: Iterable[Example], out: str | Path) -> Path:
    """Write one JSON object per example to ``out`` (atomically); returns the path."""
    lines = [json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True) for e in examples]
    return write_text_atomic("".join(line + "\n" for line in lines), out)
