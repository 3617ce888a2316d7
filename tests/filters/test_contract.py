"""One contract over every registered filter: called directly on plain columns, and run by
curation (in the working form when the rule opts into it), it keeps, drops, explains,
absorbs and rewrites exactly the same rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_tables
from engine.curate.text_metrics import metrics_function
from filters.base import FilterContext, filter_names, filter_spec, settings_sections
from filters.caption_similarity import CaptionSimilarityConfig
from filters.human_review import ReviewState
from filters.text_complexity import TextComplexityConfig
from storage.arrow_masks import valid_mask
from storage.schema import ANNOTATIONS
from tests.filters.tables import candidate, caption, images, phrase, region, similarity, table

IMAGES = images(("img-a", 100, 100), ("img-b", 200, 150), ("img-a", 100, 100))  # an id listed twice


def _rows() -> list[dict]:
    """Rows that every built-in rule has something to decide on."""
    brief = caption("img-a", "a dog runs on green grass", source="florence2", score=0.8)
    busy = caption("img-b", "a cup, a plate, a fork and a knife", source="sidecar_captions")
    dog = region("img-a", [10, 10, 60, 60], source="detector", label="dog", score=0.95)
    cat = caption("img-a", "the cat", source="florence2", granularity="detailed", score=0.1)
    ocr_quad = [5.0, 5.0, 95.0, 5.0, 95.0, 30.0, 5.0, 30.0]
    rows = [
        brief, busy, dog, cat,
        similarity("img-a", brief, 0.71), similarity("img-a", cat, 0.42),  # caption_similarity: kept / dropped
        similarity("img-b", {"annotation_id": "gone", "granularity": "brief"}, 0.9),  # its caption is missing
        caption("img-unknown", "a man holds a red umbrella", source="florence2"),
        region("img-a", [12, 11, 61, 62], source="florence2", label="dog", score=0.7),  # NMS across sources
        region("img-a", [11, 10, 59, 61], source="detector", label="Dog ", score=0.5),  # NMS within source
        region("img-a", [70, 70, 98, 99], source="detector", label="cat", score=0.2),  # low confidence
        region("img-a", [-30, -30, 40, 40], source="coco_labels", label="cat", score=None),  # clipped
        region("img-a", [90, 90, 300, 300], source="coco_labels", label="cat", score=None),  # mostly outside
        region("img-a", [40, 40, 41, 80], source="detector", label="pole", score=0.9),  # thin
        region("img-a", [50, 50, 40, 60], source="detector", label="cat", score=0.9),  # inverted
        region("img-b", [20, 20, 120, 100], source="detector", label="cat", score=0.9),
        region("img-b", [22, 21, 118, 101], source="florence2", label="cat", score=0.6),
        region("img-unknown", [1, 1, 20, 20], source="detector", label="cat", score=0.9),
        region("img-b", None, source="ocr", label="SALE", region_type="ocr", score=0.9, quad=ocr_quad),
        region("img-b", None, source="ocr", label="BENT", region_type="ocr", score=0.9,
               quad=[5.0, 5.0, 95.0, 40.0, 10.0, 10.0, 90.0, 50.0]),
        candidate("img-a", dog, "a brown dog", source="region_text_matcher", score=0.8),
        candidate("img-a", dog, "dog sitting", source="region_captioner", score=0.6),
        candidate("img-a", {"annotation_id": "missing", "region_type": "object"}, "orphan", source="region_captioner"),
        phrase("img-a", brief, 2, 5, [10, 10, 60, 60], score=0.9),
        phrase("img-a", brief, 2, 5, [11, 11, 60, 61], score=0.8),  # phrase NMS
        phrase("img-a", brief, 20, 25, [0, 60, 100, 100], score=0.1),  # low score
        phrase("img-a", brief, 0, 3, [10, 10, 60, 60], text="it", score=0.9),  # span mismatch / blacklist
        phrase("img-a", brief, 19, 24, [0, 60, 100, 100], text="grass", score=0.9),  # span mismatch
        phrase("img-a", {"annotation_id": "gone", "text": "x" * 40, "granularity": "brief"}, 0, 3, [1, 1, 9, 9]),
        region("img-b", [21, 20, 119, 100], source="human", label="dog", score=1.0, version="review-2"),  # a person's fix
        region("img-b", [60, 60, 90, 90], source="human", label="cup", score=1.0, version="review-1"),  # superseded
    ]
    return rows


def _reviews(rows: list[dict]) -> ReviewState:
    """A review of img-b: the caption kept, the florence2 cat corrected to the person's dog,
    the detector cat deleted; the OCR lines were never kept (a later model's output)."""
    def find(**want) -> str:
        return next(r["annotation_id"] for r in rows if all(r.get(k) == v for k, v in want.items()))
    fixed = find(source="human", source_version="review-2")
    return ReviewState(latest={"img-b": "review-2"}, kept=frozenset({find(image_id="img-b", kind="caption")}),
                       corrected={find(image_id="img-b", source="florence2", kind="region"): fixed},
                       deleted=frozenset({find(image_id="img-b", source="detector", kind="region")}),
                       fresh=frozenset({"img-b"}))


def plain_table(raw: pa.Table) -> pa.Table:
    """The plain columns a filter is given: ``ANNOTATIONS`` + ``label`` (a top-level region's text)."""
    is_label = pc.and_(pc.equal(raw["kind"], "region"), pc.is_null(raw["parent_id"]))
    label = pc.if_else(pc.fill_null(is_label, False), raw["text"], pa.scalar(None, pa.string()))
    return raw.append_column("label", label)


@pytest.fixture(scope="module")
def setting(tiny_spacy_pipeline):
    raw = table(_rows())
    config = CurationConfig(sections={"text": TextComplexityConfig(pipeline=str(tiny_spacy_pipeline), max_objects=3),
                                      "caption_similarity": CaptionSimilarityConfig(min_similarity=0.5)})
    ctx = FilterContext(images=IMAGES, text_metrics=metrics_function(str(tiny_spacy_pipeline)),
                        reviews=_reviews(_rows()))
    return raw, config, ctx


def _direct(rule: str, raw: pa.Table, config: CurationConfig, ctx: FilterContext):
    res = filter_spec(rule).fn(plain_table(raw), config.section(rule), ctx)
    ids = raw["annotation_id"].to_pylist()
    drops = {ids[i]: res.reason[i].as_py() for i in np.flatnonzero(~res.keep)}
    absorbed = {}
    if res.absorbed_by is not None:
        absorbed = {ids[i]: ids[j] for i, j in enumerate(res.absorbed_by) if j >= 0 and not res.keep[i]}
    return res, drops, absorbed


def _through_curation(rule: str, raw: pa.Table, config: CurationConfig, ctx: FilterContext):
    config = CurationConfig(rules=(rule,), merge=config.merge, sections=config.sections)
    reviews = ctx.reviews if filter_spec(rule).protects else None  # other rules run alone, without the review
    curated, trails = curate_tables(raw, None, IMAGES, config, 0, reviews=reviews)
    ids = trails["annotation_id"].to_pylist()
    dropped = valid_mask(trails["dropped_by"])
    reasons = trails["reason"].cast(pa.string()).to_pylist()
    drops = {ids[i]: reasons[i] for i in np.flatnonzero(dropped)}
    rows = trails["absorbed_row"].to_pylist()
    absorbed = {ids[i]: ids[r] for i, r in enumerate(rows) if r is not None}
    return curated, drops, absorbed


@pytest.mark.parametrize("rule", filter_names())
def test_every_filter_decides_the_same_called_directly_and_through_curation(rule, setting):
    raw, config, ctx = setting
    res, direct_drops, direct_absorbed = _direct(rule, raw, config, ctx)
    curated, drops, absorbed = _through_curation(rule, raw, config, ctx)
    assert drops == direct_drops
    assert absorbed == direct_absorbed
    kept = {aid: k for k, aid in enumerate(raw["annotation_id"].to_pylist()) if res.keep[k]}
    assert sorted(curated["annotation_id"].to_pylist()) == sorted(kept)
    by_id = {aid: k for k, aid in enumerate(curated["annotation_id"].to_pylist())}
    for column, values in res.replace.items():  # rewritten columns (clipped boxes, chosen texts) arrive as given
        expected = {aid: values[k].as_py() for aid, k in kept.items()}
        got = {aid: curated[column][by_id[aid]].as_py() for aid in kept}
        if column in ("bbox", "quad"):
            assert {a: np.round(v, 4).tolist() if v else v for a, v in got.items()} == \
                   {a: np.round(v, 4).tolist() if v else v for a, v in expected.items()}
        else:
            assert got == expected


def test_the_rows_exercise_every_built_in_rule(setting):
    """The shared rows are worth the contract only if every built-in rule drops or rewrites
    some of them."""
    raw, config, ctx = setting
    silent = []
    for rule in filter_names():
        if filter_spec(rule).fn.__module__.startswith("filters."):
            res, drops, _ = _direct(rule, raw, config, ctx)
            silent += [] if drops or res.replace else [rule]
    assert silent == []


def test_every_section_builds_from_defaults_and_round_trips():
    for name, cls in settings_sections().items():
        assert isinstance(cls(), cls), name
    config = CurationConfig()
    assert CurationConfig.from_dict(config.to_dict()) == config
    assert set(config.to_dict()) == {"rules", "merge", "partition_rows", "partition_runner", *settings_sections()}
    with pytest.raises(ValueError, match="curation.nmz"):
        CurationConfig.from_dict({"nmz": {}})
    with pytest.raises(ValueError, match="curation.nms.iou_thresh"):
        CurationConfig.from_dict({"nms": {"iou_thresh": 0.3}})


def test_filters_are_given_exactly_the_schema_columns():
    """The plain table of curation has the schema's columns and types, nothing encoded."""
    from engine.curate.working_table import plain_rows, working_table

    raw = table(_rows())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        work, _ = working_table(raw, IMAGES, pool)
    plain = plain_rows(work, np.arange(raw.num_rows), raw, IMAGES)
    assert plain.schema == pa.schema(list(ANNOTATIONS) + [pa.field("label", pa.string())])
    assert plain["image_id"].to_pylist() == raw["image_id"].to_pylist()
    assert plain.drop_columns(["label"]).equals(raw)
