"""caption_similarity: captions below the minimum image-text similarity are dropped, every
similarity row is consumed by its caption, and every decision says why."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_tables
from filters.base import FilterContext, filter_spec
from filters.caption_similarity import CaptionSimilarityConfig, caption_similarity_filter
from storage.arrow_masks import valid_mask
from tests.filters.tables import caption, images, region, similarity, table

IMAGES = images(("a", 100, 100), ("b", 100, 100))


def _rows():
    good = caption("a", "a red circle", source="florence2")
    poor = caption("a", "a a a sand sand", source="florence2", granularity="detailed")
    twice = caption("b", "a blue square", source="sidecar_captions")
    unscored = caption("b", "an empty background", source="caption_composer", granularity="more_detailed")
    rows = [good, poor, twice, unscored,
            similarity("a", good, 0.62), similarity("a", poor, 0.48),
            similarity("b", twice, 0.40), similarity("b", twice, 0.55),  # the highest counts
            similarity("b", {"annotation_id": "gone", "granularity": "brief"}, 0.9),
            similarity("a", good, 0.3, source="other_scorer"),  # another source: not this rule's
            region("a", [1, 1, 20, 20], label="circle")]
    return rows


def _run(config: CaptionSimilarityConfig, rows=None):
    raw = table(rows or _rows())
    res = caption_similarity_filter(raw, config, FilterContext(images=IMAGES))
    ids = raw["annotation_id"].to_pylist()
    return raw, res, ids


def test_threshold_drops_low_captions_and_consumes_similarity_rows():
    rows = _rows()
    raw, res, ids = _run(CaptionSimilarityConfig(min_similarity=0.5), rows)
    reasons = res.reason.cast(pa.string()).to_pylist()
    good, poor, twice, unscored = (r["annotation_id"] for r in rows[:4])
    by_id = dict(zip(ids, zip(res.keep.tolist(), reasons, res.absorbed_by.tolist(), res.judged.tolist())))
    assert by_id[good][:2] == (True, None) and by_id[twice][:2] == (True, None)
    assert by_id[poor][:2] == (False, "image-text similarity 0.48 < min_similarity 0.5")
    assert by_id[unscored] == (True, None, -1, False)  # no similarity row: not judged
    for k in range(4, 8):
        keep, reason, into, judged = by_id[ids[k]]
        assert not keep and judged and reason == f"image-text similarity of caption {rows[k]['parent_id']}"
        assert ids[into] == rows[k]["parent_id"]  # absorbed by its caption
    assert by_id[ids[8]] == (False, "caption missing or dropped", -1, True)
    assert by_id[ids[9]][:2] == (True, None) and by_id[ids[10]][:2] == (True, None)
    assert res.agrees is False


def test_highest_similarity_of_a_caption_counts():
    rows = _rows()
    _, res, _ = _run(CaptionSimilarityConfig(min_similarity=0.56), rows)
    assert res.reason[2].as_py() == "image-text similarity 0.55 < min_similarity 0.56"
    assert res.keep.tolist()[:4] == [True, False, False, True]  # 0.62 kept; 0.48 and max(0.40, 0.55) dropped


def test_default_drops_no_caption_and_unscored_drop_policy():
    raw, res, ids = _run(CaptionSimilarityConfig())
    assert res.keep[:4].all() and not res.keep[4:9].any()
    _, res, _ = _run(CaptionSimilarityConfig(unscored="drop"))
    assert res.keep[:3].all() and not res.keep[3]
    assert res.reason[3].as_py() == "no image-text similarity (caption_similarity.unscored = drop)"


def test_similarity_rows_without_score_are_consumed_and_leave_the_caption_unscored():
    cap = caption("a", "a red circle")
    _, res, _ = _run(CaptionSimilarityConfig(min_similarity=0.9), [cap, similarity("a", cap, None)])
    assert res.keep.tolist() == [True, False] and res.judged.tolist() == [False, True]


def test_nothing_to_judge():
    _, res, _ = _run(CaptionSimilarityConfig(min_similarity=0.9), [caption("a", "a red circle"), region("a", [1, 1, 9, 9])])
    assert res.keep.all() and not res.judged.any()


def test_through_curation_the_caption_holds_its_similarity_rows_and_decisions_say_why():
    rows = _rows()
    config = CurationConfig(rules=("confidence", "caption_similarity"),
                            sections={"caption_similarity": CaptionSimilarityConfig(min_similarity=0.5)})
    curated, trails = curate_tables(table(rows), None, IMAGES, config, 0)
    kept = dict(zip(curated["annotation_id"].to_pylist(), curated["absorbed_ids"].to_pylist()))
    good = rows[0]["annotation_id"]
    assert kept[good] == [rows[4]["annotation_id"]]
    assert curated["agreement"].to_pylist()[curated["annotation_id"].to_pylist().index(good)] == 1  # material, not agreement
    assert rows[1]["annotation_id"] not in kept and not any(r["annotation_id"] in kept for r in rows[4:9])
    dropped = valid_mask(trails["dropped_by"])
    reasons = dict(zip(np.array(trails["annotation_id"].to_pylist())[dropped], trails["reason"].cast(pa.string())
                       .filter(pa.array(dropped)).to_pylist()))
    assert reasons[rows[1]["annotation_id"]].startswith("image-text similarity 0.48")
    assert set(reasons) == {r["annotation_id"] for r in rows[1:2] + rows[4:9]}  # confidence spares the scorer's rows


def test_registered_and_in_the_default_rules_after_text_complexity():
    spec = filter_spec("caption_similarity")
    assert spec.fn is caption_similarity_filter and spec.settings is CaptionSimilarityConfig
    rules = CurationConfig().rules
    assert rules.index("caption_similarity") == rules.index("text_complexity") + 1
    assert CurationConfig.from_dict({"caption_similarity": {"min_similarity": 0.6}}).caption_similarity.min_similarity == 0.6


@pytest.mark.parametrize("bad", [{"min_similarity": 1.5}, {"min_similarity": -0.1}, {"min_similarity": True},
                                 {"min_similarity": float("nan")}, {"unscored": "maybe"}, {"scorer_source": ""}])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ValueError, match=f"caption_similarity.{next(iter(bad))}"):
        CaptionSimilarityConfig(**bad)


def test_granularities_limit_the_checks_to_those_captions():
    rows = _rows()
    good, poor, twice, unscored = (r["annotation_id"] for r in rows[:4])
    raw, res, ids = _run(CaptionSimilarityConfig(min_similarity=0.5, granularities=["brief"], unscored="drop"), rows)
    by_id = dict(zip(ids, zip(res.keep.tolist(), res.judged.tolist())))
    assert by_id[poor] == (True, False)  # detailed: not checked, though its similarity is low
    assert by_id[unscored] == (True, False)  # more detailed and unscored: not dropped
    assert by_id[good] == (True, True) and by_id[twice] == (True, True)
    assert not any(res.keep.tolist()[4:8])  # the similarity rows are still consumed
    with pytest.raises(ValueError, match="caption_similarity.granularities"):
        CaptionSimilarityConfig(granularities=["huge"])
