"""Object detector annotator: DETR / RT-DETR family checkpoints through transformers.

Loads any checkpoint that ``AutoModelForObjectDetection`` + ``AutoImageProcessor`` read
(DETR, Conditional/Deformable DETR, RT-DETR, ...) from a local directory or the local
Hugging Face cache, runs it on batches of upright RGB images and emits one ``region`` row
per detection above ``threshold``:

- ``region_type = "object"``, ``text`` = the class name from the checkpoint's ``id2label``;
- ``bbox = [x0, y0, x1, y1]`` in absolute pixels of the upright image (origin top-left),
  as the processor's ``post_process_object_detection`` reports it for the image's
  ``(height, width)``, clipped to the image; boxes empty after clipping are dropped;
- ``score`` = the detection score as the model reported it (softmax or sigmoid, 0..1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from hf.settings import ModelSettings, check_range
from storage.geometry import clip_box
from storage.schema import KIND_REGION, annotation_row


@dataclass(frozen=True)
class DetectorSettings(ModelSettings):
    """Settings of the ``detector`` annotator (the ``[annotators.detector]`` config table).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: images per forward pass (>= 1).
    ``threshold``: minimum detection score kept, in [0, 1].
    """

    batch_size: int = 8
    threshold: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("threshold", self.threshold, 0.0, 1.0)


@register_annotator("detector")
class Detector(PretrainedAnnotator):
    """Closed-vocabulary object detector (DETR / RT-DETR) emitting ``region`` rows of type object."""

    kinds = (KIND_REGION,)
    reads = ()
    emits = (Rows(KIND_REGION, derived=False, region_type="object"),)
    settings_class = DetectorSettings
    model_class = "AutoModelForObjectDetection"
    processor_class = "AutoImageProcessor"

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        rows: list[dict[str, Any]] = []
        items = list(batch.items)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            for item, result in zip(chunk, self._detect(chunk)):
                rows.extend(self._rows(item, result, batch.round))
        return rows

    def _detect(self, items: list[ImageItem]) -> list[dict[str, Any]]:
        """Run the model on ``items``; one ``{"scores", "labels", "boxes"}`` dict per image."""
        import torch

        inputs = self.model_inputs(
            self._processor(images=[item.image.convert("RGB") for item in items], return_tensors="pt"))
        with torch.inference_mode():
            outputs = self._model(**inputs)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        return self._processor.post_process_object_detection(
            outputs,
            threshold=float(self.settings.threshold),
            target_sizes=[(item.height, item.width) for item in items],
        )

    def _rows(self, item: ImageItem, result: dict[str, Any], round_: int) -> list[dict[str, Any]]:
        id2label = self._model.config.id2label
        rows = []
        for score, label, box in zip(result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()):
            bbox = clip_box(box, item.width, item.height)
            if bbox is None:
                continue
            rows.append(annotation_row(
                image_id=item.image_id, round_=round_, source=self.name, source_version=self.version,
                kind=KIND_REGION, region_type="object", text=str(id2label.get(int(label), f"LABEL_{int(label)}")),
                bbox=bbox, score=float(score),
            ))
        return rows
