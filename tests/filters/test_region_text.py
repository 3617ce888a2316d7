"""Choosing a region's text from the region captioner / matcher candidates."""

from __future__ import annotations

import pytest

from filters.base import FilterContext
from filters.region_text import RegionTextConfig, region_text_filter

from .tables import candidate, caption, region, table


def _rows():
    dog = region("img", [10, 10, 50, 50], label="dog")
    cat = region("img", [60, 60, 90, 90], label="cat")
    lone = region("img", [0, 0, 9, 9], label="cup")
    gone = region("img", [5, 5, 40, 40], label="bird")  # not in the table: dropped earlier
    return [
        dog, cat, lone, caption("img", "a dog"),
        candidate("img", dog, "a brown dog", source="region_captioner"),
        candidate("img", dog, "a dog lying down", source="region_captioner"),
        candidate("img", dog, "a brown dog", source="region_text_matcher", score=0.6),
        candidate("img", cat, "a grey cat", source="region_captioner", score=0.4),
        candidate("img", cat, "a cat", source="region_captioner", score=0.2),
        candidate("img", gone, "a bird", source="region_text_matcher", score=0.9),
    ]


def test_matcher_choice_replaces_text_and_candidates_are_absorbed():
    rows = _rows()
    res = region_text_filter(table(rows), RegionTextConfig(), FilterContext())
    assert res.judged.tolist() == [False] * 4 + [True] * 6
    assert res.keep.tolist() == [True] * 4 + [False] * 6
    assert res.absorbed_by.tolist() == [-1, -1, -1, -1, 0, 0, 0, 1, 1, -1] and not res.agrees
    texts = res.replace["text"].to_pylist()
    assert texts[:4] == ["a brown dog", "cat", "cup", "a dog"]  # cat: no matcher row, keep_label
    reasons = res.reason.to_pylist()
    assert reasons[6].startswith("text chosen") and reasons[4].startswith("candidate text not chosen")
    assert "missing or dropped" in reasons[9]


def test_fallback_best_score_from_config():
    res = region_text_filter(table(_rows()), RegionTextConfig(fallback="best_score"), FilterContext())
    assert res.replace["text"].to_pylist()[:3] == ["a brown dog", "a grey cat", "cup"]
    other = region_text_filter(table(_rows()), RegionTextConfig(matcher_source="region_captioner"), FilterContext())
    texts = other.replace["text"].to_pylist()
    assert texts[0] in ("a brown dog", "a dog lying down") and texts[1] == "a grey cat"
    assert other.reason[6].as_py().startswith("candidate text not chosen")  # the real matcher lost its role
    with pytest.raises(ValueError, match="fallback"):
        RegionTextConfig(fallback="random")


def test_no_candidates_and_empty():
    t = table([region("img", [0, 0, 9, 9])])
    res = region_text_filter(t, RegionTextConfig(), FilterContext())
    assert res.judged.tolist() == [False] and res.keep.tolist() == [True] and not res.replace
    assert len(region_text_filter(table([]), RegionTextConfig(), FilterContext()).keep) == 0


def test_a_region_takes_its_own_producers_description_without_a_matcher():
    box = region("img", [10, 10, 50, 50], source="florence2", label="triangle", score=0.8)
    other = region("img", [60, 60, 90, 90], source="detector", label="circle")
    rows = [box, other,
            candidate("img", box, "a large red triangle", source="florence2", score=0.3),
            candidate("img", box, "a red thing", source="region_captioner", score=0.9),
            candidate("img", other, "a blue circle", source="florence2", score=0.9)]  # not the circle's producer
    res = region_text_filter(table(rows), RegionTextConfig(), FilterContext())
    assert res.replace["text"].to_pylist()[:2] == ["a large red triangle", "circle"]
    assert res.keep.tolist() == [True, True, False, False, False]
    assert res.reason.to_pylist()[2].startswith("text chosen for region")
