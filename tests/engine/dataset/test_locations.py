"""Image locations: one typed location per image (the first ``ok`` row by shard and key) that
carries its sidecar meta, and the same location wherever the engine reads an image: training
examples, a release's image index, the curated set's quality against ground truth."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import ImageLocation, image_locations
from engine.release.build import ReleaseConfig, build_release
from engine.report.quality import curated_quality
from engine.retrain.examples import build_examples
from storage.catalog import Catalog
from storage.readers import READERS


def test_locations_carry_meta_and_release_quality_and_training_agree(report_root):
    root, truth = report_root["root"], report_root["truth"]
    locations = image_locations(root)
    images = {i["file_name"].split(".")[0]: i for i in truth["images"]}
    assert len(locations) == len(images) == 8
    for image_id, where in locations.items():
        image = images[where.key]
        assert isinstance(where, ImageLocation) and where.image_id == image_id
        assert where.meta["json"] == {"caption": image["caption"], "coco_id": image["id"]}  # the parsed sidecar
        assert (where.width, where.height) == (image["width"], image["height"]) and where.shard_format in READERS
    with Catalog(root, read_only=True) as catalog:  # an open catalog, or some ids: the same locations
        assert image_locations(catalog) == locations
    some = sorted(locations)[:3]
    assert image_locations(root, some) == {i: locations[i] for i in some}

    # training: every example points at its image's location
    examples, _ = build_examples(root, 1, 0.1, 0)
    assert {e.image_id for e in examples} == set(locations)
    for e in examples:
        where = locations[e.image_id]
        assert (e.shard, e.key, e.shard_format, e.width, e.height) == \
            (where.shard, where.key, where.shard_format, where.width, where.height)

    # a release's image index names the same shard and key (relative to the root), size and format
    release = build_release(root, 1, "locations-r1", ReleaseConfig(images="reference"))
    index = pq.read_table(Path(release["path"]) / "images/index.parquet").to_pylist()
    assert {row["image_id"] for row in index} == set(locations)
    for row in index:
        where = locations[row["image_id"]]
        assert os.path.normpath(root.path / row["source_shard"]) == where.shard and row["source_key"] == where.key
        assert (row["width"], row["height"], row["format"], row["num_bytes"]) == \
            (where.width, where.height, where.format, where.num_bytes)

    # quality matches every image to its ground truth by the sidecar's coco_id (by key without it)
    ids = coco_image_ids(truth, locations)
    assert ids == {image_id: images[where.key]["id"] for image_id, where in locations.items()}
    assert coco_image_ids(truth, {i: ImageLocation(**{**vars(w), "meta": {}}) for i, w in locations.items()}) == ids
    quality = curated_quality(root, 1, report_root["sample"] / "ground_truth.json")
    assert quality["images_matched"] == len(ids)
