"""ocr: RapidOCR with its shipped ONNX weights reads words rendered at known places."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from annotators.base import ImageBatch, ImageItem
from annotators.ocr import OCR, clockwise_quad, quad_bbox
from annotators.registry import build_annotator
from storage.schema import ANNOTATIONS, table_from_rows

TOLERANCE = 4.0  # pixels: RapidOCR grows detected text regions a little beyond the ink

#: per image: (width, height, [(word, (x, y))])
PAGES = [
    (480, 200, [("HELLO", (30, 30)), ("world", (260, 120))]),
    (360, 160, [("Data 42", (90, 60))]),
    (200, 120, []),  # blank: no rows
]


def _render(width, height, words):
    image = Image.new("RGB", (width, height), (235, 235, 225))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    boxes = []
    for word, xy in words:
        draw.text(xy, word, fill=(20, 20, 30), font=font)
        boxes.append((word, draw.textbbox(xy, word, font=font)))
    return image, boxes


@pytest.fixture(scope="module")
def pages():
    return [(f"page{i}",) + _render(w, h, words) for i, (w, h, words) in enumerate(PAGES)]


@pytest.fixture(scope="module")
def ocr():
    return build_annotator("ocr", num_threads=1)


@pytest.fixture(scope="module")
def rows(ocr, pages):
    items = [ImageItem(image_id=pid, image=image, width=image.width, height=image.height) for pid, image, _ in pages]
    return ocr.annotate(ImageBatch(items=items, round=5))


def test_builds_with_no_settings_and_loads_once():
    ocr = build_annotator("ocr")
    assert isinstance(ocr, OCR) and ocr._engine is None
    ocr.load()
    engine = ocr._engine
    ocr.load()
    assert ocr._engine is engine
    assert ocr.version.startswith("rapidocr-onnxruntime==1.")


def test_reads_every_rendered_word_inside_its_box(rows, pages):
    table_from_rows(rows, ANNOTATIONS)
    for page_id, image, boxes in pages:
        found = [row for row in rows if row["image_id"] == page_id]
        assert sorted(r["text"].lower() for r in found) == sorted(word.lower() for word, _ in boxes)
        for word, (bx0, by0, bx1, by1) in boxes:
            (row,) = [r for r in found if r["text"].lower() == word.lower()]
            x0, y0, x1, y1 = row["bbox"]
            assert x0 <= bx0 + TOLERANCE and y0 <= by0 + TOLERANCE
            assert x1 >= bx1 - TOLERANCE and y1 >= by1 - TOLERANCE
            # and not much bigger than the ink either
            assert x0 >= bx0 - 3 * TOLERANCE and y0 >= by0 - 3 * TOLERANCE
            assert x1 <= bx1 + 3 * TOLERANCE and y1 <= by1 + 3 * TOLERANCE
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height


def test_rows_are_ocr_regions_with_clockwise_quads(rows, ocr):
    assert rows
    for row in rows:
        assert (row["kind"], row["region_type"], row["source"], row["round"]) == ("region", "ocr", "ocr", 5)
        assert row["source_version"] == ocr.version
        assert 0.5 <= row["score"] <= 1.0
        quad = np.array(row["quad"]).reshape(4, 2)
        assert row["bbox"] == pytest.approx(quad_bbox(row["quad"]))
        # upright text: top-left, top-right, bottom-right, bottom-left
        (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = quad
        assert trx > tlx and brx > blx and bly > tly and bry > try_


def test_min_score_drops_lines_below_it(pages):
    strict = build_annotator("ocr", min_score=1.0, num_threads=1)
    _, image, _ = pages[1]
    item = ImageItem(image_id="p", image=image, width=image.width, height=image.height)
    assert strict.annotate(ImageBatch(items=[item])) == []


def test_clockwise_quad_orders_shuffled_and_rotated_points():
    upright = [(10, 5), (50, 5), (50, 20), (10, 20)]
    for shift in range(4):
        assert clockwise_quad(upright[shift:] + upright[:shift]) == [10, 5, 50, 5, 50, 20, 10, 20]
    assert clockwise_quad(list(reversed(upright))) == [10, 5, 50, 5, 50, 20, 10, 20]
    # tilted by ~30 degrees: corners keep their clockwise order
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = (np.array(upright, dtype=float) - 30) @ rot.T + 100
    quad = np.array(clockwise_quad(corners[[2, 0, 3, 1]])).reshape(4, 2)
    assert np.allclose(quad, corners)


@pytest.mark.parametrize("setting,value", [("min_score", 2), ("num_threads", -1), ("use_angle_cls", "yes")])
def test_bad_settings_raise_value_error_naming_them(setting, value):
    with pytest.raises(ValueError, match=setting):
        build_annotator("ocr", **{setting: value})
