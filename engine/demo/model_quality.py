"""How good an annotator the current model is, on images no model trained on (evaluation only).

A fixed set of unseen scenes of the demo's style (scene seeds ``UNSEEN_SEED`` + i: never in a
sample, a pre-training pool or a CLIP pool) is annotated by a checkpoint as the round annotates
(``<OD>`` with the round's views, scores and fusion: :meth:`florence2.model.Florence2Model.predict`)
and scored against the scenes' ground truth with COCOeval: class-aware AP at IoU 0.5 over the four
shapes (``shape_ap50``) and AP@[.5:.95] (``shape_ap``). Ground truth is read here only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.dataset.coco_eval import coco_stats
from engine.demo.scenes import SHAPES, render_scene
from florence2.model import Florence2Model
from florence2.settings import Florence2Settings

#: first scene seed of the unseen evaluation scenes (samples use seed * 1,000,003 + index, the
#: pre-training pools 10,000 / 20,000 and the CLIP pool 30,000+: far from all of them)
UNSEEN_SEED = 900_000_000
#: unseen scenes per measurement: 48 (~190 shapes) moved a checkpoint's AP50 by up to 0.08 from its
#: value on 200 (measured on the seed-5 demo: 0.530 / 0.483 / 0.540 on 48 scenes, 0.449 / 0.478 /
#: 0.512 on 200 for rounds 0 / 1 / 2), more than a round's gain; on 200 (~800 shapes) the standard
#: error of AP50 is about 0.02
UNSEEN_SCENES = 200


def sample_style(sample_dir: str | Path) -> str:
    """The scene style a sample folder was written with (``info.style`` of its ground truth)."""
    import json

    truth = json.loads((Path(sample_dir) / "ground_truth.json").read_text(encoding="utf-8"))
    return str((truth.get("info") or {}).get("style") or "plain")


def unseen_truth(style: str, count: int) -> tuple[list[Any], dict[str, Any]]:
    """``(images, COCO ground truth of their shapes)`` of the ``count`` unseen scenes of ``style``."""
    images, annotations = [], []
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES)]
    ids = {c["name"]: c["id"] for c in categories}
    for index in range(count):
        scene = render_scene(UNSEEN_SEED + index, style=style)
        images.append(scene.image)
        for obj in scene.objects:
            if obj.category in ids:
                x0, y0, x1, y1 = obj.bbox
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": ids[obj.category],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    truth = {"images": [{"id": i + 1, "width": im.width, "height": im.height} for i, im in enumerate(images)],
             "annotations": annotations, "categories": categories}
    return images, truth


def model_quality(model_dir: str | Path, settings: Florence2Settings, style: str,
                  count: int = UNSEEN_SCENES) -> dict[str, float]:
    """``shape_ap50`` and ``shape_ap`` of the checkpoint in ``model_dir`` on the unseen scenes,
    annotating with ``settings`` (its ``<OD>`` task, views and scores; the model replaced)."""
    images, truth = unseen_truth(style, count)
    model = Florence2Model(replace(settings, model=str(model_dir), tasks=("OD",)))
    ids = {c["name"]: c["id"] for c in truth["categories"]}
    detections = []
    for index, found in enumerate(model.predict(images, ("OD",))):
        for p in found.payloads:
            category = ids.get((p.get("text") or "").strip().lower())
            if category is not None:
                x0, y0, x1, y1 = p["bbox"]
                detections.append({"image_id": index + 1, "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                   "score": float(p.get("score") or 0.0)})
    stats = coco_stats(truth, detections, range(1, count + 1))
    return {"shape_ap50": stats["ap50"], "shape_ap": stats["ap"], "images": count}


class RoundModels:
    """The quality of the model each round leaves current (what the next round annotates with),
    each checkpoint measured once; ``config`` is the demo's engine config, ``style`` its scenes'."""

    def __init__(self, config: Any, style: str, count: int = UNSEEN_SCENES) -> None:
        self.config, self.style, self.count = config, style, count
        self.settings = config.current_model_settings()
        self._measured: dict[str, dict[str, float]] = {}

    def measure(self, model_dir: str | Path) -> dict[str, float]:
        key = str(Path(model_dir).resolve())
        if key not in self._measured:
            self._measured[key] = model_quality(key, self.settings, self.style, self.count)
        return self._measured[key]

    def after_round(self, root: Any, round_: int) -> dict[str, Any]:
        """The current model after ``round_``'s promotion step, its quality and the base model's."""
        from engine.retrain.train import resolve_start_model

        current = resolve_start_model(root, round_ + 1, self.config.training)
        base = Path(self.config.training.base_model)
        name = "the base model" if current.resolve() == base.resolve() else f"the round-{current.name.split('=')[-1]} fine-tune"
        return {"model": name, "style": self.style, **self.measure(current), "base": self.measure(base)}
