"""The ranking is worth a person's time: on a root whose only wrong boxes are on images where
two sources dispute a label, reviewing the top-ranked images (a simulated person built from
ground truth, through export, import and curation) fixes more wrong boxes than random ones."""

from __future__ import annotations

from engine.demo.review_value import curated_boxes, review_value, truth_by_image, wrong_boxes
from tests.engine.review.data import CURATION, reviewed_root


def test_top_ranked_images_fix_more_wrong_boxes_than_random_ones(tmp_path):
    root, _ = reviewed_root(tmp_path, images=12)
    ground_truth = next((tmp_path / "sample").rglob("ground_truth.json"))
    before = wrong_boxes(curated_boxes(root, 0), truth_by_image(root, ground_truth))
    assert before > 0
    result = review_value(root, ground_truth, fraction=0.25, draws=3, curation=CURATION)
    assert result["wrong_before"] == before and result["budget"] == 3
    assert result["fixed_top"] > result["fixed_random_mean"]
    assert result["fixed_top"] <= before
