"""Anatomy of a demo round's new boxes (evaluation only: reads the sample's ground truth).

    .venv/bin/python experiments/new-box-anatomy/analyse.py ROOT ROUND

For each curated object box first added after round 0 (``round`` > 0): right or wrong (class-aware
IoU >= 0.5 against the ground truth, as engine/report/loop_quality.py counts them), counted by the
split of its image (``train``: every fine-tune of the loop trained on that image's curated labels;
``validation``: none did), by the round that added it, by how many sources saw it (``seen_by``) and,
for single-source boxes, whether the round's own model checkpoint is the one that saw it;
what each wrong box is; then every single-source new box with its score. Reads ``ROOT/demo.toml``
for the split settings and ``ROOT/sample/ground_truth.json``.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np

from engine.config import EngineConfig
from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import image_locations
from engine.dataset.splits import split_of
from engine.report.loop_quality import _coco_boxes, _norm, match
from storage.catalog import Catalog
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot


def wrong_kind(row: tuple, truth: list[tuple[str, list[float]]]) -> str:
    """What a wrong new box is, read against the image's ground-truth shapes."""
    if not truth:
        return "image without truth boxes"
    iou = box_iou_matrix(np.array([row[4]], float), np.array([b for _, b in truth], float))[0]
    best = int(iou.argmax())
    same = [iou[i] for i, (label, _) in enumerate(truth) if label == _norm(row[3])]
    if iou[best] >= 0.5 and truth[best][0] != _norm(row[3]):
        return "wrong class"
    if same and max(same) >= 0.5:
        return "duplicate of a matched box"
    if same and max(same) >= 0.1:
        return "loose box (same-class IoU 0.1-0.5)"
    return "other-class overlap < 0.5" if iou[best] >= 0.1 else "nothing there"


def main(root_path: str, round_: int) -> None:
    root = DataRoot(Path(root_path))
    training = EngineConfig.load(str(root.path / "demo.toml")).training
    truth = json.loads((root.path / "sample" / "ground_truth.json").read_text())
    shapes = {c["id"]: _norm(c["name"]) for c in truth["categories"] if c["name"] != "text"}
    truth_boxes = _coco_boxes(truth, shapes)
    ids = coco_image_ids(truth, image_locations(root))
    with Catalog.reading(root) as catalog:
        rows = catalog.query(
            "select annotation_id, image_id, round, coalesce(label, text), bbox, source, score, seen_by from curated "
            "where curated_round = ? and kind = 'region' and region_type = 'object' and bbox is not null", [round_])
        current = {f"{s}@{v}" for s, v in catalog.query(
            "select distinct source, source_version from annotations where round = ? and source = 'florence2'", [round_])}
    by_image: dict[str, list[tuple]] = collections.defaultdict(list)
    for row in rows:
        if row[1] in ids and _norm(row[3]) in shapes.values():
            by_image[row[1]].append(row)
    counts: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    single = []
    for image_id, mine in by_image.items():
        gt = truth_boxes.get(ids[image_id], [])
        hit, _ = match([(_norm(r[3]), list(r[4])) for r in mine], gt)
        split = split_of(image_id, training.eval_fraction, training.seed)
        for k, row in enumerate(mine):
            if row[2] == 0:
                continue
            right = "right" if hit[k] >= 0 else "wrong"
            seen = len(row[7] or [])
            counts[f"image split {split}: {right}"] += 1
            counts[f"added in round {row[2]}: {right}"] += 1
            counts[f"seen by {seen} source(s): {right}"] += 1
            seen_now = bool(set(row[7] or []) & current)
            if seen == 1:
                who = "this round's model only" if seen_now else "an earlier checkpoint only (this round's model ran, did not find it)"
                counts[f"seen by {who}: {right}"] += 1
            if right == "wrong":
                kinds[wrong_kind(row, gt)] += 1
            if seen <= 1:
                single.append((round(row[6] if row[6] is not None else -1.0, 3), right, row[5]))
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    for kind, n in kinds.most_common():
        print(f"wrong new box, {kind}: {n}")
    print("single-source new boxes (score, right/wrong, source):")
    for item in sorted(single):
        print(" ", *item)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
