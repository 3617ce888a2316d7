"""Evaluation metrics: the agreement measures (word F1, label + IoU matching) and the image
dependence (0 for a model that cannot see). COCO matching and mAP: tests/engine/dataset."""

from __future__ import annotations

import pytest
import torch

from engine.dataset.locations import image_locations
from engine.retrain.evaluate import image_dependence, matched_pairs, word_f1
from engine.retrain.examples import Example
from tests.engine.retrain.data import make_root


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("eval"), images=8, seed=4, per_shard=4)
    return root, truth, image_locations(root)


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
                for a in truth["annotations"] if a["image_id"] == keys[where.key]]
        for task, prompt, target in image_targets(rows, where.width, where.height, ("OD",)):
            examples.append(Example(image_id, task, prompt, target, where.width, where.height, where.shard,
                                    where.key, where.shard_format, "validation"))
    assert len(examples) >= 4
    for model_dir in (build_checkpoint(tmp_path / "tiny", image_size=32, seed=2),
                      build_demo_checkpoint(tmp_path / "s128", seed=0)):
        model, processor = load_model(model_dir, torch.device("cpu"))
        seeing = image_dependence(model, processor, examples, batch_size=4)
        blind = image_dependence(_blind(model), processor, examples, batch_size=4)
        print(model_dir, seeing, blind)
        assert seeing > 1e-3 and blind < 1e-6
        assert image_dependence(model, processor, examples[:1]) is None  # one image: nothing to swap
