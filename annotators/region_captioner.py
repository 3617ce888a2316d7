"""Region captioner: crop each object region and caption the crop with an image-to-text model.

Any checkpoint that ``AutoModelForImageTextToText`` + ``AutoProcessor`` load works:
Florence-2 (``prompt = "<CAPTION>"``, the default), BLIP (``prompt = ""``: unconditional
captioning; a non-empty prompt is a caption prefix that is removed from the output), GIT, ...

For every object region row already made for the image (``item.context["annotations"]``,
``kind = "region"``, ``region_type = "object"``, from a source not in ``exclude_sources``)
the region is cut out with :func:`annotators.crops.crop_region` (``margin`` = fraction of the
box size added per side, clamped to the image) and the crops are captioned in batches of
``batch_size`` with greedy (or beam) decoding. One ``region`` row per region:
``region_type = "object"``, ``text`` = the generated caption (stripped; empty captions are
dropped and counted in ``stats["empty_generations"]``), ``bbox`` = the region's box (absolute
pixels of the upright image, ``[x0, y0, x1, y1]``), ``parent_id`` = the region's
``annotation_id``, no score. These are candidates: the region-text matcher and curation
decide which text a region keeps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from annotators.base import Annotator, ImageBatch, ImageItem
from annotators.crops import crop_region
from annotators.hf_loading import (DTYPES, checkpoint_version, from_pretrained_kwargs, resolve_model_dir,
                                   torch_device_dtype)
from annotators.registry import register_annotator
from storage.schema import KIND_REGION, annotation_row

#: sources whose region rows are derived from other regions: never inputs to region models
DERIVED_SOURCES = ("region_captioner", "region_text_matcher", "segmenter")


@dataclass(frozen=True)
class RegionCaptionerSettings:
    """Settings of the ``region_captioner`` annotator (``[annotators.region_captioner]``).

    ``model``: checkpoint directory or cached hub id. ``device``: cpu, cuda, cuda:N or auto.
    ``dtype``: fp32, bf16 or fp16. ``batch_size``: crops per generate call.
    ``prompt``: text given with each crop ("<CAPTION>" for Florence-2, "" for BLIP-like).
    ``margin``: fraction of the box size added on each side of the crop (>= 0).
    ``max_new_tokens``, ``num_beams``: generation length and beams (1 = greedy).
    ``exclude_sources``: region sources that are not captioned.
    """

    model: str | os.PathLike[str] = ""
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 16
    prompt: str = "<CAPTION>"
    margin: float = 0.1
    max_new_tokens: int = 32
    num_beams: int = 1
    exclude_sources: tuple[str, ...] = field(default=DERIVED_SOURCES)

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)):
            raise ValueError(f"model must be a path or hub id string, got {self.model!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of fp32, bf16, fp16; got {self.dtype!r}")
        for name in ("batch_size", "max_new_tokens", "num_beams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, got {self.prompt!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 10:
            raise ValueError(f"margin must be a number in [0, 10] (fraction of the box size), got {self.margin!r}")
        if isinstance(self.exclude_sources, str) or not all(isinstance(s, str) for s in self.exclude_sources):
            raise ValueError(f"exclude_sources must be a list of source names, got {self.exclude_sources!r}")
        object.__setattr__(self, "exclude_sources", tuple(self.exclude_sources))


def object_regions(item: ImageItem, exclude_sources: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """The object region rows with a box in ``item``'s context, minus ``exclude_sources``."""
    return [
        row for row in item.context.get("annotations", ())
        if row.get("kind") == KIND_REGION and row.get("region_type") == "object"
        and row.get("bbox") is not None and row.get("source") not in exclude_sources
    ]


def strip_prompt(text: str, prompt: str) -> str:
    """``text`` stripped, without a leading copy of ``prompt`` (decoder-only models echo it)."""
    text = " ".join(text.split())
    prefix = " ".join(prompt.split())
    if prefix and text.lower().startswith(prefix.lower()):
        text = text[len(prefix):]
    return text.strip()


@register_annotator("region_captioner")
class RegionCaptioner(Annotator):
    """Captions crops of object regions; emits candidate ``region`` texts."""

    kinds = (KIND_REGION,)
    needs = ("annotations",)

    def __init__(self, **settings: Any) -> None:
        self.settings = RegionCaptionerSettings(**settings)
        self.batch_size = self.settings.batch_size
        self.model_dir = resolve_model_dir(self.settings.model, self.name)
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        self._version: str | None = None
        self._model: Any = None
        self._processor: Any = None
        self.stats: dict[str, int] = {"empty_generations": 0}

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = checkpoint_version(self.model_dir)
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        kwargs = from_pretrained_kwargs()
        self._processor = AutoProcessor.from_pretrained(self.model_dir, **kwargs)
        model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=self._dtype, **kwargs)
        self._model = model.to(self._device).eval()

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        jobs = [(item, region) for item in batch.items
                for region in object_regions(item, self.settings.exclude_sources)]
        rows = []
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            crops = [crop_region(item.image.convert("RGB"), region["bbox"], self.settings.margin)
                     for item, region in chunk]
            for (item, region), text in zip(chunk, self.caption(crops)):
                if not text:
                    self.stats["empty_generations"] += 1
                    continue
                rows.append(annotation_row(
                    image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                    kind=KIND_REGION, region_type="object", text=text, bbox=[float(v) for v in region["bbox"]],
                    parent_id=region["annotation_id"],
                ))
        return rows

    def caption(self, images: list[Any]) -> list[str]:
        """Captions of ``images`` (PIL RGB), in order, stripped of the prompt."""
        import torch

        self.load()
        prompt = self.settings.prompt
        text = [prompt] * len(images) if prompt else None
        inputs = self._processor(images=images, text=text, return_tensors="pt",
                                 **({"padding": True} if text else {}))
        inputs = {k: v.to(self._device, self._dtype) if v.is_floating_point() else v.to(self._device)
                  for k, v in inputs.items() if hasattr(v, "to")}
        with torch.inference_mode():
            generated = self._model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens,
                                             num_beams=self.settings.num_beams, do_sample=False)
        decoded = self._processor.batch_decode(generated, skip_special_tokens=True)
        return [strip_prompt(t, prompt) for t in decoded]
