"""Quality of a round's curated set against a ground-truth COCO file (pycocotools COCOeval).

Object regions of the curated set become COCO detections: the category is the region's class
label (``label``, else ``text``) matched to a ground-truth category name, the score is the
annotator's score (1.0 when it reported none) times nothing else. Images are matched through
the images table: the ``coco_id`` of the sidecar metadata, else the file name stem vs the key.
OCR regions are scored as word recall: a ground-truth word counts as found when a curated OCR
region has the same text (case-insensitive) and box IoU >= 0.5.
Boxes: COCO ``[x, y, w, h]`` in absolute pixels of the upright image.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from storage.catalog import Catalog
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot

STAT_NAMES = ("box_ap", "box_ap50", "box_ap75")
RECALL_INDEX = 8  # COCOeval.stats[8]: AR@100


def _quiet_coco(path: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


def image_id_map(catalog: Catalog, coco: COCO) -> dict[str, int]:
    """Engine image id (sha256) -> COCO image id, via sidecar ``coco_id`` or file-name stem."""
    by_stem = {Path(img["file_name"]).stem: img["id"] for img in coco.dataset["images"]}
    mapping = {}
    for image_id, key, meta in catalog.query("select image_id, key, meta from images where status = 'ok'"):
        meta = json.loads(meta) if meta else {}
        coco_id = (meta.get("json") or {}).get("coco_id") if isinstance(meta.get("json"), dict) else None
        if coco_id is None:
            coco_id = by_stem.get(Path(key).name)
        if coco_id in coco.imgs:
            mapping[image_id] = int(coco_id)
    return mapping


def _regions(catalog: Catalog, round_: int, region_type: str) -> list[tuple]:
    return catalog.query(
        "select image_id, coalesce(label, text), text, bbox, score from curated "
        "where curated_round = ? and kind = 'region' and region_type = ? and bbox is not null",
        [round_, region_type])


def box_quality(catalog: Catalog, coco: COCO, ids: dict[str, int], round_: int) -> dict[str, float]:
    """COCO box AP / AP50 / AP75 / AR@100 of the curated object regions (text category excluded)."""
    categories = {c["name"].lower(): c["id"] for c in coco.dataset["categories"] if c["name"] != "text"}
    detections = []
    for image_id, label, _text, bbox, score in _regions(catalog, round_, "object"):
        category = categories.get((label or "").strip().lower())
        if image_id in ids and category is not None:
            x0, y0, x1, y1 = bbox
            detections.append({"image_id": ids[image_id], "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0],
                               "score": float(score) if score is not None else 1.0})
    if not detections:
        return {name: 0.0 for name in (*STAT_NAMES, "box_recall")} | {"detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(detections), "bbox")
        evaluation.params.imgIds = sorted(set(ids.values()))
        evaluation.params.catIds = sorted(categories.values())
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {**{name: round(float(stats[i]), 4) for i, name in enumerate(STAT_NAMES)},
            "box_recall": round(float(stats[RECALL_INDEX]), 4), "detections": len(detections)}


def word_recall(catalog: Catalog, coco: COCO, ids: dict[str, int], round_: int) -> dict[str, float]:
    """Share of ground-truth words found by a curated OCR region (same text, IoU >= 0.5)."""
    found: dict[int, list[tuple[str, list[float]]]] = {}
    for image_id, _label, text, bbox, _score in _regions(catalog, round_, "ocr"):
        if image_id in ids and text:
            found.setdefault(ids[image_id], []).append((text.strip().lower(), list(bbox)))
    words = [a for a in coco.dataset["annotations"] if a.get("text") and a["image_id"] in set(ids.values())]
    hits = 0
    for word in words:
        x, y, w, h = word["bbox"]
        candidates = [b for t, b in found.get(word["image_id"], []) if t == word["text"].lower()]
        if candidates and box_iou_matrix(np.array([[x, y, x + w, y + h]]), np.array(candidates)).max() >= 0.5:
            hits += 1
    return {"word_recall": round(hits / len(words), 4) if words else 0.0, "words": len(words)}


def curated_quality(root: DataRoot, round_: int, ground_truth: str | Path) -> dict[str, Any]:
    """Box AP/recall and OCR word recall of round ``round_``'s curated set vs ``ground_truth``."""
    coco = _quiet_coco(str(ground_truth))
    with Catalog(root) as catalog:
        ids = image_id_map(catalog, coco)
        return {"round": round_, "images_matched": len(ids), **box_quality(catalog, coco, ids, round_),
                **word_recall(catalog, coco, ids, round_)}
