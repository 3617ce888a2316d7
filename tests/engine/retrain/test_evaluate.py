"""Evaluation metrics: COCOeval box/mask mAP through our image matching and conversion,
the agreement measures (word F1, label + IoU matching) and the image dependence (0 for a
model that cannot see)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.retrain.evaluate import coco_detections, coco_image_ids, coco_map, image_dependence, matched_pairs, word_f1
from engine.retrain.examples import Example, image_locations
from storage.masks import decode_rle, encode_rle
from tests.engine.retrain.data import make_root


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("eval"), images=8, seed=4, per_shard=4)
    return root, truth, image_locations(root)


def _predictions(truth, locations, image_map, shift=0.0, mask_shift=0):
    """The ground truth as predictions in our form (image_id, label, box x0 y0 x1 y1, mask)."""
    ours = {coco: image_id for image_id, coco in image_map.items()}
    names = {c["id"]: c["name"] for c in truth["categories"]}
    images = {i["id"]: i for i in truth["images"]}
    out = []
    for ann in truth["annotations"]:
        x, y, w, h = ann["bbox"]
        image = images[ann["image_id"]]
        mask = decode_rle(ann["segmentation"]["counts"], image["height"], image["width"])
        out.append({"image_id": ours[ann["image_id"]], "label": names[ann["category_id"]].upper(),
                    "bbox": [x + shift * w, y, x + w + shift * w, y + h], "score": 0.9,
                    "mask_rle": encode_rle(np.roll(mask, mask_shift, axis=1)),
                    "width": image["width"], "height": image["height"]})
    return out


def test_coco_map_is_one_for_the_truth_and_lower_when_jittered(sample):
    root, truth, locations = sample
    image_map = coco_image_ids(truth, locations)
    assert len(image_map) == 8 and sorted(image_map.values()) == sorted(i["id"] for i in truth["images"])
    ids = list(image_map.values())
    perfect = coco_map(truth, coco_detections(_predictions(truth, locations, image_map), truth, image_map), ids)
    assert perfect == pytest.approx({"box_map": 1.0, "mask_map": 1.0})
    jittered = coco_map(truth, coco_detections(_predictions(truth, locations, image_map, shift=0.2, mask_shift=6),
                                               truth, image_map), ids)
    assert jittered["box_map"] < 0.7 and jittered["mask_map"] < 0.9
    assert coco_map(truth, [], ids) == {"box_map": 0.0, "mask_map": 0.0}


def test_images_match_by_file_name_without_a_coco_id_and_unknown_labels_drop(sample):
    _, truth, locations = sample
    stripped = {k: {**v, "meta": {}} for k, v in locations.items()}  # no sidecar: match by key
    assert coco_image_ids(truth, stripped) == coco_image_ids(truth, locations)
    image_map = coco_image_ids(truth, locations)
    predictions = _predictions(truth, locations, image_map)
    predictions[0]["label"] = "spaceship"
    detections = coco_detections(predictions, truth, image_map)
    assert len(detections) == len(predictions) - 1
    first = truth["annotations"][1]
    assert detections[0]["bbox"] == pytest.approx(first["bbox"]) and detections[0]["image_id"] == first["image_id"]


def test_agreement_measures():
    assert word_f1("A red circle.", "a red circle") == 1.0
    assert word_f1("a blue square", "a red circle") == pytest.approx(2 * 1 / 6)
    assert word_f1("", "words") == 0.0
    truth = [("circle", [0, 0, 10, 10]), ("square", [20, 20, 40, 40]), ("circle", [50, 50, 60, 60])]
    assert matched_pairs(truth, truth) == 3
    moved = [("circle", [2, 0, 12, 10]), ("Square", [30, 30, 50, 50]), ("circle", [0, 0, 10, 10])]
    assert matched_pairs(moved, truth) == 1  # IoU 0.67 but its twin takes the box; square IoU 0.14
    assert matched_pairs([("square", [0, 0, 10, 10])], truth) == 0  # right box, wrong label


def _blind(model):
    """Zero the image projection: every image becomes the same tokens (the norm's bias)."""
    with torch.no_grad():
        model.model.multi_modal_projector.image_projection.weight.zero_()
    return model


def test_image_dependence_is_zero_for_a_blind_model_and_positive_for_one_that_sees(sample, tmp_path):
    from engine.demo.model import build_demo_checkpoint
    from engine.retrain.train import load_model
    from florence2.checkpoint import build_checkpoint
    from florence2.targets import image_targets

    root, truth, locations = sample
    names = {c["id"]: c["name"] for c in truth["categories"]}
    keys = {i["file_name"].split(".")[0]: i["id"] for i in truth["images"]}
    examples = []
    for image_id, where in sorted(locations.items()):
        rows = [{"kind": "region", "region_type": "object", "text": names[a["category_id"]], "label": None,
                 "parent_id": None, "bbox": [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                             a["bbox"][1] + a["bbox"][3]]}
                for a in truth["annotations"] if a["image_id"] == keys[where["key"]]]
        for task, prompt, target in image_targets(rows, where["width"], where["height"], ("OD",)):
            examples.append(Example(image_id, task, prompt, target, where["width"], where["height"], where["shard"],
                                    where["key"], where["shard_format"], "validation"))
    assert len(examples) >= 4
    for model_dir in (build_checkpoint(tmp_path / "tiny", image_size=32, seed=2),
                      build_demo_checkpoint(tmp_path / "s128", seed=0)):
        model, processor = load_model(model_dir, torch.device("cpu"))
        seeing = image_dependence(model, processor, examples, batch_size=4)
        blind = image_dependence(_blind(model), processor, examples, batch_size=4)
        print(model_dir, seeing, blind)
        assert seeing > 1e-3 and blind < 1e-6
        assert image_dependence(model, processor, examples[:1]) is None  # one image: nothing to swap
