"""Text measures from real spaCy Docs and the text_complexity filter (config thresholds)."""

from __future__ import annotations

import pytest
import spacy
from spacy.tokens import Doc

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_tables
from engine.curate.text_metrics import TextPipelineError, doc_metrics, load_pipeline, metrics_table, token_degrees
from filters.base import FilterContext
from filters.text_complexity import TextComplexityConfig, text_complexity_filter
from tests.filters.spacy_docs import gold_docs

from .tables import caption, images, region, table


def reference_metrics(doc) -> dict:
    """Plain-Python reading of the definitions: degree = edges touching the token."""
    degree = {t.i: sum(1 for u in doc if u.head.i == t.i and u.i != t.i) + (t.head.i != t.i) for t in doc}
    nouns = [degree[t.i] for t in doc if t.pos_ == "NOUN"]
    verbs = [degree[t.i] for t in doc if t.pos_ == "VERB"]
    return {
        "objects": len(nouns), "attributes": sum(t.pos_ == "ADJ" for t in doc),
        "actions": len(verbs), "proper_nouns": sum(t.pos_ == "PROPN" for t in doc),
        "object_complexity": sum(nouns) / len(nouns) if nouns else 0.0,
        "action_complexity": sum(verbs) / len(verbs) if verbs else 0.0,
    }


def test_doc_metrics_match_reference_definitions():
    docs = gold_docs()
    for doc in docs:
        assert doc_metrics(doc) == pytest.approx(reference_metrics(doc))
    holds = docs[1]  # a man holds a red umbrella
    assert list(token_degrees(holds)) == [1, 2, 2, 1, 1, 3]
    assert doc_metrics(holds)["object_complexity"] == pytest.approx(2.5)
    empty = Doc(spacy.blank("en").vocab, words=[])
    assert doc_metrics(empty)["objects"] == 0 and doc_metrics(empty)["object_complexity"] == 0.0


def test_doc_without_parse_is_rejected():
    doc = Doc(spacy.blank("en").vocab, words=["a", "dog"], pos=["DET", "NOUN"])
    with pytest.raises(TextPipelineError, match="parser"):
        doc_metrics(doc)


def _ctx_from_gold():
    docs = {doc.text: doc for doc in gold_docs()}

    def metrics(texts):
        return metrics_table(texts, [docs[t] for t in texts])

    return FilterContext(text_metrics=metrics), list(docs)


def test_filter_thresholds_come_from_config():
    ctx, texts = _ctx_from_gold()
    rows = [caption("img", t) for t in texts] + [region("img", [0, 0, 10, 10], label="a dog runs on green grass")]
    t = table(rows)
    measures = [reference_metrics(doc) for doc in gold_docs()]
    for cfg in [TextComplexityConfig(max_objects=3, min_object_complexity=1.5),
                TextComplexityConfig(max_objects=10, min_object_complexity=2.0),
                TextComplexityConfig(max_objects=10, min_object_complexity=0.0, min_action_complexity=3.0)]:
        res = text_complexity_filter(t, cfg, ctx)
        expected = [m["objects"] <= cfg.max_objects and m["object_complexity"] >= cfg.min_object_complexity
                    and (m["actions"] == 0 or m["action_complexity"] >= cfg.min_action_complexity) for m in measures]
        assert list(res.keep[:-1]) == expected
        assert res.judged.tolist() == [True] * len(texts) + [False]  # regions are not judged
        assert all((r is None) == k for r, k in zip(res.reason.to_pylist(), res.keep))
    # the thresholds matter: the first two configs disagree on some caption
    a = text_complexity_filter(t, TextComplexityConfig(max_objects=3, min_object_complexity=1.5), ctx).keep
    b = text_complexity_filter(t, TextComplexityConfig(max_objects=10, min_object_complexity=2.0), ctx).keep
    assert (a != b).any()


def test_granularity_scope_and_empty_table():
    ctx, texts = _ctx_from_gold()
    t = table([caption("img", texts[2], granularity="brief"), caption("img", texts[2], granularity="detailed")])
    res = text_complexity_filter(t, TextComplexityConfig(min_object_complexity=5, granularities=("detailed",)), ctx)
    assert res.judged.tolist() == [False, True] and res.keep.tolist() == [True, False]
    empty = text_complexity_filter(table([]), TextComplexityConfig(), ctx)
    assert len(empty.keep) == 0


def test_missing_metrics_provider_and_pipeline_errors(tmp_path):
    with pytest.raises(ValueError, match="text_metrics"):
        text_complexity_filter(table([caption("img", "a dog")]), TextComplexityConfig(), FilterContext())
    with pytest.raises(TextPipelineError, match="no_such_pipeline_xyz"):
        load_pipeline("no_such_pipeline_xyz")
    nlp = spacy.blank("en")
    nlp.add_pipe("morphologizer")
    nlp.to_disk(tmp_path / "notparser")
    with pytest.raises(TextPipelineError, match="no 'parser'"):
        load_pipeline(str(tmp_path / "notparser"))
    with pytest.raises(ValueError, match="max_objects"):
        TextComplexityConfig(max_objects=-1)


def test_trained_pipeline_through_the_config_path(tiny_spacy_pipeline):
    nlp = load_pipeline(str(tiny_spacy_pipeline))
    gold = gold_docs()
    for doc in gold:  # precondition: the tiny pipeline reproduces the gold parses
        parsed = nlp(doc.text)
        assert [(t.pos_, t.dep_, t.head.i) for t in parsed] == [(t.pos_, t.dep_, t.head.i) for t in doc]
    measures = [reference_metrics(doc) for doc in gold]
    rows = [caption("img", doc.text) for doc in gold]
    raw = table(rows)
    for max_objects, min_cx in [(3, 1.5), (10, 2.0)]:
        config = CurationConfig.from_dict({
            "rules": ["text_complexity"],
            "text": {"pipeline": str(tiny_spacy_pipeline), "max_objects": max_objects,
                     "min_object_complexity": min_cx},
        })
        curated, decisions = curate_tables(raw, None, images(("img", 64, 64)), config, 0)
        expected = {r["annotation_id"] for r, m in zip(rows, measures)
                    if m["objects"] <= max_objects and m["object_complexity"] >= min_cx}
        assert set(curated["annotation_id"].to_pylist()) == expected
        assert decisions.num_rows == len(rows)
        assert 0 < len(expected) < len(rows)
