"""Region captioner (test-size BLIP and Florence-2) and the shared crop helper."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.crops import crop_box, crop_region
from annotators.region_captioner import strip_prompt
from annotators.registry import build_annotator
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_language import context_rows, save_blip


# ------------------------------------------------------------------------------ crops
def test_crop_box_adds_margin_and_clamps():
    assert crop_box([10, 20, 30, 60], 100, 100, margin=0.1) == (8, 16, 32, 64)
    assert crop_box([10, 20, 30, 60], 100, 100, margin=0.0) == (10, 20, 30, 60)
    assert crop_box([0, 0, 100, 50], 100, 50, margin=0.5) == (0, 0, 100, 50)  # clamped to the image
    assert crop_box([30, 60, 10, 20], 100, 100, margin=0.0) == (10, 20, 30, 60)  # corners given swapped


def test_crop_is_at_least_one_pixel_and_inside():
    for bbox in ([100, 50, 100, 50], [150, 80, 200, 90], [-20, -5, -1, -1], [5.2, 5.2, 5.3, 5.3]):
        left, top, right, bottom = crop_box(bbox, 100, 50)
        assert 0 <= left < right <= 100 and 0 <= top < bottom <= 50
    image = Image.new("RGB", (100, 50))
    assert crop_region(image, [100, 50, 100, 50]).size == (1, 1)
    assert crop_region(image, [10, 10, 20, 30], margin=0.0).size == (10, 20)


def test_crop_rejects_bad_input():
    with pytest.raises(ValueError, match="margin"):
        crop_box([0, 0, 1, 1], 10, 10, margin=-0.1)
    with pytest.raises(ValueError, match="bbox"):
        crop_box([0, 0, float("nan"), 1], 10, 10)


# -------------------------------------------------------------------------- captioner
@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return save_blip(tmp_path_factory.mktemp("blip") / "ckpt")


@pytest.fixture(scope="module")
def captioner(blip_dir):
    return build_annotator("region_captioner", model=str(blip_dir), prompt="", max_new_tokens=6, batch_size=3)


def _items(round_=1):
    rng = np.random.default_rng(1)
    items = []
    for i, (w, h) in enumerate([(80, 60), (50, 70)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows = context_rows(f"img{i}", w, h, round_)
        box = [1.0, 2.0, 20.0, 30.0]
        rows += [  # none of these is an object region to caption
            annotation_row(image_id=f"img{i}", round_=round_, source=src, source_version="t", kind="region",
                           region_type=rtype, text="x", bbox=box)
            for src, rtype in (("segmenter", "object"), ("region_captioner", "object"), ("ocr", "ocr"))
        ]
        items.append(ImageItem(image_id=f"img{i}", image=image, width=w, height=h, context={"annotations": rows}))
    return items


def _regions(item):
    return [r for r in item.context["annotations"] if r["source"] == "detector"]


def test_one_caption_row_per_object_region(captioner, blip_dir):
    items = _items()
    rows = captioner.annotate(ImageBatch(items, round=1))
    table_from_rows(rows, ANNOTATIONS)
    regions = {r["annotation_id"]: (item, r) for item in items for r in _regions(item)}
    assert sorted(r["parent_id"] for r in rows) == sorted(regions)  # 4 regions, batches of 3
    for row in rows:
        item, region = regions[row["parent_id"]]
        assert row["image_id"] == item.image_id and row["source"] == "region_captioner"
        assert row["kind"] == "region" and row["region_type"] == "object" and row["round"] == 1
        assert row["bbox"] == pytest.approx(region["bbox"])
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= item.width and 0 <= y0 < y1 <= item.height
        assert row["source_version"] == checkpoint_version(blip_dir)
        # the text is the caption of this region's crop, captioned on its own
        crop = crop_region(item.image, region["bbox"], captioner.settings.margin)
        assert row["text"] == captioner.caption([crop])[0] and row["text"] == row["text"].strip()
    assert len({row["text"] for row in rows}) > 1  # captions follow the crops


def test_prompt_prefix_is_removed_from_echoing_models(blip_dir):
    import torch

    prompted = build_annotator("region_captioner", model=str(blip_dir), prompt="a picture of", max_new_tokens=5)
    item = _items()[0]
    region = _regions(item)[0]
    crop = crop_region(item.image, region["bbox"], prompted.settings.margin)
    prompted.load()
    inputs = prompted._processor(images=[crop], text=["a picture of"], return_tensors="pt")
    with torch.inference_mode():
        out = prompted._model.generate(**inputs, max_new_tokens=5, do_sample=False, num_beams=1)
    full = prompted._processor.batch_decode(out, skip_special_tokens=True)[0]
    assert full.startswith("a picture of")  # BLIP echoes its prefix
    assert prompted.caption([crop]) == [full[len("a picture of"):].strip()]


def test_strip_prompt():
    assert strip_prompt("  A picture of  a dog ", "a picture of") == "a dog"
    assert strip_prompt("a dog", "<CAPTION>") == "a dog"
    assert strip_prompt(" a dog ", "") == "a dog"


def test_florence2_region_captions(tmp_path):
    from florence2.checkpoint import build_checkpoint

    model_dir = build_checkpoint(tmp_path / "florence2", size="tiny")
    captioner = build_annotator("region_captioner", model=str(model_dir), max_new_tokens=6, batch_size=4)
    assert captioner.settings.prompt == "<CAPTION>"
    items = _items()
    rows = captioner.annotate(ImageBatch(items, round=1))
    table_from_rows(rows, ANNOTATIONS)
    regions = {r["annotation_id"]: (item, r) for item in items for r in _regions(item)}
    assert len(rows) + captioner.stats["empty_generations"] == len(regions)
    for row in rows:
        item, region = regions[row["parent_id"]]
        crop = crop_region(item.image, region["bbox"], captioner.settings.margin)
        assert row["text"] and row["text"] == captioner.caption([crop])[0]


def test_load_is_idempotent_and_errors(captioner, blip_dir, tmp_path):
    captioner.load()
    model = captioner._model
    captioner.load()
    assert captioner._model is model
    with pytest.raises(AnnotatorError, match="neither a local directory"):
        build_annotator("region_captioner", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="margin"):
        build_annotator("region_captioner", model=str(blip_dir), margin=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        build_annotator("region_captioner", model=str(blip_dir), max_new_tokens=0)
