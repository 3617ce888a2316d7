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

import os
from dataclasses import dataclass
from typing import Any

from annotators.base import Annotator, ImageBatch, ImageItem
from annotators.hf_loading import (
    DTYPES,
    checkpoint_version,
    from_pretrained_kwargs,
    resolve_model_dir,
    torch_device_dtype,
)
from annotators.registry import register_annotator
from storage.schema import KIND_REGION, annotation_row


@dataclass(frozen=True)
class DetectorSettings:
    """Settings of the ``detector`` annotator (the ``[annotators.detector]`` config table).

    ``model``: checkpoint directory or cached hub id. ``device``: cpu, cuda, cuda:N or auto.
    ``dtype``: fp32, bf16 or fp16. ``batch_size``: images per forward pass (>= 1).
    ``threshold``: minimum detection score kept, in [0, 1].
    """

    model: str | os.PathLike[str] = ""
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 8
    threshold: float = 0.3

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)):
            raise ValueError(f"model must be a path or hub id string, got {self.model!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of fp32, bf16, fp16; got {self.dtype!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {self.threshold!r}")


def clip_box(box: Any, width: int, height: int) -> list[float] | None:
    """``[x0, y0, x1, y1]`` clipped to a ``width x height`` image; ``None`` when empty after clipping."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), float(width)), min(max(x1, 0.0), float(width))
    y0, y1 = min(max(y0, 0.0), float(height)), min(max(y1, 0.0), float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1, y1]


@register_annotator("detector")
class Detector(Annotator):
    """Closed-vocabulary object detector (DETR / RT-DETR) emitting ``region`` rows of type object."""

    kinds = (KIND_REGION,)

    def __init__(self, **settings: Any) -> None:
        self.settings = DetectorSettings(**settings)
        self.batch_size = self.settings.batch_size
        self.model_dir = resolve_model_dir(self.settings.model, self.name)
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        self._version: str | None = None
        self._model: Any = None
        self._processor: Any = None

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = checkpoint_version(self.model_dir)
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        kwargs = from_pretrained_kwargs()
        self._processor = AutoImageProcessor.from_pretrained(self.model_dir, **kwargs)
        model = AutoModelForObjectDetection.from_pretrained(self.model_dir, dtype=self._dtype, **kwargs)
        self._model = model.to(self._device).eval()

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

        inputs = self._processor(images=[item.image.convert("RGB") for item in items], return_tensors="pt")
        inputs = {
            key: value.to(self._device, self._dtype) if key == "pixel_values" else value.to(self._device)
            for key, value in inputs.items()
        }
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
