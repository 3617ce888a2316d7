"""What the annotate-refine loop did to the object boxes, measured against ground truth.

Evaluation only: nothing here feeds a decision of the engine. For a round's curated set, the
seed labels (the existing labels the loop started from, a COCO file) and the ground truth:

* ``recall`` / ``precision``: class-aware matching at IoU >= 0.5 (each ground-truth box and
  each curated box used once, best IoU first) of the curated object boxes whose label is a
  ground-truth category (the ``text`` category excluded: OCR is measured by word recall);
* ``seed_missed``: ground-truth boxes the seed labels do not match (same rule); ``recovered``:
  how many of those the round's curated set matches;
* ``new_boxes`` / ``new_correct``: curated boxes first added after round 0 (``round`` > 0) and
  how many match a ground-truth box of their class at IoU >= 0.5;
* ``labels_corrected`` / ``labels_corrected_right``: curated rows of round 0 whose label
  changed since round 0, and how many now name the class of the ground-truth box they overlap
  most; ``boxes_refined`` with ``refined_iou_before`` / ``after``: rows whose box changed and
  the mean IoU of the box with that ground-truth box before and after.

Boxes are absolute pixels of the upright image, x0 y0 x1 y1; images are matched to the
ground truth as in ``engine.dataset.coco_eval`` (sidecar ``coco_id``, else file name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import image_locations
from storage.catalog import Catalog
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot

IOU = 0.5
Box = tuple[str, list[float]]  # (normalised label, x0 y0 x1 y1)


def _norm(label: str | None) -> str:
    return (label or "").strip().lower()


def _coco_boxes(coco: dict[str, Any], categories: dict[int, str]) -> dict[int, list[Box]]:
    """Per COCO image id: (label, box) of the annotations whose category is a shape."""
    out: dict[int, list[Box]] = {}
    for a in coco["annotations"]:
        name = categories.get(a["category_id"])
        if name is not None:
            x, y, w, h = a["bbox"]
            out.setdefault(a["image_id"], []).append((name, [x, y, x + w, y + h]))
    return out


def match(predicted: list[Box], truth: list[Box]) -> tuple[np.ndarray, np.ndarray]:
    """Greedy class-aware matching at IoU >= 0.5, best IoU first: ``(truth index per
    prediction or -1, IoU)``."""
    out = np.full(len(predicted), -1, np.int64)
    best = np.zeros(len(predicted))
    if not predicted or not truth:
        return out, best
    iou = box_iou_matrix(np.array([b for _, b in predicted], float), np.array([b for _, b in truth], float))
    same = np.array([[p == t for t, _ in truth] for p, _ in predicted])
    iou = np.where(same, iou, 0.0)
    used = np.zeros(len(truth), bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(truth))
        if iou[i, j] < IOU:
            break
        if out[i] < 0 and not used[j]:
            out[i], best[i], used[j] = j, iou[i, j], True
    return out, best


def _curated(catalog: Catalog, round_: int) -> list[tuple]:
    return catalog.query(
        "select annotation_id, image_id, round, coalesce(label, text), bbox from curated "
        "where curated_round = ? and kind = 'region' and region_type = 'object' and bbox is not null", [round_])


def loop_quality(root: DataRoot, round_: int, ground_truth: str | Path, seed_labels: str | Path) -> dict[str, Any]:
    """The figures of the module docstring for round ``round_`` of ``root``."""
    truth = json.loads(Path(ground_truth).read_text())
    seed = json.loads(Path(seed_labels).read_text())
    shapes = {c["id"]: _norm(c["name"]) for c in truth["categories"] if c["name"] != "text"}
    seed_shapes = {c["id"]: _norm(c["name"]) for c in seed["categories"] if c["name"] != "text"}
    truth_boxes = _coco_boxes(truth, shapes)
    seed_boxes = _coco_boxes(seed, seed_shapes)
    ids = coco_image_ids(truth, image_locations(root))  # image_id (sha) -> COCO id
    with Catalog.reading(root) as catalog:
        rows = _curated(catalog, round_)
        first = {r[0]: r for r in _curated(catalog, 0)} if round_ > 0 else {}
    by_image: dict[int, list[tuple]] = {}
    for row in rows:
        if row[1] in ids and _norm(row[3]) in shapes.values():
            by_image.setdefault(ids[row[1]], []).append(row)
    totals = dict.fromkeys(["truth", "curated", "matched", "seed_missed", "recovered", "new_boxes", "new_correct",
                            "labels_corrected", "labels_corrected_right", "boxes_refined"], 0)
    before_iou, after_iou = [], []
    for coco_id in set(ids.values()):
        gt = truth_boxes.get(coco_id, [])
        mine = by_image.get(coco_id, [])
        predicted = [(_norm(r[3]), list(r[4])) for r in mine]
        hit, _ = match(predicted, gt)
        seed_hit, _ = match(seed_boxes.get(coco_id, []), gt)
        covered_by_seed = set(seed_hit[seed_hit >= 0].tolist())
        found = set(hit[hit >= 0].tolist())
        missed = set(range(len(gt))) - covered_by_seed
        totals["truth"] += len(gt)
        totals["curated"] += len(mine)
        totals["matched"] += len(found)
        totals["seed_missed"] += len(missed)
        totals["recovered"] += len(missed & found)
        new = [k for k, r in enumerate(mine) if r[2] > 0]
        totals["new_boxes"] += len(new)
        totals["new_correct"] += sum(1 for k in new if hit[k] >= 0)
        for k, r in enumerate(mine):
            old = first.get(r[0])
            if old is None or not gt:
                continue
            overlap = box_iou_matrix(np.array([list(old[4]), list(r[4])], float), np.array([b for _, b in gt], float))
            j = int(overlap[0].argmax())
            if _norm(old[3]) != _norm(r[3]):
                totals["labels_corrected"] += 1
                totals["labels_corrected_right"] += int(_norm(r[3]) == gt[j][0])
            if not np.allclose(old[4], r[4]):
                totals["boxes_refined"] += 1
                before_iou.append(overlap[0, j])
                after_iou.append(overlap[1, j])
    return {
        "round": round_, **totals,
        "recall": round(totals["matched"] / totals["truth"], 4) if totals["truth"] else 0.0,
        "precision": round(totals["matched"] / totals["curated"], 4) if totals["curated"] else 0.0,
        "recovered_share": round(totals["recovered"] / totals["seed_missed"], 4) if totals["seed_missed"] else 0.0,
        "new_precision": round(totals["new_correct"] / totals["new_boxes"], 4) if totals["new_boxes"] else 0.0,
        "refined_iou_before": round(float(np.mean(before_iou)), 4) if before_iou else None,
        "refined_iou_after": round(float(np.mean(after_iou)), 4) if after_iou else None,
    }
