"""Hostile review imports and releases (issue 30: classes 3b, 4, 9 and part of 10).

The cases of ``cases_review_release`` run here through ``engine.cli.main`` in this process (the
ones that could take a process down, memory bombs of pycocotools, through the real ``fld`` in a
child with capped memory), each expected to be ``ok``: refused with one line naming the file,
the task and the field and nothing written, or handled correctly. The bounds underneath are
tested directly: JSON depth and size before parsing, polygons before rasterising, strict JSON
in releases.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.release.exports import NonFiniteValue, dumps
from storage.bounded_json import JsonBoundsError, load_json, nesting_depth
from storage.masks import MAX_POLYGON_VERTICES, decode_rle, polygons_to_rle, rle_area
from tests.hostile.cases_review_release import (
    CASES,
    IMPORT_PROBES,
    build_base,
    in_process,
    run_case,
    subprocess_runner,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("hostile-review"))


@pytest.mark.parametrize("name", sorted(IMPORT_PROBES))
def test_a_bad_export_is_refused_with_one_line_naming_file_task_and_field(base, tmp_path, name):
    runner = subprocess_runner if IMPORT_PROBES[name].isolate else in_process
    assert run_case(name, base, tmp_path, runner) == "ok"


@pytest.mark.parametrize("name", sorted(CASES))
def test_imports_curation_and_releases_handle_the_case(base, tmp_path, name):
    assert run_case(name, base, tmp_path, in_process) == "ok"


# ------------------------------------------------------------------------- JSON read within bounds
@pytest.mark.parametrize("text, depth", [
    ("[]", 1),
    ('{"a": [1, {"b": "]]]"}]}', 3),  # brackets inside a string do not count
    ('["[[[[", "\\"[[[", "\\\\"]', 1),  # nor after an escaped quote, and an escaped backslash ends no string
    ('"{{{{"', 0),
    ("[" * 50 + "]" * 50, 50),
])
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert nesting_depth(text.encode()) == depth


@pytest.mark.parametrize("content, words", [
    (b"[" * 200_000 + b"]" * 200_000, "nested 200,000 levels"),
    (b'{"a": "' + b"x" * 2000 + b'"}', "more than the 1,000"),
    (b'[{"a": "\xff\xfe"}]', "not UTF-8"),
    (b"[1, 2", "not JSON"),
])
def test_a_file_past_the_bounds_is_one_line_naming_it(tmp_path, content, words):
    path = tmp_path / "export.json"
    path.write_bytes(content)
    with pytest.raises(JsonBoundsError, match=words) as error:
        load_json(path, max_bytes=1000 if b"x" * 2000 in content else 10 << 20, max_depth=16)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_within_the_bounds_reads_as_json(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"data": {"x": [1, 2, {"y": "[[["}]}}]))
    assert load_json(path, 1 << 20, 16)[1] == [{"data": {"x": [1, 2, {"y": "[[["}]}}]


# ----------------------------------------------------------------------- polygons before rasterising
@pytest.mark.parametrize("polygon, words", [
    ([float("nan"), 1, 10, 10, 20, 5], "finite"),
    ([float("inf"), 1, 10, 10, 20, 5], "finite"),
    ([0, 0, 5, 5, None, 2], "numbers"),
    ([0.0, 1.0] * (MAX_POLYGON_VERTICES + 1), "vertices"),
    ([v for k in range(25_000) for v in (0.0, k % 100, 99.0, k % 100)], "outline"),  # zig-zags across
])
def test_a_polygon_that_would_blow_up_rasterising_is_refused(polygon, words):
    with pytest.raises(ValueError, match=words):
        polygons_to_rle([polygon], 100, 100)


@pytest.mark.parametrize("far", [[-1e6, 1, 1e9, 5, 30, 1e12], [-1e300, -1e300, 1e300, -1e300, 1e300, 1e300, -1e300, 1e300]])
def test_a_polygon_far_outside_the_image_is_clipped_to_it(far):
    mask = decode_rle(polygons_to_rle([far], 40, 50), 40, 50)
    assert mask.shape == (40, 50) and 0 < mask.sum() <= 40 * 50


def test_a_polygon_within_the_margin_is_drawn_as_pycocotools_draws_it():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(5, 60, size=2))
        n = int(rng.integers(3, 9))
        polygon = np.stack([rng.uniform(-0.9 * width, 1.9 * width, n),
                            rng.uniform(-0.9 * height, 1.9 * height, n)], 1).ravel().tolist()
        theirs = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
        assert rle_area(polygons_to_rle([polygon], height, width), height, width) == mask_utils.area(theirs)
        assert polygons_to_rle([polygon], height, width) == theirs["counts"].decode("ascii")


# ------------------------------------------------------------------------------- strict release JSON
@pytest.mark.parametrize("value, where", [
    ({"annotations": [{"fld_annotation_id": "a1", "area": float("nan")}]}, "annotations[0].area (annotation a1)"),
    ({"images": [{"width": float("inf")}]}, "images[0].width"),
    ([1.0, [2.0, float("-inf")]], "[1][1]"),
])
def test_release_json_refuses_non_finite_numbers_naming_where(value, where):
    with pytest.raises(NonFiniteValue, match="engine bug") as error:
        dumps(value)
    assert where in str(error.value)
