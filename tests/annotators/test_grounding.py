"""Grounding annotator: a test-size Grounding DINO grounds caption noun phrases."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.grounding import build_prompt, token_phrase_mask
from annotators.noun_phrases import rule_based_noun_phrases
from annotators.registry import build_annotator
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_language import context_rows, save_grounding_dino

DETAILED = "The image shows a large green triangle above two yellow circles on a white background."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_grounding_dino(tmp_path_factory.mktemp("grounding") / "ckpt")


@pytest.fixture(scope="module")
def grounder(model_dir):
    return build_annotator("grounding", model=str(model_dir), box_threshold=0.0, text_threshold=0.0, batch_size=2)


def _items(round_=3):
    rng = np.random.default_rng(0)
    items = []
    for i, (w, h) in enumerate([(80, 60), (50, 70), (64, 64)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows = context_rows(f"img{i}", w, h, round_)
        if i == 1:
            rows.append(annotation_row(image_id=f"img{i}", round_=round_, source="florence2", source_version="t",
                                       kind="caption", granularity="detailed", text=DETAILED))
        items.append(ImageItem(image_id=f"img{i}", image=image, width=w, height=h, context={"annotations": rows}))
    return items


def test_rows_are_valid_grounded_phrases(grounder, model_dir):
    items = _items()
    rows = grounder.annotate(ImageBatch(items, round=3))
    table_from_rows(rows, ANNOTATIONS)  # schema-valid
    assert rows
    by_image = {item.image_id: item for item in items}
    for row in rows:
        item = by_image[row["image_id"]]
        captions = {r["annotation_id"]: r for r in item.context["annotations"] if r["kind"] == "caption"}
        assert row["kind"] == "phrase" and row["source"] == "grounding" and row["round"] == 3
        assert row["source_version"] == checkpoint_version(model_dir)
        parent = captions[row["parent_id"]]  # the parent is a caption of the same image
        assert parent["text"][row["span_start"]:row["span_end"]] == row["text"]
        assert row["granularity"] == parent["granularity"]
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= item.width and 0 <= y0 < y1 <= item.height
        assert 0.0 < row["score"] <= 1.0
    # both captions of image 1 are grounded, each with its own granularity
    assert {r["granularity"] for r in rows if r["image_id"] == "img1"} == {"brief", "detailed"}


def test_text_threshold_keeps_a_subset_above_it(grounder, model_dir):
    items = _items()
    everything = {r["annotation_id"]: r for r in grounder.annotate(ImageBatch(items, round=3))}
    strict = build_annotator("grounding", model=str(model_dir), box_threshold=0.0, text_threshold=0.5,
                             batch_size=2)  # same batches: padding changes a DETR-style model's boxes
    kept = strict.annotate(ImageBatch(items, round=3))
    assert all(r["score"] > 0.5 for r in kept)
    assert {r["annotation_id"] for r in kept} <= set(everything)
    assert len(kept) == sum(1 for r in everything.values() if r["score"] > 0.5)
    assert 0 < len(kept) < len(everything)  # the threshold really cut something here


def test_prompt_and_token_mask_locate_each_phrase(grounder):
    grounder.load()
    tokenizer = grounder._processor.tokenizer
    phrases = rule_based_noun_phrases(DETAILED)
    prompt, spans = build_prompt(phrases)
    assert prompt.endswith(".") and prompt.count(". ") == len(phrases) - 1
    for phrase, (s, e) in zip(phrases, spans):
        assert prompt[s:e] == phrase.text.lower()
    enc = tokenizer(prompt, return_offsets_mapping=True, return_tensors="pt")
    mask = token_phrase_mask(enc["offset_mapping"][0], spans, len(phrases))
    ids = enc["input_ids"][0]
    for p, phrase in enumerate(phrases):
        assert tokenizer.decode(ids[mask[p]]) == phrase.text.lower()
    assert not mask[:, 0].any() and not mask[:, -1].any()  # [CLS] / [SEP] belong to no phrase


def test_images_without_captions_or_phrases_give_no_rows(grounder):
    image = Image.new("RGB", (40, 30), "white")
    no_caption = ImageItem("a", image, 40, 30, context={"annotations": context_rows("a", 40, 30)[1:]})
    no_phrase_row = annotation_row(image_id="b", round_=0, source="x", source_version="t", kind="caption",
                                   granularity="brief", text="it is there.")
    no_phrase = ImageItem("b", image, 40, 30, context={"annotations": [no_phrase_row]})
    assert grounder.annotate(ImageBatch([no_caption, no_phrase])) == []


def test_load_is_idempotent(grounder):
    grounder.load()
    model = grounder._model
    grounder.load()
    assert grounder._model is model


def test_missing_model_and_bad_settings(tmp_path, model_dir):
    with pytest.raises(AnnotatorError, match="neither a local directory"):
        build_annotator("grounding", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="box_threshold"):
        build_annotator("grounding", model=str(model_dir), box_threshold=1.5)
    with pytest.raises(ValueError, match="granularities"):
        build_annotator("grounding", model=str(model_dir), granularities=["huge"])
