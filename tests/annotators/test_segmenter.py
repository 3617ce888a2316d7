"""segmenter: a test-size SAM prompted with the boxes of earlier rows, loaded by path."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from storage.masks import decode_rle, polygons_to_rle
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_vision import tiny_sam_dir


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return tiny_sam_dir(tmp_path_factory.mktemp("sam"))


def _context_rows(image_id: str, width: int, height: int) -> list[dict]:
    common = {"image_id": image_id, "round_": 2, "source_version": "x"}
    caption = annotation_row(source="florence2", kind="caption", granularity="brief", text="a cat and a dog", **common)
    return [
        caption,
        annotation_row(source="detector", kind="region", region_type="object", text="cat",
                       bbox=[2.0, 3.0, width / 2, height / 2], score=0.9, **common),
        annotation_row(source="grounding", kind="phrase", granularity="brief", text="a dog",
                       bbox=[width / 3, height / 4, width - 1.0, height - 2.0], parent_id=caption["annotation_id"],
                       span_start=10, span_end=15, **common),
        annotation_row(source="florence2", kind="region", region_type="object", text="no box", **common),
    ]


def _batch() -> ImageBatch:
    rng = np.random.default_rng(2)
    items = []
    for i, (w, h) in enumerate([(80, 50), (40, 70), (64, 64)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        context = {"annotations": _context_rows(f"img{i}", w, h)} if i != 1 else {}
        items.append(ImageItem(image_id=f"img{i}", image=image, width=w, height=h, context=context))
    return ImageBatch(items=items, round=2)


@functools.lru_cache(maxsize=1)
def _reference_sam(sam_dir: str):
    from transformers import SamModel, SamProcessor

    return (SamModel.from_pretrained(sam_dir, local_files_only=True).eval(),
            SamProcessor.from_pretrained(sam_dir, local_files_only=True))


def _reference_mask(sam_dir, image: Image.Image, box: list[float]) -> tuple[np.ndarray, float]:
    """SAM's documented pipeline for one box: processor(images, input_boxes) -> model -> best of 3."""
    model, processor = _reference_sam(str(sam_dir))
    inputs = processor(images=image, input_boxes=[[box]], return_tensors="pt")
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"].float())
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    scores = outputs.iou_scores[0, 0]
    best = int(scores.argmax())
    return masks[0][0, best].numpy(), float(scores[best])


def test_rows_mask_every_boxed_region_and_phrase(sam_dir):
    segmenter = build_annotator("segmenter", model=str(sam_dir), batch_size=2)
    batch = _batch()
    rows = segmenter.annotate(batch)
    table_from_rows(rows, ANNOTATIONS)
    prompts = {row["annotation_id"]: (item, row) for item in batch.items
               for row in item.context.get("annotations", []) if row.get("bbox") is not None}
    assert sorted(row["parent_id"] for row in rows) == sorted(prompts)  # one row per boxed prompt, none for img1
    for row in rows:
        item, prompt = prompts[row["parent_id"]]
        assert row["source"] == "segmenter" and row["round"] == 2 and row["image_id"] == item.image_id
        for column in ("kind", "text", "bbox", "region_type", "granularity"):
            assert row.get(column) == prompt.get(column), column
        mask = decode_rle(row["mask_rle"], item.height, item.width)
        assert mask.any()
        reference, score = _reference_mask(sam_dir, item.image, list(prompt["bbox"]))
        assert np.array_equal(mask, reference)
        assert row["score"] == pytest.approx(score, abs=1e-5)
        for polygon in row["polygons"]:
            xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
            assert xs.min() >= 0 and xs.max() <= item.width and ys.min() >= 0 and ys.max() <= item.height
        redrawn = decode_rle(polygons_to_rle(row["polygons"], item.height, item.width), item.height, item.width)
        assert (redrawn & mask).sum() / (redrawn | mask).sum() > 0.7


def test_box_chunking_does_not_change_results(sam_dir):
    one = build_annotator("segmenter", model=str(sam_dir), max_boxes_per_pass=1, batch_size=1).annotate(_batch())
    many = build_annotator("segmenter", model=str(sam_dir)).annotate(_batch())
    key = lambda rows: sorted((r["parent_id"], r["mask_rle"]) for r in rows)  # noqa: E731
    assert key(one) == key(many)


def test_images_without_boxes_yield_nothing_and_skip_loading(sam_dir):
    segmenter = build_annotator("segmenter", model=str(sam_dir))
    item = ImageItem(image_id="a", image=Image.new("RGB", (20, 20)), width=20, height=20)
    assert segmenter.annotate(ImageBatch(items=[item])) == []
    assert segmenter._model is None
    segmenter.load()
    model = segmenter._model
    segmenter.load()
    assert segmenter._model is model


def test_missing_model_and_bad_settings(sam_dir, tmp_path):
    with pytest.raises(AnnotatorError, match="nothing-here"):
        build_annotator("segmenter", model=str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="polygon_tolerance"):
        build_annotator("segmenter", model=str(sam_dir), polygon_tolerance=-1)
    with pytest.raises(ValueError, match="max_boxes_per_pass"):
        build_annotator("segmenter", model=str(sam_dir), max_boxes_per_pass=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_gives_rows_like_cpu(sam_dir):
    gpu = build_annotator("segmenter", model=str(sam_dir), device="cuda", dtype="bf16").annotate(_batch())
    cpu = build_annotator("segmenter", model=str(sam_dir)).annotate(_batch())
    assert sorted(r["parent_id"] for r in gpu) == sorted(r["parent_id"] for r in cpu)
    table_from_rows(gpu, ANNOTATIONS)
