"""Quality of a round's curated set against a ground-truth COCO file (pycocotools COCOeval).

Object regions of the curated set become COCO detections: the category is the region's class
label (``label``, else ``text``) matched to a ground-truth category name, the score is the
annotator's score (1.0 when it reported none). Images and labels are matched as in
``engine.dataset.coco_eval``.
OCR regions are scored as word recall: a ground-truth word counts as found when a curated OCR
region has the same text (case-insensitive) and box IoU >= 0.5.
Boxes: COCO ``[x, y, w, h]`` in absolute pixels of the upright image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.dataset.coco_eval import coco_detections, coco_image_ids, coco_stats
from engine.dataset.locations import image_locations
from storage.catalog import Catalog
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot


def _regions(catalog: Catalog, round_: int, region_type: str) -> list[tuple]:
    """The round's curated regions of ``region_type`` in (image id, annotation id) order: COCOeval
    breaks score ties by input order, so the order is fixed (the release's COCO JSON uses it too)."""
    return catalog.query(
        "select image_id, coalesce(label, text), text, bbox, score from curated "
        "where curated_round = ? and kind = 'region' and region_type = ? and bbox is not null "
        "order by image_id, annotation_id",
        [round_, region_type])


def box_quality(catalog: Catalog, truth: dict[str, Any], ids: dict[str, int], round_: int) -> dict[str, Any]:
    """COCO box AP / AP50 / AP75 / AR@100 of the curated object regions (``text`` category excluded)."""
    predictions = [{"image_id": image_id, "label": label, "bbox": bbox, "score": 1.0 if score is None else score}
                   for image_id, label, _text, bbox, score in _regions(catalog, round_, "object")]
    detections = coco_detections(predictions, truth, ids)
    categories = [c["id"] for c in truth["categories"] if c["name"] != "text"]
    stats = coco_stats(truth, detections, ids.values(), "bbox", categories)
    return {"box_ap": round(stats["ap"], 4), "box_ap50": round(stats["ap50"], 4), "box_ap75": round(stats["ap75"], 4),
            "box_recall": round(stats["recall"], 4), "detections": len(detections)}


def word_recall(catalog: Catalog, truth: dict[str, Any], ids: dict[str, int], round_: int) -> dict[str, float]:
    """Share of ground-truth words found by a curated OCR region (same text, IoU >= 0.5)."""
    found: dict[int, list[tuple[str, list[float]]]] = {}
    for image_id, _label, text, bbox, _score in _regions(catalog, round_, "ocr"):
        if image_id in ids and text:
            found.setdefault(ids[image_id], []).append((text.strip().lower(), list(bbox)))
    words = [a for a in truth["annotations"] if a.get("text") and a["image_id"] in set(ids.values())]
    hits = 0
    for word in words:
        x, y, w, h = word["bbox"]
        candidates = [b for t, b in found.get(word["image_id"], []) if t == word["text"].lower()]
        if candidates and box_iou_matrix(np.array([[x, y, x + w, y + h]]), np.array(candidates)).max() >= 0.5:
            hits += 1
    return {"word_recall": round(hits / len(words), 4) if words else 0.0, "words": len(words)}


def curated_quality(root: DataRoot, round_: int, ground_truth: str | Path) -> dict[str, Any]:
    """Box AP/recall and OCR word recall of round ``round_``'s curated set vs ``ground_truth``."""
    truth = json.loads(Path(ground_truth).read_text())
    ids = coco_image_ids(truth, image_locations(root))
    with Catalog.reading(root) as catalog:
        return {"round": round_, "images_matched": len(ids), **box_quality(catalog, truth, ids, round_),
                **word_recall(catalog, truth, ids, round_)}
