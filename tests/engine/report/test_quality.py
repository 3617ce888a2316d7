"""engine.report.quality: COCOeval of the curated set against ground truth, through the views."""

from __future__ import annotations

import json

import pytest

from engine.report.quality import curated_quality
from storage import schema
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog


def _write_curated(root, round_, rows):
    table = schema.table_from_rows(
        [{**r, "absorbed_ids": [], "seen_by": [r["source"]], "agreement": 1} for r in rows], schema.CURATED)
    write_parquet_atomic(table, root.curated(round_) / "part-00000.parquet")
    with Catalog(root) as catalog:
        catalog.refresh_views()


def _truth_rows(root, truth, shift=0.0, keep_words=True):
    with Catalog(root) as catalog:
        ids = {json.loads(meta)["json"]["coco_id"]: image_id
               for image_id, meta in catalog.query("select image_id, meta from images where status = 'ok'")}
    names = {c["id"]: c["name"] for c in truth["categories"]}
    rows = []
    for ann in truth["annotations"]:
        x, y, w, h = ann["bbox"]
        box = [x + shift * w, y + shift * h, x + w + shift * w, y + h + shift * h]
        word = names[ann["category_id"]] == "text"
        if word and not keep_words:
            continue
        rows.append(schema.annotation_row(
            image_id=ids[ann["image_id"]], round_=0, source="truth", source_version="1", kind="region",
            region_type="ocr" if word else "object", text=ann.get("text") or names[ann["category_id"]],
            bbox=box, score=0.9))
    return rows


def test_truth_scores_one_and_shifted_boxes_score_lower(ingested_root, sample_dir):
    truth = json.loads((sample_dir / "ground_truth.json").read_text())
    _write_curated(ingested_root, 0, _truth_rows(ingested_root, truth))
    perfect = curated_quality(ingested_root, 0, sample_dir / "ground_truth.json")
    assert perfect["images_matched"] == 24
    assert perfect["box_ap"] == pytest.approx(1.0) and perfect["box_recall"] == pytest.approx(1.0)
    assert perfect["word_recall"] == 1.0 and perfect["words"] > 0
    _write_curated(ingested_root, 1, _truth_rows(ingested_root, truth, shift=0.3, keep_words=False))
    shifted = curated_quality(ingested_root, 1, sample_dir / "ground_truth.json")
    assert 0.0 <= shifted["box_ap"] < 0.6 and shifted["box_ap50"] < perfect["box_ap50"]
    assert shifted["word_recall"] == 0.0
