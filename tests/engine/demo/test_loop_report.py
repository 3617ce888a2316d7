"""The demo's loop lines: the verdict says whether shape recall rose and what new boxes are worth."""

from __future__ import annotations

import pytest

from engine.demo.loop_report import format_loop, format_verdict, wilson_interval


def _figures(round_: int, recall: float, precision: float, recovered: int = 0, new: int = 0, correct: int = 0) -> dict:
    boxes = {"round": round_, "recall": recall, "precision": precision, "recovered": recovered, "seed_missed": 40,
             "new_boxes": new, "new_correct": correct, "labels_corrected": 3, "labels_corrected_right": 2,
             "boxes_refined": 5, "refined_iou_before": 0.61, "refined_iou_after": 0.74}
    model = {"image_dependence": 0.55, "score_threshold": 0.12, "calibration_reached": True,
             "applied_thresholds": {"florence2": 0.12}}
    captions = {"available": True, "note": "", "overall": {"r_at_1": 0.3, "chance_r_at_1": 0.01, "mean_similarity": 0.8}}
    return {"round": round_, "boxes": boxes, "model": model, "captions": captions}


def test_the_verdict_states_the_gain_or_its_absence():
    rose = format_verdict([_figures(0, 0.59, 0.81), _figures(2, 0.71, 0.83, recovered=22, new=25, correct=23)])
    assert rose.startswith("the loop raised shape recall 0.590 -> 0.710 (round 0 -> round 2)")
    assert "recovered 22/40 (55%)" in rose and "new boxes correct 23/25 (92%, 95% CI 75%-98%)" in rose
    flat = format_verdict([_figures(0, 0.59, 0.81), _figures(2, 0.59, 0.81)])
    assert flat.startswith("the loop did not raise shape recall (0.590 -> 0.590)")


def test_the_round_lines_name_every_figure():
    text = format_loop(_figures(1, 0.65, 0.82, recovered=10, new=12, correct=11))
    for part in ("shape recall 0.650", "recovered 10/40 (25%)", "new boxes correct 11/12 (92%, 95% CI 65%-99%)",
                 "labels corrected 3 (2 right)", "mean IoU with the truth 0.610 -> 0.740", "image-dependence 0.550",
                 "calibrated threshold 0.12", "florence2 >= 0.12", "captions R@1 0.300 (chance 0.010)"):
        assert part in text, part


def test_the_wilson_interval_matches_its_textbook_values():
    assert wilson_interval(37, 41) == pytest.approx((0.7743, 0.9614), abs=1e-3)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
