"""Box-to-mask segmenter: SAM (``SamModel`` + ``SamProcessor``) prompted with existing boxes.

For every row of ``item.context["annotations"]`` of kind ``region`` or ``phrase`` that has a
``bbox`` (absolute pixels ``[x0, y0, x1, y1]`` of the upright image), SAM is prompted with
that box and the mask with the highest predicted IoU of its three candidates is kept. Each
masked row gives a NEW row of the same kind with ``source = "segmenter"``:

- ``text``, ``bbox``, ``region_type`` and ``granularity`` copied from the prompt row;
- ``parent_id`` = the prompt row's ``annotation_id``;
- ``mask_rle``: COCO compressed RLE of the mask over the whole upright image;
- ``polygons``: outer boundaries of the mask (absolute pixels, pixel-edge vertices),
  simplified to within ``polygon_tolerance`` pixels;
- ``score`` = SAM's predicted IoU of the kept mask, as reported.

(``span_start``/``span_end`` are not copied: they index the text of the prompt row's parent,
and the new row's parent is the prompt row itself.) Images are encoded ``batch_size`` at a
time; the boxes of one image go through the prompt encoder and mask decoder together, at
most ``max_boxes_per_pass`` per call. Images without such rows, and masks that come out
empty, yield no rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from hf.settings import ModelSettings, check_number, check_positive_int
from storage.masks import encode_rle, mask_to_polygons
from storage.schema import KIND_PHRASE, KIND_REGION, annotation_row

#: kinds of context rows whose boxes are segmented
PROMPT_KINDS = (KIND_REGION, KIND_PHRASE)
#: columns copied from the prompt row to the new row
COPIED_COLUMNS = ("text", "region_type", "granularity")


@dataclass(frozen=True)
class SegmenterSettings(ModelSettings):
    """Settings of the ``segmenter`` annotator.

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: images per vision-encoder pass.
    ``max_boxes_per_pass``: boxes per mask-decoder call. ``mask_threshold``: logit above which
    a pixel is inside the mask. ``polygon_tolerance``: polygon simplification in pixels (0 =
    exact pixel outline).
    """

    batch_size: int = 4
    max_boxes_per_pass: int = 64
    mask_threshold: float = 0.0
    polygon_tolerance: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("max_boxes_per_pass", self.max_boxes_per_pass)
        check_number("mask_threshold", self.mask_threshold, unit=" (a logit)")
        check_number("polygon_tolerance", self.polygon_tolerance, low=0.0, unit=" (pixels)")


def prompt_rows(item: ImageItem) -> list[Mapping[str, Any]]:
    """The rows of ``item.context["annotations"]`` that the segmenter masks (region/phrase with a bbox)."""
    return [
        row for row in item.context.get("annotations", ()) or ()
        if row.get("kind") in PROMPT_KINDS and row.get("bbox") is not None
    ]


@register_annotator("segmenter")
class Segmenter(PretrainedAnnotator):
    """SAM prompted with the boxes of earlier region/phrase rows; emits masked copies of them."""

    kinds = (KIND_REGION, KIND_PHRASE)
    needs = ("annotations",)
    reads = (Rows(KIND_REGION, derived=False), Rows(KIND_PHRASE))
    emits = (Rows(KIND_REGION, derived=True), Rows(KIND_PHRASE, derived=True))
    settings_class = SegmenterSettings
    model_class = "SamModel"
    processor_class = "SamProcessor"
    # mask -> polygon tracing uses OpenCV, which the `ocr` extra installs
    required_packages = ("cv2",)

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        work = [(item, prompts) for item in batch.items if (prompts := prompt_rows(item))]
        if not work:
            return []
        self.load()
        rows: list[dict[str, Any]] = []
        for start in range(0, len(work), self.batch_size):
            rows.extend(self._segment_chunk(work[start:start + self.batch_size], batch.round))
        return rows

    def _segment_chunk(self, work: list[tuple[ImageItem, list]], round_: int) -> list[dict[str, Any]]:
        import torch

        encoding = self._processor(images=[item.image.convert("RGB") for item, _ in work], return_tensors="pt")
        original = encoding["original_sizes"].tolist()  # (H, W) per image
        reshaped = encoding["reshaped_input_sizes"].tolist()  # (h, w) after the longest-edge resize
        with torch.inference_mode():
            embeddings = self._model.get_image_embeddings(encoding["pixel_values"].to(self._device, self._dtype))
        rows = []
        for index, (item, prompts) in enumerate(work):
            step = self.settings.max_boxes_per_pass
            for start in range(0, len(prompts), step):
                group = prompts[start:start + step]
                masks, scores = self._masks(embeddings[index:index + 1], group, original[index], reshaped[index])
                for prompt, mask, score in zip(group, masks, scores):
                    if mask.any():
                        rows.append(self._row(item, prompt, mask, score, round_))
        return rows

    def _masks(self, embedding: Any, prompts: Sequence[Mapping[str, Any]], original: list[int],
               reshaped: list[int]) -> tuple[list[Any], list[float]]:
        """Best mask (``(H, W)`` bool numpy) and its predicted IoU for each prompt box of one image."""
        import torch

        (height, width), (new_h, new_w) = original, reshaped
        scale = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
        boxes = torch.tensor([[float(v) for v in prompt["bbox"]] for prompt in prompts]) * scale
        with torch.inference_mode():
            outputs = self._model(
                image_embeddings=embedding,
                input_boxes=boxes[None].to(self._device, self._dtype),
                multimask_output=True,
            )
        iou = outputs.iou_scores[0].float().cpu()  # (boxes, 3)
        best = iou.argmax(dim=-1)
        # only the best low-resolution mask of each box is upsampled to the image (not all 3)
        low = outputs.pred_masks.float().cpu()[0]  # (boxes, 3, h, w)
        chosen = low[torch.arange(len(prompts)), best][:, None]  # (boxes, 1, h, w)
        masks = self._processor.post_process_masks(
            [chosen], [original], [reshaped], mask_threshold=float(self.settings.mask_threshold),
        )[0]  # (boxes, 1, H, W) bool
        return list(masks[:, 0].numpy()), iou.gather(1, best[:, None])[:, 0].tolist()

    def _row(self, item: ImageItem, prompt: Mapping[str, Any], mask: Any, score: float, round_: int) -> dict:
        copied = {column: prompt.get(column) for column in COPIED_COLUMNS}
        return annotation_row(
            image_id=item.image_id, round_=round_, source=self.name, source_version=self.version,
            kind=prompt["kind"], bbox=[float(v) for v in prompt["bbox"]], parent_id=prompt.get("annotation_id"),
            mask_rle=encode_rle(mask), polygons=mask_to_polygons(mask, self.settings.polygon_tolerance),
            score=float(score), **copied,
        )
