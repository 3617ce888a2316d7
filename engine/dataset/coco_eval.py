"""COCO evaluation shared by model evaluation and curated-set quality (pycocotools COCOeval).

Images are matched to ground truth by the ``coco_id`` of their sidecar JSON, else by file name
(the tar member / file key); labels by category name (case-insensitive). Predictions and
detections use boxes ``[x0, y0, x1, y1]`` in absolute pixels of the upright image; COCO entries
use ``[x, y, w, h]``.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Iterable, Mapping

from engine.dataset.locations import ImageLocation


def coco_image_ids(ground_truth: dict[str, Any], locations: Mapping[str, ImageLocation]) -> dict[str, int]:
    """Our image_id -> COCO image id, by sidecar ``coco_id`` or by file name / key
    (``locations``: :func:`engine.dataset.locations.image_locations`)."""
    by_id = {img["id"] for img in ground_truth["images"]}
    by_name: dict[str, int] = {}
    for img in ground_truth["images"]:
        name = str(img.get("file_name", ""))
        by_name.setdefault(name, img["id"])
        by_name.setdefault(name.rsplit(".", 1)[0], img["id"])
    out = {}
    for image_id, where in locations.items():
        sidecar = (where.meta or {}).get("json")
        coco_id = sidecar.get("coco_id") if isinstance(sidecar, dict) else None
        if coco_id in by_id:
            out[image_id] = coco_id
        elif where.key in by_name:
            out[image_id] = by_name[where.key]
    return out


def coco_detections(predictions: Iterable[dict[str, Any]], ground_truth: dict[str, Any],
                    image_map: dict[str, int]) -> list[dict[str, Any]]:
    """COCO result entries of predictions ``{image_id, label, bbox [x0,y0,x1,y1], score,
    mask_rle?, width, height}``; images not in ``image_map`` and unknown labels are dropped."""
    categories = {c["name"].lower(): c["id"] for c in ground_truth["categories"]}
    out = []
    for p in predictions:
        category = categories.get((p.get("label") or "").strip().lower())
        if category is None or p["image_id"] not in image_map:
            continue
        x0, y0, x1, y1 = (float(v) for v in p["bbox"])
        entry = {"image_id": image_map[p["image_id"]], "category_id": category,
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(p.get("score") or 0.0)}
        if p.get("mask_rle"):
            entry["segmentation"] = {"size": [int(p["height"]), int(p["width"])], "counts": p["mask_rle"]}
        out.append(entry)
    return out


#: COCOeval.stats positions -> our names
STAT_NAMES = {"ap": 0, "ap50": 1, "ap75": 2, "recall": 8}


def _ground_truth_api(ground_truth: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = json.loads(json.dumps(ground_truth))
        api.createIndex()
    return api


def coco_stats(ground_truth: dict[str, Any], detections: list[dict[str, Any]], image_ids: Iterable[int],
               iou_type: str = "bbox", category_ids: Iterable[int] | None = None) -> dict[str, float]:
    """COCOeval AP@[.5:.95], AP50, AP75 and AR@100 (``ap``, ``ap50``, ``ap75``, ``recall``) of
    ``detections`` over ``image_ids`` (and ``category_ids``, default all). No detection: zeros."""
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(set(image_ids))
    usable = [d for d in detections if iou_type == "bbox" or "segmentation" in d]
    if not usable or not image_ids:
        return {name: 0.0 for name in STAT_NAMES}
    gt = _ground_truth_api(ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(json.loads(json.dumps(usable))), iou_type)
        evaluator.params.imgIds = image_ids
        if category_ids is not None:
            evaluator.params.catIds = sorted(set(category_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: max(0.0, float(evaluator.stats[index])) for name, index in STAT_NAMES.items()}


def coco_map(ground_truth: dict[str, Any], detections: list[dict[str, Any]], image_ids: Iterable[int]) -> dict[str, float]:
    """``box_map`` (and ``mask_map`` when the ground truth has masks): COCOeval AP@[.5:.95]
    over ``image_ids``. No detection at all scores 0."""
    kinds = {"box_map": "bbox"}
    if any("segmentation" in a for a in ground_truth.get("annotations", [])):
        kinds["mask_map"] = "segm"
    return {name: coco_stats(ground_truth, detections, image_ids, iou_type)["ap"] for name, iou_type in kinds.items()}
