"""coco_labels: human COCO labels matched to images by file name or COCO id, with masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from storage.masks import decode_rle, polygons_to_rle, rle_area
from storage.schema import ANNOTATIONS, table_from_rows
from tests.annotators.builders_vision import write_coco_json


@pytest.fixture()
def labels(tmp_path):
    return write_coco_json(tmp_path / "labels.json", ["train/img0.png", "img1.jpg", "img2.png"])


def _item(image_id, width=64, height=48, **kwargs):
    return ImageItem(image_id=image_id, image=Image.new("RGB", (width, height)), width=width, height=height, **kwargs)


def _by_text(rows):
    return {row["text"]: row for row in rows}


def test_rows_at_the_labelled_size(labels):
    annotator = build_annotator("coco_labels", path=str(labels))
    rows = annotator.annotate(ImageBatch(items=[_item("a", file_name="train/img0.png")], round=4))
    table_from_rows(rows, ANNOTATIONS)
    found = _by_text(rows)
    assert sorted(found) == ["cat", "dog", "stop sign"]
    for row in rows:
        assert (row["kind"], row["region_type"], row["source"], row["round"]) == ("region", "object", "coco_labels", 4)
        assert row.get("score") is None
        assert len(row["source_version"]) == 16
    assert found["cat"]["bbox"] == [4, 6, 24, 16]  # xywh [4, 6, 20, 10] -> x0 y0 x1 y1
    assert "mask_rle" not in found["cat"] and "polygons" not in found["cat"]
    assert found["dog"]["polygons"] == [[30, 8, 60, 8, 45, 40]]
    dog = decode_rle(found["dog"]["mask_rle"], 48, 64)
    assert dog[20, 45] == 1 and dog[10, 5] == 0 and dog[38, 31] == 0  # inside / outside the triangle
    square = decode_rle(found["stop sign"]["mask_rle"], 48, 64)
    assert square.sum() == 200 and square[20:30, 2:22].all()
    (outline,) = found["stop sign"]["polygons"]
    assert sorted(zip(outline[0::2], outline[1::2])) == [(2, 20), (2, 30), (22, 20), (22, 30)]


def test_matching_by_basename_key_and_coco_id(labels):
    annotator = build_annotator("coco_labels", path=str(labels))
    items = [
        _item("by-basename", file_name="/data/shard/img0.png"),
        _item("by-key", key="folder/img1"),  # img1 + .jpg
        _item("by-id", context={"meta": json.dumps({"coco_id": 102})}),
        _item("by-id-dict", file_name="img1.jpg", context={"meta": {"coco_id": "100"}}),  # id wins over name
        _item("unmatched", file_name="other.png", key="other"),
    ]
    rows = annotator.annotate(ImageBatch(items=items))
    counts = {item.image_id: sum(r["image_id"] == item.image_id for r in rows) for item in items}
    assert counts == {"by-basename": 3, "by-key": 3, "by-id": 3, "by-id-dict": 3, "unmatched": 0}
    assert annotator.match(items[3]) == 100 and annotator.match(items[1]) == 101


def test_coordinates_scale_to_the_item_size(labels):
    annotator = build_annotator("coco_labels", path=str(labels))
    rows = annotator.annotate(ImageBatch(items=[_item("big", 128, 144, file_name="img2.png")]))  # x2, x3
    found = _by_text(rows)
    assert found["cat"]["bbox"] == [8, 18, 48, 48]
    assert found["dog"]["polygons"] == [[60, 24, 120, 24, 90, 120]]
    assert found["dog"]["mask_rle"] == polygons_to_rle([[60, 24, 120, 24, 90, 120]], 144, 128)
    square = decode_rle(found["stop sign"]["mask_rle"], 144, 128)
    assert rle_area(found["stop sign"]["mask_rle"], 144, 128) == 200 * 6
    assert square[60:90, 4:44].all()
    for row in rows:
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 144


def test_uncompressed_rle_segmentation(tmp_path):
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    counts = []  # uncompressed COCO RLE: column-major run lengths starting with zeros
    flat, value, run = mask.flatten(order="F"), 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "c.png", "width": 12, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [3, 2, 6, 4], "iscrowd": 1, "area": 24,
                         "segmentation": {"size": [10, 12], "counts": counts}}],
        "categories": [{"id": 7, "name": "crowd"}],
    }))
    (row,) = build_annotator("coco_labels", path=str(path)).annotate(
        ImageBatch(items=[_item("c", 12, 10, file_name="c.png")]))
    assert np.array_equal(decode_rle(row["mask_rle"], 10, 12), mask)
    rle = mask_utils.frPyObjects(row["polygons"], 10, 12)
    assert np.array_equal(mask_utils.decode(mask_utils.merge(rle)), mask)


def test_version_is_the_file_hash(labels, tmp_path):
    first = build_annotator("coco_labels", path=str(labels)).version
    other = write_coco_json(tmp_path / "other.json", ["x.png"])
    assert build_annotator("coco_labels", path=str(other)).version != first
    assert build_annotator("coco_labels", path=str(labels)).version == first


def test_missing_or_bad_file(tmp_path):
    missing = tmp_path / "nope" / "labels.json"
    with pytest.raises(AnnotatorError, match=str(missing)):
        build_annotator("coco_labels", path=str(missing))
    with pytest.raises(ValueError, match="path"):
        build_annotator("coco_labels")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": "nope"}))
    annotator = build_annotator("coco_labels", path=str(bad))
    with pytest.raises(AnnotatorError, match="bad.json"):
        annotator.load()
