"""storage.masks: RLE round trips, box/area of known shapes, mask <-> polygon conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from storage.masks import (
    decode_rle,
    encode_rle,
    mask_to_polygons,
    polygons_to_rle,
    rle_area,
    rle_bbox,
    rle_object,
)


def _filled_polygon(width: int, height: int, points: list[tuple[float, float]]) -> np.ndarray:
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon(points, fill=1)
    return np.asarray(image, dtype=np.uint8)


def _iou(counts_a: str, counts_b: str, height: int, width: int) -> float:
    a = rle_object(counts_a, height, width)
    b = rle_object(counts_b, height, width)
    a["counts"], b["counts"] = a["counts"].encode(), b["counts"].encode()
    return float(mask_utils.iou([a], [b], [0])[0][0])


def test_encode_decode_round_trip_random_mask():
    rng = np.random.default_rng(0)
    mask = (rng.random((37, 53)) > 0.6).astype(np.uint8)
    counts = encode_rle(mask)
    assert isinstance(counts, str)
    assert np.array_equal(decode_rle(counts, 37, 53), mask)


def test_encode_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 3, 4), dtype=np.uint8))


@pytest.mark.parametrize("x0,y0,x1,y1", [(0, 0, 5, 5), (10, 3, 40, 29), (59, 47, 60, 48)])
def test_bbox_and_area_of_rectangles(x0, y0, x1, y1):
    mask = np.zeros((48, 60), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    counts = encode_rle(mask)
    assert rle_bbox(counts, 48, 60) == [x0, y0, x1, y1]
    assert rle_area(counts, 48, 60) == (x1 - x0) * (y1 - y0)


def test_rectangle_polygon_lies_on_pixel_edges():
    mask = np.zeros((40, 80), dtype=np.uint8)
    mask[10:30, 20:60] = 1
    (polygon,) = mask_to_polygons(mask)
    corners = sorted(zip(polygon[0::2], polygon[1::2]))
    assert corners == [(20, 10), (20, 30), (60, 10), (60, 30)]


@pytest.mark.parametrize("points", [
    [(10, 5), (70, 12), (50, 55), (5, 40)],
    [(40, 2), (78, 30), (60, 58), (20, 58), (2, 30)],
])
def test_polygons_of_filled_polygon_give_back_the_mask(points):
    mask = _filled_polygon(80, 60, points)
    original = encode_rle(mask)
    exact = mask_to_polygons(mask)
    assert len(exact) == 1
    assert _iou(polygons_to_rle(exact, 60, 80), original, 60, 80) > 0.99
    simplified = mask_to_polygons(mask, tolerance=1.0)
    assert len(simplified[0]) < len(exact[0])
    assert _iou(polygons_to_rle(simplified, 60, 80), original, 60, 80) > 0.9


def test_one_polygon_per_component_and_empty_mask():
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    mask[10:18, 12:19] = 1
    mask[0, 19] = 1  # a single pixel is a unit square
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    assert np.array_equal(decode_rle(polygons_to_rle(polygons, 20, 20), 20, 20), mask)
    assert mask_to_polygons(np.zeros((5, 5), dtype=np.uint8)) == []
    assert rle_area(polygons_to_rle([], 5, 5), 5, 5) == 0


def test_bad_polygon_and_tolerance_raise():
    with pytest.raises(ValueError, match="polygon"):
        polygons_to_rle([[1, 2, 3, 4]], 10, 10)
    with pytest.raises(ValueError, match="tolerance"):
        mask_to_polygons(np.ones((3, 3)), tolerance=-1)
