"""Test data for retraining: synthetic shards ingested into a root, and a curated set built
from their COCO ground truth (what curation would keep if every specialist were perfect).

Per image: the brief caption; one object region per shape (text = label = the shape name,
box, simplified polygons and RLE of its exact mask); for DENSE_REGION_CAPTION some regions get a
description in ``text`` with the shape name kept in ``label``; one OCR region per word (quad =
the box corners); and one phrase row per shape, grounding the shape name in the caption.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from engine.demo.sample_data import SampleConfig, write_sample
from engine.ingest.shards import IngestConfig, ingest
from storage.atomic import write_parquet_atomic
from storage.layout import DataRoot
from storage.masks import decode_rle, mask_to_polygons
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows


def make_root(tmp: Path, images: int = 12, seed: int = 5, per_shard: int = 6) -> tuple[DataRoot, dict]:
    """Sample shards -> ingested root; returns (root, the sample's COCO ground truth)."""
    summary = write_sample(tmp / "sample", SampleConfig(images=images, seed=seed, images_per_shard=per_shard,
                                                        noise=False))
    root = DataRoot(tmp / "root")
    ingest(root, summary["shards"], IngestConfig(progress=False))
    truth = json.loads(Path(summary["ground_truth"]).read_text())
    truth["path"] = summary["ground_truth"]
    return root, truth


def image_ids_by_key(root: DataRoot) -> dict[str, str]:
    import duckdb

    files = [str(p) for p in root.images.glob("part-*.parquet")]
    with duckdb.connect() as con:
        return dict(con.execute("select key, image_id from read_parquet(?) where status = 'ok'", [files]).fetchall())


def curated_rows(root: DataRoot, truth: dict, round_: int = 1) -> list[dict]:
    """Curated rows (plus a ``label`` value per row) built from the ground truth."""
    ids = image_ids_by_key(root)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    rows = []
    for image in truth["images"]:
        image_id, width, height = ids[image["file_name"].split(".")[0]], image["width"], image["height"]
        common = dict(image_id=image_id, round_=round_, source="truth", source_version="1")
        caption = annotation_row(kind="caption", granularity="brief", text=image["caption"], **common)
        rows.append({**caption, "label": None})
        anns = [a for a in truth["annotations"] if a["image_id"] == image["id"]]
        for index, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            box = [x, y, x + w, y + h]
            name = names[ann["category_id"]]
            if name == "text":
                quad = [x, y, x + w, y, x + w, y + h, x, y + h]
                rows.append({**annotation_row(kind="region", region_type="ocr", text=ann["text"], bbox=box,
                                              quad=quad, **common), "label": None})
                continue
            mask = decode_rle(ann["segmentation"]["counts"], height, width)
            polygons = mask_to_polygons(mask, tolerance=1.5)
            text = f"{name} shape" if index % 2 else name  # every other region has a description
            rows.append({**annotation_row(kind="region", region_type="object", text=text, bbox=box,
                                          polygons=polygons, mask_rle=ann["segmentation"]["counts"], **common),
                         "label": name})
            start = image["caption"].find(name)
            if start >= 0:
                phrase = annotation_row(kind="phrase", granularity="brief", text=name, bbox=box,
                                        parent_id=caption["annotation_id"], span_start=start,
                                        span_end=start + len(name), **common)
                rows.append({**phrase, "label": None})
    return rows


def write_curated(root: DataRoot, rows: list[dict], round_: int = 1) -> Path:
    """Write the rows as the curated set of ``round_``, with the columns curation adds
    (``label``, ``absorbed_ids``, ``seen_by``, ``agreement``)."""
    labels = [r.pop("label") for r in rows]
    table = table_from_rows(rows, ANNOTATIONS).append_column("label", pa.array(labels, pa.string()))
    table = table.append_column("absorbed_ids", pa.array([[] for _ in rows], pa.list_(pa.string())))
    table = table.append_column("seen_by", pa.array([[f"{r['source']}@{r['source_version']}"] for r in rows],
                                                    pa.list_(pa.string())))
    table = table.append_column("agreement", pa.array([1] * len(rows), pa.int32()))
    return write_parquet_atomic(table, root.curated(round_) / "part-0.parquet")
