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

from dataclasses import dataclass, field
from typing import Any, Mapping

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.crops import crop_region
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from annotators.text_utils import strip_prompt
from florence2.format import task_spec
from hf.settings import ModelSettings, check_positive_int, check_range, check_str, str_tuple
from storage.schema import KIND_REGION, annotation_row

#: sources whose region rows are derived from other regions: never inputs to region models
DERIVED_SOURCES = ("region_captioner", "region_text_matcher", "segmenter")
#: what the ``margin`` settings of crop-based annotators say in their errors
MARGIN_UNIT = " (fraction of the box size)"


@dataclass(frozen=True)
class RegionCaptionerSettings(ModelSettings):
    """Settings of the ``region_captioner`` annotator (``[annotators.region_captioner]``).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: crops per generate call.
    ``prompt``: text given with each crop ("<CAPTION>" for Florence-2, "" for BLIP-like).
    ``margin``: fraction of the box size added on each side of the crop, in [0, 10].
    ``max_new_tokens``, ``num_beams``: generation length and beams (1 = greedy).
    ``exclude_sources``: region sources that are not captioned.
    """

    batch_size: int = 16
    prompt: str = task_spec("CAPTION").token
    margin: float = 0.1
    max_new_tokens: int = 32
    num_beams: int = 1
    exclude_sources: tuple[str, ...] = field(default=DERIVED_SOURCES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("max_new_tokens", self.max_new_tokens)
        check_positive_int("num_beams", self.num_beams)
        check_str("prompt", self.prompt)
        check_range("margin", self.margin, 0, 10, MARGIN_UNIT)
        object.__setattr__(self, "exclude_sources", str_tuple("exclude_sources", self.exclude_sources))


def object_regions(item: ImageItem, exclude_sources: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """The object region rows with a box in ``item``'s context, minus ``exclude_sources``."""
    return [
        row for row in item.context.get("annotations", ())
        if row.get("kind") == KIND_REGION and row.get("region_type") == "object"
        and row.get("bbox") is not None and row.get("source") not in exclude_sources
    ]


@register_annotator("region_captioner")
class RegionCaptioner(PretrainedAnnotator):
    """Captions crops of object regions; emits candidate ``region`` texts."""

    kinds = (KIND_REGION,)
    needs = ("annotations",)
    reads = (Rows(KIND_REGION, derived=False, region_type="object"),)
    emits = (Rows(KIND_REGION, derived=True, region_type="object"),)
    settings_class = RegionCaptionerSettings
    model_class = "AutoModelForImageTextToText"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.stats: dict[str, int] = {"empty_generations": 0}

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
        inputs = self.model_inputs(inputs)
        with torch.inference_mode():
            generated = self._model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens,
                                             num_beams=self.settings.num_beams, do_sample=False)
        decoded = self._processor.batch_decode(generated, skip_special_tokens=True)
        return [strip_prompt(t, prompt) for t in decoded]
