"""COCO evaluation: COCOeval box/mask mAP through our image matching (sidecar ``coco_id``, else
the file name) and conversion of predictions to COCO detections."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.dataset.coco_eval import coco_detections, coco_image_ids, coco_map
from engine.dataset.locations import image_locations
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
    stripped = {k: replace(v, meta={}) for k, v in locations.items()}  # no sidecar: match by key
    assert coco_image_ids(truth, stripped) == coco_image_ids(truth, locations)
    image_map = coco_image_ids(truth, locations)
    predictions = _predictions(truth, locations, image_map)
    predictions[0]["label"] = "spaceship"
    detections = coco_detections(predictions, truth, image_map)
    assert len(detections) == len(predictions) - 1
    first = truth["annotations"][1]
    assert detections[0]["bbox"] == pytest.approx(first["bbox"]) and detections[0]["image_id"] == first["image_id"]
