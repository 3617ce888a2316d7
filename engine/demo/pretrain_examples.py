"""The pre-training examples of a ``write_sample`` folder: every Florence-2 task of every image.

The pool is the demo model's pre-training corpus (its own seeds, never a demo seed), so its
scenes' texts are what the model learns from, as the released Florence-2 learned from FLD-5B.
Per image, curated-style rows are built and turned into ``(task, prompt, target)`` by the
engine's own :func:`florence2.targets.image_targets`:

- ``OD``: the *noisy* label copy's boxes (dropped, jittered, swapped: the labels the engine
  starts from), as the committed OD-only checkpoint was trained;
- everything else from the pool's scene texts and exact geometry: captions of the three
  granularities, every caption's grounded phrases (a plural phrase, one box per object),
  a description per object (``REGION_TO_DESCRIPTION``), the words as OCR lines (their box
  corners as the quad) and each shape's mask as polygons (``REGION_TO_SEGMENTATION``,
  simplified to ``polygon_tolerance`` px).

Boxes are absolute pixels ``[x0, y0, x1, y1]`` of the upright image, as the rows everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from engine.dataset.curated import CURATED_COLUMNS
from engine.retrain.examples import Example
from florence2.format import TASK_ORDER
from florence2.targets import image_targets

#: the tasks the demo model is pre-trained on (DENSE_REGION_CAPTION's descriptions are asked per box instead)
PRETRAIN_TASKS: tuple[str, ...] = tuple(t for t in TASK_ORDER if t != "DENSE_REGION_CAPTION")
#: Douglas-Peucker tolerance of the mask outlines, in pixels of the 256 px scenes
POLYGON_TOLERANCE = 1.5


def _row(**columns: Any) -> dict[str, Any]:
    return {**dict.fromkeys(CURATED_COLUMNS), **columns}


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def truth_rows(image: dict[str, Any], annotations: list[dict[str, Any]], names: dict[int, str],
               polygon_tolerance: float = POLYGON_TOLERANCE) -> list[dict[str, Any]]:
    """The curated-style rows of one ground-truth image entry (``write_sample``'s fields)."""
    from storage.masks import decode_rle, mask_to_polygons

    rows: list[dict[str, Any]] = []
    by_id = {a["id"]: a for a in annotations}
    for ann in annotations:
        region_id, label, box = f"r{ann['id']}", names[ann["category_id"]], _xyxy(ann["bbox"])
        if label == "text":
            quad = [box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]]
            rows.append(_row(annotation_id=f"o{ann['id']}", kind="region", region_type="ocr", text=ann["text"],
                             bbox=box, quad=quad))
        polygons = None
        if label != "text" and ann.get("segmentation"):
            size = ann["segmentation"]["size"]
            polygons = mask_to_polygons(decode_rle(ann["segmentation"]["counts"], size[0], size[1]), polygon_tolerance)
        rows.append(_row(annotation_id=region_id, kind="region", region_type="object", text=label, label=label,
                         bbox=box, polygons=polygons))
        if ann.get("description"):
            rows.append(_row(annotation_id=f"d{ann['id']}", kind="region", region_type="object", granularity="brief",
                             parent_id=region_id, text=ann["description"], bbox=box))
    for granularity, caption in image.get("captions", {}).items():
        caption_id = f"c-{granularity}"
        rows.append(_row(annotation_id=caption_id, kind="caption", granularity=granularity, text=caption))
        for k, phrase in enumerate(image.get("phrases", {}).get(granularity, [])):
            for object_id in phrase["objects"]:
                if object_id in by_id:
                    rows.append(_row(annotation_id=f"p-{granularity}-{k}-{object_id}", kind="phrase",
                                     granularity=granularity, parent_id=caption_id, text=phrase["text"],
                                     span_start=phrase["span"][0], span_end=phrase["span"][1],
                                     bbox=_xyxy(by_id[object_id]["bbox"])))
    return rows


def noisy_od_rows(annotations: Iterable[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]]:
    """The noisy label copy's boxes of one image as object regions (the OD targets)."""
    return [_row(annotation_id=f"n{a['id']}", kind="region", region_type="object", text=names[a["category_id"]],
                 bbox=_xyxy(a["bbox"])) for a in annotations]


def pool_examples(sample_dir: Path, images_per_shard: int, tasks: Iterable[str] = PRETRAIN_TASKS,
                  split: str = "train", od_labels: str = "noisy_labels.json",
                  target_format: str = "released") -> list[Example]:
    """Every example of ``tasks`` for each image of a ``write_sample`` folder (module docstring);
    ``od_labels``: the COCO file whose boxes are the OD targets (``ground_truth.json`` for a clean check)."""
    truth = json.loads((sample_dir / "ground_truth.json").read_text())
    od = json.loads((sample_dir / od_labels).read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    tasks = tuple(tasks)
    per_image: dict[int, list[dict]] = {}
    for ann in truth["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    od_boxes: dict[int, list[dict]] = {}
    for ann in od["annotations"]:
        od_boxes.setdefault(ann["image_id"], []).append(ann)
    out: list[Example] = []
    for image in truth["images"]:
        key = image["file_name"].rsplit(".", 1)[0]
        shard = sample_dir / "shards" / f"shard-{(image['id'] - 1) // images_per_shard:05d}.tar"
        width, height = image["width"], image["height"]
        targets = []
        if "OD" in tasks:
            targets += image_targets(noisy_od_rows(od_boxes.get(image["id"], []), names), width, height, ("OD",),
                                     target_format=target_format)
        others = [t for t in tasks if t != "OD"]
        if others:
            rows = truth_rows(image, per_image.get(image["id"], []), names)
            targets += image_targets(rows, width, height, others, target_format=target_format)
        out += [Example(f"{sample_dir.name}-{image['id']}", task, prompt, target, width, height, str(shard), key, "tar",
                        split) for task, prompt, target in targets]
    return out
