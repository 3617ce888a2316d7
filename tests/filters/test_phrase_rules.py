"""Grounded-phrase rules: parent, span, blacklist, confidence and per-phrase NMS."""

from __future__ import annotations

import pytest

from filters.base import FilterContext
from filters.phrase_rules import (
    PhraseConfig,
    normalized_phrase,
    phrase_blacklist_filter,
    phrase_confidence_filter,
    phrase_nms_filter,
    phrase_parent_filter,
    phrase_span_filter,
)

from .tables import caption, phrase, region, table

CFG = PhraseConfig()


def test_parent_must_survive_or_be_previous():
    cap = caption("img", "a dog on grass")
    old = caption("img", "a brown dog", round_=0)
    gone = caption("img", "a cat")
    rows = [cap, phrase("img", cap, 2, 5, [0, 0, 9, 9]), phrase("img", gone, 2, 5, [0, 0, 9, 9]),
            phrase("img", old, 8, 11, [0, 0, 9, 9]), region("img", [0, 0, 9, 9])]
    previous = table([old])
    res = phrase_parent_filter(table(rows), CFG, FilterContext(previous=previous))
    assert res.keep.tolist() == [True, True, False, True, True]
    assert res.judged.tolist() == [False, True, True, True, False]
    res = phrase_parent_filter(table(rows), CFG, FilterContext())
    assert res.keep.tolist() == [True, True, False, False, True]


def test_span_inside_parent_and_matching():
    cap = caption("img", "un café près du lac")  # non-ASCII: spans are code points
    rows = [cap,
            phrase("img", cap, 3, 7, [0, 0, 9, 9]),                  # "café": good
            phrase("img", cap, 16, 30, [0, 0, 9, 9], text="lac"),     # outside the text
            phrase("img", cap, 3, 7, [0, 0, 9, 9], text="cafe"),      # differs
            phrase("img", cap, 5, 3, [0, 0, 9, 9], text="x"),         # inverted
            phrase("img", cap, 16, 19, [0, 0, 9, 9])]                 # "lac" at the very end: good
    t = table(rows)
    rows_no_span = dict(rows[1], span_start=None, annotation_id="nospan")
    res = phrase_span_filter(table(rows + [rows_no_span]), CFG, FilterContext())
    assert res.keep.tolist() == [True, True, False, False, False, True, False]
    reasons = res.reason.to_pylist()
    assert "outside" in reasons[2] and "differs" in reasons[3] and "outside" in reasons[4] and "missing" in reasons[6]
    assert len(phrase_span_filter(t.slice(0, 0), CFG, FilterContext()).keep) == 0
    assert phrase_span_filter(table([cap]), CFG, FilterContext()).judged.tolist() == [False]


def test_blacklist_normalisation_and_config():
    cap = caption("img", "It is the image of a dog and this cat")
    words = ["It", "the image", "a dog", "this", "cat", "this cat"]
    spans = [(cap["text"].find(w), cap["text"].find(w) + len(w)) for w in words]
    rows = [phrase("img", cap, s, e, [0, 0, 9, 9]) for s, e in spans]
    assert [r["text"] for r in rows] == words
    t = table(rows)
    assert normalized_phrase(t, CFG).to_pylist() == ["it", "image", "dog", "this", "cat", "cat"]
    res = phrase_blacklist_filter(t, CFG, FilterContext())
    assert res.keep.tolist() == [False, False, True, False, True, True]
    custom = phrase_blacklist_filter(t, PhraseConfig(blacklist=("dog",)), FilterContext())
    assert custom.keep.tolist() == [True, True, False, True, True, True]
    empty = phrase_blacklist_filter(table([dict(rows[2], text="  ", annotation_id="blank")]), CFG, FilterContext())
    assert empty.keep.tolist() == [False] and "empty" in empty.reason[0].as_py()


def test_confidence_threshold_from_config():
    cap = caption("img", "a dog")
    rows = [phrase("img", cap, 2, 5, [0, 0, 9, 9], score=s) for s in (0.1, 0.5, None)]
    assert phrase_confidence_filter(table(rows), CFG, FilterContext()).keep.tolist() == [False, True, True]
    strict = phrase_confidence_filter(table(rows), PhraseConfig(min_score=0.6), FilterContext())
    assert strict.keep.tolist() == [False, False, True]


def test_phrase_nms_per_phrase_and_parent():
    brief, detailed = caption("img", "a dog"), caption("img", "a dog sits", granularity="detailed")
    rows = [phrase("img", brief, 2, 5, [10, 10, 50, 50], score=0.9),
            phrase("img", brief, 2, 5, [11, 10, 51, 50], score=0.8, source="florence2"),  # duplicate
            phrase("img", brief, 0, 5, [10, 10, 50, 50], score=0.7),                     # "a dog" = "dog"
            phrase("img", detailed, 2, 5, [10, 10, 50, 50], score=0.6),                  # other caption
            phrase("img", brief, 2, 5, [60, 60, 90, 90], score=0.5)]                     # other box
    res = phrase_nms_filter(table(rows), CFG, FilterContext())
    assert res.keep.tolist() == [True, False, False, True, True]
    assert res.absorbed_by.tolist() == [-1, 0, 0, -1, -1] and res.agrees
    per_image = phrase_nms_filter(table(rows), PhraseConfig(nms_per_parent=False), FilterContext())
    assert per_image.keep.tolist() == [True, False, False, False, True]


def test_config_validation():
    with pytest.raises(ValueError, match="iou_threshold"):
        PhraseConfig(iou_threshold=2)
    with pytest.raises(ValueError, match="blacklist"):
        PhraseConfig(blacklist=("it", ""))
