"""storage.geometry helpers and the geometry / image rules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filters.base import FilterContext
from filters.geometry import GeometryConfig, geometry_filter, image_filter
from storage import geometry as geo
from storage.schema import annotation_row

from .tables import caption, images, random_boxes, region, table
from .test_nms import py_iou


def test_iou_matrix_and_pairwise_match_python():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    m = geo.box_iou_matrix(a, b)
    assert m.shape == (7, 5)
    assert np.allclose(m, [[py_iou(x, y) for y in b] for x in a])
    assert np.allclose(geo.pairwise_iou(a[:5], b), np.diag(m[:5]))
    assert geo.box_iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)
    assert geo.pairwise_iou(np.zeros((1, 4)), np.zeros((1, 4))).tolist() == [0.0]


def test_clip_quads_and_arrow_round_trip():
    square = np.array([[0, 0, 10, 0, 10, 10, 0, 10]], float)  # clockwise on screen
    bowtie = np.array([[0, 0, 10, 10, 10, 0, 0, 10]], float)
    assert geo.quad_area(square).tolist() == [100.0]
    assert geo.quad_is_convex(square).tolist() == [True] and geo.quad_is_convex(bowtie).tolist() == [False]
    assert geo.quad_bounds(square).tolist() == [[0, 0, 10, 10]]
    column = pa.array([[1, 2, 3, 4], None, [5, 6, 7, 8]], pa.list_(pa.float32()))
    back = geo.boxes_to_arrow(geo.boxes_from_arrow(column))
    assert back.type == column.type and back.to_pylist() == column.to_pylist()
    fixed = pa.array([[1, 2, 3, 4], None], pa.list_(pa.float32(), 4))
    assert geo.boxes_to_arrow(geo.boxes_from_arrow(fixed)).to_pylist() == fixed.to_pylist()
    short = geo.boxes_from_arrow(pa.array([[1, 2, 3], [1, 2, 3, 4]], pa.list_(pa.float32())))
    assert np.isnan(short[0]).all() and short[1].tolist() == [1, 2, 3, 4]



def test_list_decoding_matches_a_per_row_reference_on_sliced_chunked_columns():
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(300):
        kind = rng.integers(0, 5)
        rows.append(None if kind == 0 else [float(v) for v in rng.normal(size=3 if kind == 1 else 4)])
    rows[7] = [1.0, None, 3.0, 4.0]  # a null value inside a box reads as NaN
    column = pa.chunked_array([pa.array(rows[:120], pa.list_(pa.float32())).slice(5, 100),
                               pa.array(rows[120:], pa.list_(pa.float32()))])
    got = geo.boxes_from_arrow(column)
    flat = rows[5:105] + rows[120:]
    assert got.shape == (len(flat), 4)
    for row, box in zip(flat, got):
        if row is None or len(row) != 4:
            assert np.isnan(box).all()
        else:
            expected = np.array([np.nan if v is None else v for v in row], np.float32).astype(np.float64)
            assert np.array_equal(box, expected, equal_nan=True)
    assert geo.boxes_from_arrow(pa.chunked_array([], pa.list_(pa.float32()))).shape == (0, 4)


def test_as_fixed_size_converts_regular_columns_only_and_reads_back_the_same():
    rows = [[1.0, 2.0, 3.0, 4.0], None, [5.0, 6.0, 7.0, 8.0], [0.5, None, 2.0, 3.0]]
    column = pa.chunked_array([pa.array(rows[:3], pa.list_(pa.float32())), pa.array(rows[3:], pa.list_(pa.float32()))])
    fixed = geo.as_fixed_size(column, 4)
    assert fixed.type == pa.list_(pa.float32(), 4) and fixed.to_pylist() == rows
    sliced = fixed.combine_chunks().slice(1)  # a view with an offset: nulls and null values read as NaN
    assert np.array_equal(geo.boxes_from_arrow(sliced), geo.boxes_from_arrow(column)[1:], equal_nan=True)
    assert np.isnan(geo.boxes_from_arrow(fixed)[1]).all()
    ragged = pa.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]], pa.list_(pa.float32()))
    assert geo.as_fixed_size(ragged, 4) is ragged  # a wrong length keeps the variable list (read as NaN)
    nulls = pa.nulls(3, pa.list_(pa.float32()))
    assert geo.as_fixed_size(nulls, 8) is nulls  # all null: no values to allocate


def test_clipped_boxes_patch_a_fixed_size_column_and_keep_its_nulls():
    ctx = FilterContext(images=images(("img", 100, 80)))
    rows = [region("img", [10, 10, 50, 50]), caption("img", "a dog"), region("img", [-10, 60, 40, 90]),
            region("img", [20, 20, 60, 95]), region("img", [1, 1, 30, 30])]
    plain = table(rows)
    for offset in (0, 1):
        sub = plain.slice(offset)
        fixed = sub.set_column(sub.schema.get_field_index("bbox"), "bbox", geo.as_fixed_size(sub["bbox"], 4))
        res_plain = geometry_filter(sub, GeometryConfig(), ctx)
        res_fixed = geometry_filter(fixed, GeometryConfig(), ctx)
        patched = res_fixed.replace["bbox"]
        assert patched.type == pa.list_(pa.float32(), 4)
        assert patched.to_pylist() == res_plain.replace["bbox"].to_pylist()
        boxes = patched.to_pylist()
        assert boxes[2 - offset] == [0, 60, 40, 80] and boxes[3 - offset] == [20, 20, 60, 80]
        assert res_fixed.keep.tolist() == res_plain.keep.tolist()


def _ocr(image, quad, text="hello", bbox=None):
    return annotation_row(image_id=image, round_=0, source="ocr", source_version="ocr-v1", kind="region",
                          region_type="ocr", text=text, quad=[float(v) for v in quad], bbox=bbox, score=0.9)


def test_geometry_rules():
    ctx = FilterContext(images=images(("img", 100, 80)))
    rows = [
        region("img", [10, 10, 50, 50]),          # 0 fine
        region("img", [-10, 60, 40, 90]),         # 1 partly outside: clipped to y1 = 80, kept
        region("img", [90, 70, 200, 200]),        # 2 mostly outside
        region("img", [10, 10, 11, 50]),          # 3 thin (1 px wide)
        region("img", [10, 10, 13, 13]),          # 4 small (9 px^2)
        region("img", [0, 10, 100, 13]),          # 5 elongated (aspect 33)
        region("img", [50, 50, 10, 10]),          # 6 inverted
        region("img", [float("nan"), 0, 10, 10]),  # 7 non-finite
        _ocr("img", [10, 10, 60, 10, 60, 30, 10, 30]),    # 8 good quad, bbox filled from it
        _ocr("img", [10, 10, 20, 20, 30, 30, 40, 40]),    # 9 collinear: degenerate
        _ocr("img", [10, 10, 50, 50, 50, 10, 10, 20]),    # 10 bow-tie
        caption("img", "a dog"),                  # 11 not judged
    ]
    res = geometry_filter(table(rows), GeometryConfig(), ctx)
    assert res.keep.tolist() == [True, True, False, False, False, False, False, False, True, False, False, True]
    assert res.judged.tolist() == [True] * 11 + [False]
    reasons = res.reason.to_pylist()
    for i, word in [(2, "inside"), (3, "side"), (4, "area"), (5, "aspect"), (6, "inverted"), (7, "non-finite"),
                    (9, "degenerate"), (10, "convex")]:
        assert word in reasons[i], (i, reasons[i])
    boxes = res.replace["bbox"].to_pylist()
    assert boxes[1] == [0, 60, 40, 80] and boxes[8] == [10, 10, 60, 30] and boxes[11] is None


def test_thresholds_come_from_config():
    ctx = FilterContext(images=images(("img", 100, 80)))
    t = table([region("img", [10, 10, 13, 13]), region("img", [0, 10, 100, 13]), region("img", [90, 70, 200, 200])])
    strict = geometry_filter(t, GeometryConfig(), ctx).keep
    loose = geometry_filter(t, GeometryConfig(min_area=1, max_aspect_ratio=50, min_inside_fraction=0.0), ctx).keep
    assert strict.tolist() == [False, False, False] and loose.tolist() == [True, True, True]
    with pytest.raises(ValueError, match="max_aspect_ratio"):
        GeometryConfig(max_aspect_ratio=0.5)


def test_image_rule_empty_and_one_row():
    ctx = FilterContext(images=images(("img", 100, 80)))
    t = table([region("img", [0, 0, 10, 10]), region("gone", [0, 0, 10, 10]), caption("gone", "a cat")])
    res = image_filter(t, GeometryConfig(), ctx)
    assert res.keep.tolist() == [True, False, False]
    assert len(geometry_filter(table([]), GeometryConfig(), ctx).keep) == 0
    assert image_filter(table([region("img", [0, 0, 10, 10])]), GeometryConfig(), FilterContext()).keep.tolist() == [False]


def test_reason_where_builds_the_same_strings_every_way():
    from filters.base import reason_where

    drop = np.array([True, False, True, True, False])
    fast = reason_where(drop, "too small ✓")
    assert fast.to_pylist() == ["too small ✓", None, "too small ✓", "too small ✓", None]
    assert pa.types.is_dictionary(fast.type)  # one text: no string is copied per row
    assert fast.cast(pa.string()).equals(reason_where(drop, lambda rows: pa.array(["too small ✓"] * len(rows))))
    layered = reason_where(np.array([False, True, True, False, False]), "second", fast)
    assert layered.to_pylist() == ["too small ✓", "second", "second", "too small ✓", None]
    assert reason_where(np.zeros(3, bool), "x").null_count == 3


def _reference_box(box, width, height, config):
    """The geometry rule for one box, in plain Python: (reason word or None, clipped box)."""
    x0, y0, x1, y1 = box
    if not all(np.isfinite(v) for v in box):
        return "non-finite", box
    if not (x1 > x0 and y1 > y0):
        return "inverted", box
    before = (x1 - x0) * (y1 - y0)
    x0, x1 = (min(max(v, 0.0), width) for v in (x0, x1))
    y0, y1 = (min(max(v, 0.0), height) for v in (y0, y1))
    w, h = x1 - x0, y1 - y0
    if not w * h / before >= config.min_inside_fraction:
        return "inside", [x0, y0, x1, y1]
    if not min(w, h) >= config.min_side:
        return "side", [x0, y0, x1, y1]
    if not w * h >= config.min_area:
        return "area", [x0, y0, x1, y1]
    if not max(w / h, h / w) <= config.max_aspect_ratio:
        return "aspect", [x0, y0, x1, y1]
    return None, [x0, y0, x1, y1]


@pytest.mark.parametrize("seed", range(4))
def test_box_checks_match_a_per_row_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    sizes = [("a", 100, 80), ("b", 640, 480)]
    corner = rng.uniform(-60, 650, (n, 2)).round(rng.integers(0, 2))  # whole pixels make exact edge cases
    extent = rng.choice([0.0, 1.0, 2.0, 3.0, 8.0, 60.0, 300.0], size=(n, 2)) * rng.choice([1, 1, 1, -1], size=(n, 2))
    boxes = np.concatenate([corner, corner + extent], axis=1)
    boxes[rng.random(n) < 0.05, rng.integers(0, 4)] = np.nan
    image = rng.choice(["a", "b", "unknown"], n, p=[0.45, 0.45, 0.1])
    config = GeometryConfig(min_side=float(rng.choice([0.0, 2.0])), max_aspect_ratio=float(rng.choice([1.0, 20.0])))
    rows = [region(str(i), [float(v) for v in b]) for i, b in zip(image, boxes)]
    res = geometry_filter(table(rows), config, FilterContext(images=images(*sizes)))
    limits = {name: (w, h) for name, w, h in sizes}
    clipped = res.replace["bbox"].to_pylist() if "bbox" in res.replace else [list(b) for b in boxes]
    for i, (box, name) in enumerate(zip(boxes.tolist(), image)):
        width, height = limits.get(name, (np.inf, np.inf))
        word, expected = _reference_box(np.float32(box).astype(float).tolist(), width, height, config)
        reason = res.reason[i].as_py()
        assert (reason is None) == (word is None) and (word is None or word in reason), (box, name, reason, word)
        if word is None:
            assert np.allclose(clipped[i], expected), (box, clipped[i], expected)
