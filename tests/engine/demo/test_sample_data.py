"""engine.demo.sample_data / synthetic_scene: determinism, COCO validity, masks match pixels."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from engine.demo.sample_data import SampleConfig, write_sample
from engine.demo.scenes import COLORS, render_scene
from storage.masks import rle_bbox


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    config = SampleConfig(images=6, images_per_shard=4, seed=7)
    write_sample(tmp_path / "a", config)
    write_sample(tmp_path / "b", config)
    write_sample(tmp_path / "c", SampleConfig(images=6, images_per_shard=4, seed=8))
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a")["shards/shard-00000.tar"] != _digests(tmp_path / "c")["shards/shard-00000.tar"]
    assert sorted(_digests(tmp_path / "a")) == ["ground_truth.json", "noisy_labels.json",
                                               "shards/shard-00000.tar", "shards/shard-00001.tar"]


def test_ground_truth_loads_in_pycocotools_and_masks_match_boxes(tmp_path):
    summary = write_sample(tmp_path, SampleConfig(images=5, seed=1))
    coco = COCO(summary["ground_truth"])
    assert len(coco.getImgIds()) == 5 and len(coco.getAnnIds()) == summary["annotations"] > 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann)
        assert mask.shape == (image["height"], image["width"])
        x, y, w, h = ann["bbox"]
        seg = ann["segmentation"]
        assert rle_bbox(seg["counts"], *seg["size"]) == [x, y, x + w, y + h]
        assert mask.sum() == ann["area"] > 0


def test_scene_masks_cover_exactly_the_drawn_colour():
    scene = render_scene(11)
    pixels = np.asarray(scene.image).astype(int)
    for obj in scene.objects:
        if obj.category == "text":
            continue
        inside = pixels[obj.mask]
        assert np.abs(inside - np.array(COLORS[obj.color])).max() <= 1  # the shape's own fill
        assert obj.color in scene.caption and obj.category in scene.caption


def test_noisy_labels_drop_and_jitter(tmp_path):
    summary = write_sample(tmp_path, SampleConfig(images=30, seed=2, drop=0.3, jitter=0.2))
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    noisy = json.loads((tmp_path / "noisy_labels.json").read_text())
    assert 0 < summary["noisy_annotations"] < summary["annotations"]
    by_id = {a["id"]: a for a in truth["annotations"]}
    moved = sum(a["bbox"] != by_id[a["id"]]["bbox"] for a in noisy["annotations"])
    assert moved == len(noisy["annotations"])  # every kept box is jittered
    COCO(str(tmp_path / "noisy_labels.json"))  # loads


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="drop"):
        SampleConfig(drop=1.5)
    with pytest.raises(ValueError, match="images"):
        SampleConfig(images=0)
