"""kind_quality on a real root: a curated set that is exactly the ground truth scores 1.0 in every
kind; each perturbation (a wrong colour, a moved box, a dropped phrase or caption, a coarse mask)
lowers exactly its own figure by exactly its share; absent kinds read 0 / None."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from engine.report.caption_facts import Thing, expected_facts
from engine.report.kind_quality import GRANULARITIES, KINDS, kind_quality
from storage.masks import encode_rle
from tests.engine.report.kind_truth import truth_rows
from tests.engine.retrain.data import image_ids_by_key, make_root, write_curated


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("kinds"), images=8, seed=3, per_shard=4)
    return root, truth


def _shapes(truth: dict, image: dict) -> list[dict]:
    text_id = next(c["id"] for c in truth["categories"] if c["name"] == "text")
    return [a for a in truth["annotations"] if a["image_id"] == image["id"] and a["category_id"] != text_id]


def _box(ann: dict) -> list[float]:
    x, y, w, h = ann["bbox"]
    return [x, y, x + w, y + h]


def _things(truth: dict, image: dict) -> list[Thing]:
    names = {c["id"]: c["name"] for c in truth["categories"]}
    return [Thing(names[a["category_id"]], a.get("color"), a.get("text"))
            for a in truth["annotations"] if a["image_id"] == image["id"]]


def test_the_truth_itself_scores_one_in_every_kind(sample):
    root, truth = sample
    assert all(_shapes(truth, image) for image in truth["images"])  # so every kind is on every image
    write_curated(root, truth_rows(root, truth, 1), 1)
    quality = kind_quality(root, 1, truth["path"])
    assert quality["images"] == len(truth["images"])
    for g in GRANULARITIES:
        assert quality["captions"][g] == {"captions": len(truth["images"]), "fact_recall": 1.0, "fact_precision": 1.0}
        assert quality["grounding"][g]["phrase_precision"] == 1.0 and quality["grounding"][g]["phrase_recall"] == 1.0
    shapes = sum(len(_shapes(truth, image)) for image in truth["images"])
    assert quality["region_descriptions"] == {"descriptions": shapes, "accuracy": 1.0}
    assert quality["masks"] == {"rows": shapes, "matched": shapes, "mean_iou": 1.0}
    assert quality["coverage"] == {kind: 1.0 for kind in KINDS}


def test_a_description_kept_in_its_regions_text_counts_as_one(sample):
    """The region-text rule's curated form: the description in the object region's ``text``, the class in ``label``."""
    root, truth = sample
    rows = truth_rows(root, truth, 5)
    child = {r["parent_id"]: r["text"] for r in rows if r["kind"] == "region" and r.get("granularity") == "brief"}
    collapsed = [{**r, "text": child.get(r["annotation_id"], r["text"])} for r in rows
                 if not (r["kind"] == "region" and r.get("granularity") == "brief")]
    write_curated(root, collapsed, 5)
    quality = kind_quality(root, 5, truth["path"])
    shapes = sum(len(_shapes(truth, image)) for image in truth["images"])
    assert quality["region_descriptions"] == {"descriptions": shapes, "accuracy": 1.0}
    assert quality["coverage"]["region_brief"] == 1.0 and quality["coverage"]["region_phrase"] == 1.0


def test_each_perturbation_lowers_its_own_figure_by_its_share(sample):
    root, truth = sample
    truth = copy.deepcopy(truth)
    images, ids = truth["images"], image_ids_by_key(root)
    image_id = {image["id"]: ids[image["file_name"].split(".")[0]] for image in images}
    colors = truth["vocabulary"]["colors"]
    # a wrong colour in one brief caption: one true fact lost, one false fact stated
    first, shape = next((image, a) for image in images for a in _shapes(truth, image)
                        if [(b["color"], b["category_id"]) for b in _shapes(truth, image)].count(
                            (a["color"], a["category_id"])) == 1)
    name = next(c["name"] for c in truth["categories"] if c["id"] == shape["category_id"])
    present = {(a["color"], a["category_id"]) for a in _shapes(truth, first)}
    wrong = next(c for c in colors if (c, shape["category_id"]) not in present)
    phrase = next(p for p in first["phrases"]["brief"] if p["objects"] == [shape["id"]])
    start, end = phrase["span"]
    caption = first["captions"]["brief"]
    first["captions"]["brief"] = caption[:start] + caption[start:end].replace(shape["color"], wrong) + caption[end:]
    assert f"{wrong} {name}" in first["captions"]["brief"]
    rows = truth_rows(root, truth, 2)

    second = next(image for image in images if len(_things(truth, image)) > 1)  # keeps other brief phrases
    dropped = _box(_shapes(truth, second)[0])  # its brief phrase rows dropped
    rows = [r for r in rows if not (r["kind"] == "phrase" and r.get("granularity") == "brief" and r["bbox"] == dropped)]
    moved = next(r for r in rows if r["kind"] == "phrase" and r.get("granularity") == "detailed"
                 and r["text"].lower().startswith("a ") and r["image_id"] == image_id[second["id"]])
    moved["bbox"] = [moved["bbox"][0] + second["width"], moved["bbox"][1], moved["bbox"][2] + second["width"],
                     moved["bbox"][3]]  # off the image: matches nothing
    renamed = next(r for r in rows if r["kind"] == "phrase" and r.get("granularity") == "more_detailed"
                   and r["text"].lower().startswith("a ") and r["image_id"] != image_id[images[-1]["id"]])
    color = next(c for c in colors if f" {c} " in renamed["text"])
    renamed["text"] = renamed["text"].replace(color, next(c for c in colors if c != color))  # names another colour
    description = next(r for r in rows if r["kind"] == "region" and r.get("granularity") == "brief")
    color = next(c for c in colors if f" {c} " in description["text"])
    description["text"] = description["text"].replace(color, next(c for c in colors if c != color))
    square = next(c["id"] for c in truth["categories"] if c["name"] == "square")  # fills its box
    coarse_image, coarse_ann = next((image, a) for image in images for a in _shapes(truth, image)
                                    if a["category_id"] != square)
    coarse = next(r for r in rows if r["kind"] == "region" and r.get("mask_rle") == coarse_ann["segmentation"]["counts"])
    filled = np.zeros((coarse_image["height"], coarse_image["width"]), bool)
    x0, y0, x1, y1 = (int(v) for v in _box(coarse_ann))
    filled[y0:y1, x0:x1] = True
    coarse["mask_rle"] = encode_rle(filled)
    last = images[-1]  # loses its more detailed caption and that caption's phrases
    lost = next(r for r in rows if r["kind"] == "caption" and r.get("granularity") == "more_detailed"
                and r["image_id"] == image_id[last["id"]])
    rows = [r for r in rows if r is not lost and r.get("parent_id") != lost["annotation_id"]]
    write_curated(root, rows, 2)
    quality = kind_quality(root, 2, truth["path"])

    n = len(images)
    brief_facts = sum(len(expected_facts(_things(truth, image), "brief")) for image in images)
    assert quality["captions"]["brief"]["fact_recall"] == round((brief_facts - 1) / brief_facts, 4)
    assert quality["captions"]["brief"]["fact_precision"] == round((brief_facts - 1) / brief_facts, 4)
    for g in ("detailed", "more_detailed"):
        assert quality["captions"][g]["fact_recall"] == quality["captions"][g]["fact_precision"] == 1.0
    assert quality["captions"]["more_detailed"]["captions"] == n - 1
    shapes = sum(len(_shapes(truth, image)) for image in images)
    assert quality["grounding"]["brief"]["phrase_precision"] == 1.0
    assert quality["grounding"]["brief"]["phrase_recall"] == round((shapes - 1) / shapes, 4)
    detailed = quality["grounding"]["detailed"]["phrases"]
    assert quality["grounding"]["detailed"]["phrase_precision"] == round((detailed - 1) / detailed, 4)
    assert quality["grounding"]["detailed"]["phrase_recall"] == 1.0  # still grounded by "N shapes"
    more = quality["grounding"]["more_detailed"]["phrases"]
    assert quality["grounding"]["more_detailed"]["phrase_precision"] == round((more - 1) / more, 4)
    assert quality["grounding"]["more_detailed"]["phrase_recall"] == round(
        (shapes - len(_shapes(truth, last))) / shapes, 4)
    assert quality["region_descriptions"]["accuracy"] == round((shapes - 1) / shapes, 4)
    coarse_iou = coarse_ann["area"] / ((x1 - x0) * (y1 - y0))
    assert quality["masks"]["mean_iou"] == round((shapes - 1 + coarse_iou) / shapes, 4) < 1.0
    assert quality["coverage"]["caption_more_detailed"] == quality["coverage"]["phrase_more_detailed"] == round(
        (n - 1) / n, 4)
    assert {k: v for k, v in quality["coverage"].items() if not k.endswith("more_detailed")} == {
        k: 1.0 for k in KINDS if not k.endswith("more_detailed")}


def test_absent_kinds_read_zero_or_none(sample):
    root, truth = sample
    rows = [r for r in truth_rows(root, truth, 3) if r["kind"] == "caption" and r.get("granularity") == "brief"]
    write_curated(root, rows, 3)
    quality = kind_quality(root, 3, truth["path"])
    assert quality["captions"]["brief"]["fact_recall"] == 1.0
    for g in ("detailed", "more_detailed"):
        assert quality["captions"][g] == {"captions": 0, "fact_recall": None, "fact_precision": None}
    for g in GRANULARITIES:
        assert quality["grounding"][g] == {"phrases": 0, "phrase_precision": None, "phrase_recall": 0.0}
    assert quality["region_descriptions"] == {"descriptions": 0, "accuracy": None}
    assert quality["masks"] == {"rows": 0, "matched": 0, "mean_iou": None}
    assert quality["coverage"] == {kind: 1.0 if kind == "caption_brief" else 0.0 for kind in KINDS}
    assert kind_quality(root, 9, truth["path"])["coverage"] == dict.fromkeys(KINDS, 0.0)  # no curated set at all


def test_true_facts_beyond_what_a_granularity_asks_for_are_not_errors(sample):
    root, truth = sample
    truth = copy.deepcopy(truth)
    for image in truth["images"]:  # the more detailed caption in the brief's place: everything, and more
        image["captions"]["brief"] = image["captions"]["more_detailed"]
    rows = [r for r in truth_rows(root, truth, 4) if r["kind"] == "caption" and r.get("granularity") == "brief"]
    write_curated(root, rows, 4)
    assert kind_quality(root, 4, truth["path"])["captions"]["brief"] == {
        "captions": len(truth["images"]), "fact_recall": 1.0, "fact_precision": 1.0}
