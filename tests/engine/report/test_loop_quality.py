"""loop_quality on a real root: round 0 curates the noisy seed labels; round 1 brings the exact
labels as a new, more trusted producer. Fusion must recover missed boxes with correct new
rows, correct swapped labels and move jittered boxes towards the truth, and the figures say so."""

from __future__ import annotations

import pytest

from engine.annotate.plan import AnnotateRequest, annotate
from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_round
from engine.report.loop_quality import loop_quality, match
from filters.prior_score import PriorScoreConfig
from storage.catalog import Catalog

RULES = tuple(r for r in DEFAULT_RULES if r != "text_complexity")


def test_matching_is_class_aware_and_one_to_one():
    truth = [("square", [0, 0, 10, 10]), ("circle", [20, 20, 30, 30])]
    hit, iou = match([("square", [0, 0, 10, 10]), ("square", [0, 0, 10, 11]), ("circle", [0, 0, 10, 10])], truth)
    assert hit.tolist() == [0, -1, -1] and iou[0] == pytest.approx(1.0)


def test_fusion_with_a_better_producer_improves_every_figure(ingested_root, sample_dir):
    def run(round_: int, path, prior: float) -> None:
        annotate(ingested_root, AnnotateRequest(round=round_, annotators={"coco_labels": {"path": str(path)}}, progress=False))
        config = CurationConfig(rules=RULES, sections={"prior_score": PriorScoreConfig(per_source={"coco_labels": prior})})
        curate_round(ingested_root, round_, config)
        with Catalog(ingested_root) as catalog:
            catalog.refresh_views()

    truth, noisy = sample_dir / "ground_truth.json", sample_dir / "noisy_labels.json"
    run(0, noisy, 0.5)
    run(1, truth, 0.9)
    seed = loop_quality(ingested_root, 0, truth, noisy)
    after = loop_quality(ingested_root, 1, truth, noisy)
    assert seed["recovered"] == 0 and seed["new_boxes"] == 0 and seed["seed_missed"] > 0
    assert seed["recall"] == pytest.approx(1 - seed["seed_missed"] / seed["truth"])
    assert after["recall"] > seed["recall"] and after["recovered"] > 0
    assert after["new_boxes"] > 0 and after["new_precision"] == 1.0  # exact boxes of dropped objects
    assert after["labels_corrected"] > 0 and after["labels_corrected_right"] == after["labels_corrected"]
    assert after["boxes_refined"] > 0 and after["refined_iou_after"] > after["refined_iou_before"]
