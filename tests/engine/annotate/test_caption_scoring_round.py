"""A round that scores its captions: the caption scorer runs in a stage after the captioners it
reads (as the round's annotate step runs them), and curation's caption_similarity rule consumes its rows and drops the
captions below the threshold, every decision recorded."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from engine.annotate.plan import AnnotateRequest, annotate
from engine.annotate.stages import annotation_stages
from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.demo.clip_model import build_demo_clip
from storage.catalog import Catalog


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_scored_captions_through_annotate_and_curate(ingested_root, tmp_path, threshold):
    root = ingested_root
    clip = build_demo_clip(tmp_path / "clip")
    annotators = {"caption_scorer": {"model": str(clip)}, "sidecar_captions": {}}  # the reader named first
    stages = annotation_stages(list(annotators))
    assert stages == [["sidecar_captions"], ["caption_scorer"]]
    for stage in stages:
        annotate(root, AnnotateRequest(round=0, annotators={n: annotators[n] for n in stage}, progress=False))
    rows = [r for p in root.annotations(0).glob("source=*/*.parquet") for r in pq.read_table(p).to_pylist()]
    captions = {r["annotation_id"]: r for r in rows if r["source"] == "sidecar_captions"}
    scores = [r for r in rows if r["source"] == "caption_scorer"]
    assert captions and sorted(r["parent_id"] for r in scores) == sorted(captions)
    assert all(r["kind"] == "caption" and r["text"] is None and 0 <= r["score"] <= 1 for r in scores)

    rules = ("image", "confidence", "caption_similarity")
    curate_round(root, 0, CurationConfig.from_dict({"rules": list(rules),
                                                    "caption_similarity": {"min_similarity": threshold}}))
    with Catalog(root) as catalog:
        curated = dict(catalog.query("select annotation_id, absorbed_ids from curated where curated_round = 0"))
        decisions = catalog.query("select annotation_id, reason, absorbed_by from decisions where round = 0 "
                                  "and rule = 'caption_similarity' and not kept")
    reasons = {aid: (reason, into) for aid, reason, into in decisions}
    for row in scores:  # every similarity row consumed by its caption
        assert reasons[row["annotation_id"]] == (f"image-text similarity of caption {row['parent_id']}", row["parent_id"])
    if threshold == 0.0:
        assert set(curated) == set(captions)
        assert all(len(curated[aid]) == 1 for aid in captions)
    else:  # nothing reaches a similarity of 1.0
        assert curated == {}
        assert all(reasons[aid][0].endswith("< min_similarity 1.0") for aid in captions)
