"""Region-text matcher: a test-size CLIP picks the best candidate text per region."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.crops import crop_region
from annotators.region_text_matcher import choose_best, dedupe
from annotators.registry import build_annotator
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_language import context_rows, save_clip

CAPTIONS = {  # region text -> captions the region captioner wrote for it
    "circle": ["a red circle next to a blue square", "the big round shape"],
    "square": ["a blue square", "A blue square"],
}


# ------------------------------------------------------------------------ choose_best
def test_choose_best_is_argmax_with_softmax_probability():
    text, prob = choose_best(["a", "b", "c"], [1.0, 3.0, 2.0])
    expected = math.exp(3.0) / (math.exp(1.0) + math.exp(3.0) + math.exp(2.0))
    assert text == "b" and prob == pytest.approx(expected)
    assert choose_best(["only"], [-7.0]) == ("only", pytest.approx(1.0))
    assert choose_best(["first", "second"], [2.0, 2.0]) == ("first", pytest.approx(0.5))
    assert choose_best(["a", "b"], [1000.0, 0.0])[1] == pytest.approx(1.0)  # no overflow


def test_choose_best_rejects_bad_input():
    with pytest.raises(ValueError):
        choose_best(["a"], [1.0, 2.0])
    with pytest.raises(ValueError):
        choose_best([], [])
    with pytest.raises(ValueError):
        choose_best(["a"], [float("nan")])


def test_dedupe_keeps_first_spelling():
    assert dedupe([" A  dog", "a dog", "", None, "cat"]) == ["A dog", "cat"]


# ---------------------------------------------------------------------------- matcher
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_clip(tmp_path_factory.mktemp("clip") / "ckpt")


@pytest.fixture(scope="module")
def matcher(clip_dir):
    return build_annotator("region_text_matcher", model=str(clip_dir), batch_size=3)


def _items(round_=2):
    rng = np.random.default_rng(2)
    items = []
    for i, (w, h) in enumerate([(80, 60), (50, 70)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows = context_rows(f"img{i}", w, h, round_)
        for region in [r for r in rows if r["kind"] == "region"]:
            rows += [annotation_row(image_id=f"img{i}", round_=round_, source="region_captioner", source_version="t",
                                    kind="region", region_type="object", text=caption, bbox=region["bbox"],
                                    parent_id=region["annotation_id"]) for caption in CAPTIONS[region["text"]]]
        items.append(ImageItem(image_id=f"img{i}", image=image, width=w, height=h, context={"annotations": rows}))
    return items


def _regions(item):
    return [r for r in item.context["annotations"] if r["source"] == "detector"]


def test_candidates_are_own_text_captions_and_their_phrases(matcher):
    item = _items()[0]
    circle, square = _regions(item)
    assert matcher.candidates(item, circle) == [
        "circle", "a red circle next to a blue square", "the big round shape", "a red circle", "a blue square",
    ]
    # the other region's captions never leak in; case-insensitive duplicates collapse
    assert matcher.candidates(item, square) == ["square", "a blue square"]


def test_one_row_per_region_chosen_by_the_model(matcher, clip_dir):
    import torch

    items = _items()
    rows = matcher.annotate(ImageBatch(items, round=2))
    table_from_rows(rows, ANNOTATIONS)
    regions = {r["annotation_id"]: (item, r) for item in items for r in _regions(item)}
    assert sorted(r["parent_id"] for r in rows) == sorted(regions)  # captioner rows are not matched
    matcher.load()
    model, processor = matcher._model, matcher._processor
    winners = set()
    for row in rows:
        item, region = regions[row["parent_id"]]
        assert row["source"] == "region_text_matcher" and row["kind"] == "region" and row["round"] == 2
        assert row["region_type"] == "object" and row["source_version"] == checkpoint_version(clip_dir)
        assert row["bbox"] == pytest.approx(region["bbox"])
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= item.width and 0 <= y0 < y1 <= item.height
        # independently: the model's own forward pass over (crop, candidates)
        candidates = matcher.candidates(item, region)
        crop = crop_region(item.image, region["bbox"], matcher.settings.margin)
        inputs = processor(text=candidates, images=[crop], return_tensors="pt", padding=True)
        with torch.inference_mode():
            probs = model(**inputs).logits_per_image[0].softmax(-1)
        assert row["text"] == candidates[int(probs.argmax())]
        assert row["score"] == pytest.approx(float(probs.max()), rel=1e-4)
        winners.add(candidates.index(row["text"]))
    assert winners != {0}  # not simply the region's own text every time


def test_regions_without_candidates_give_no_rows(matcher):
    image = Image.new("RGB", (40, 30), "white")
    region = annotation_row(image_id="a", round_=0, source="detector", source_version="t", kind="region",
                            region_type="object", bbox=[1, 1, 20, 20])  # no text, no captions
    assert matcher.annotate(ImageBatch([ImageItem("a", image, 40, 30, context={"annotations": [region]})])) == []


def test_load_is_idempotent_and_errors(matcher, clip_dir, tmp_path):
    matcher.load()
    model = matcher._model
    matcher.load()
    assert matcher._model is model
    with pytest.raises(AnnotatorError, match="neither a local directory"):
        build_annotator("region_text_matcher", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="use_phrases"):
        build_annotator("region_text_matcher", model=str(clip_dir), use_phrases="yes")
    with pytest.raises(ValueError, match="batch_size"):
        build_annotator("region_text_matcher", model=str(clip_dir), batch_size=0)
