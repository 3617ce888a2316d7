"""Every FLD-5B kind a Florence-2 checkpoint produces, on unseen scenes (evaluation only).

The checkpoint annotates the fixed unseen scenes of :mod:`engine.demo.model_quality` (scene seeds
``UNSEEN_SEED + i`` of a style) with :meth:`florence2.model.Florence2Model.predict` and every task
of the settings, as a round does; its payloads become rows (a description is its box's child row,
a phrase its caption's) and are scored against the scenes' own objects by
:func:`engine.report.kind_quality.rows_quality`: caption facts per granularity, grounded phrases
per granularity, description accuracy, mask IoU and coverage, plus COCOeval shape AP50 of the
``<OD>`` boxes. Ground truth is read here only; nothing decides from it.

    python -m engine.demo.model_kinds --model engine/demo/checkpoint --style grid --images 48
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.dataset.coco_eval import coco_stats
from engine.demo.model_quality import UNSEEN_SEED, unseen_truth
from engine.report.caption_facts import Thing, Vocabulary
from engine.report.kind_quality import TruthImage, TruthObject, rows_quality
from florence2.model import Florence2Model
from florence2.settings import Florence2Settings
from storage.masks import encode_rle


def unseen_kind_truth(style: str, count: int) -> tuple[list[Any], dict[int, TruthImage], Vocabulary]:
    """``(images, truth per image number 1.., vocabulary)`` of the ``count`` unseen scenes of ``style``."""
    from engine.demo.scenes import COLORS, SHAPES, WORDS, render_scene

    images, truth = [], {}
    for index in range(count):
        scene = render_scene(UNSEEN_SEED + index, style=style)
        images.append(scene.image)
        objects = [TruthObject(Thing(o.category, o.color, o.text), tuple(o.bbox), encode_rle(o.mask))
                   for o in scene.objects]
        truth[index + 1] = TruthImage(objects, scene.image.width, scene.image.height)
    vocabulary = Vocabulary(shapes=tuple(SHAPES), colors=tuple(sorted(COLORS)), words=tuple(w.lower() for w in sorted(set(WORDS))))
    return images, truth, vocabulary


def prediction_rows(predictions: list[Any]) -> list[dict[str, Any]]:
    """The rows of :meth:`Florence2Model.predict`'s answers (image ``i`` is ``coco_id`` ``i + 1``)."""
    rows = []
    for index, found in enumerate(predictions):
        ids: list[str] = []
        for k, (payload, parent) in enumerate(zip(found.payloads, found.parents)):
            ids.append(f"{index + 1}-{k}")
            rows.append({"annotation_id": ids[-1], "coco_id": index + 1, "kind": payload["kind"],
                         "granularity": payload.get("granularity"), "region_type": payload.get("region_type"),
                         "text": payload.get("text"), "label": None, "bbox": payload.get("bbox"),
                         "mask_rle": payload.get("mask_rle"), "parent_id": None if parent is None else ids[parent],
                         "score": payload.get("score")})
    return rows


def _shape_ap50(rows: list[dict[str, Any]], style: str, count: int) -> float:
    """COCOeval shape AP50 of the top-level object rows against the unseen scenes' shapes
    (the COCO truth :func:`engine.demo.model_quality.unseen_truth` builds)."""
    _, coco = unseen_truth(style, count)
    ids = {c["name"]: c["id"] for c in coco["categories"]}
    detections = [{"image_id": r["coco_id"], "category_id": ids[r["text"].strip().lower()], "score": float(r["score"] or 0),
                   "bbox": [r["bbox"][0], r["bbox"][1], r["bbox"][2] - r["bbox"][0], r["bbox"][3] - r["bbox"][1]]}
                  for r in rows if r["kind"] == "region" and r["region_type"] == "object" and r["granularity"] is None
                  and not r["parent_id"] and (r["text"] or "").strip().lower() in ids]
    return coco_stats(coco, detections, range(1, count + 1))["ap50"]


def model_kinds(model_dir: str | Path, settings: Florence2Settings, style: str, count: int = 48) -> dict[str, Any]:
    """Every kind's figures (``rows_quality``) and ``shape_ap50`` of the checkpoint in ``model_dir`` on
    ``count`` unseen scenes of ``style``, annotating with ``settings`` (the model replaced)."""
    images, truth, vocabulary = unseen_kind_truth(style, count)
    model = Florence2Model(replace(settings, model=str(model_dir)))
    rows = prediction_rows(model.predict(images))
    return {"style": style, "tasks": list(model.settings.tasks), "shape_ap50": round(_shape_ap50(rows, style, count), 4),
            **rows_quality(rows, truth, truth, vocabulary)}


def main(argv: list[str] | None = None) -> int:
    from florence2.format import TASK_ORDER

    parser = argparse.ArgumentParser(prog="python -m engine.demo.model_kinds", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a Florence-2 checkpoint folder")
    parser.add_argument("--style", default="grid", help="scene style of the unseen scenes (default grid)")
    parser.add_argument("--images", type=int, default=48, help="unseen scenes (default 48)")
    parser.add_argument("--tasks", default=",".join(t for t in TASK_ORDER if t != "DENSE_REGION_CAPTION"),
                        help="comma-separated tasks (default: every task but DENSE_REGION_CAPTION)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    settings = Florence2Settings(model=args.model, device="cpu", dtype="fp32", batch_size=8, num_beams=1,
                                 max_new_tokens=args.max_new_tokens, tasks=tuple(args.tasks.split(",")))
    print(json.dumps(model_kinds(args.model, settings, args.style, args.images), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
