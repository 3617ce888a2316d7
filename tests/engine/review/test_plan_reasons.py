"""The review queue holds only images with a reason to look, never padding of priority-0 images;
the plan's summary line says how many curated images had a reason."""

from __future__ import annotations

from engine.cli import main
from engine.curate.config import CurationConfig
from engine.review.config import ReviewConfig
from engine.review.plan import plan_queue, round_thresholds
from tests.engine.review.data import reviewed_root


def test_the_queue_holds_only_images_with_a_reason(tmp_path, capsys):
    root, boxes = reviewed_root(tmp_path, images=8)
    thresholds = round_thresholds(root, 0, CurationConfig().confidence)
    plan = plan_queue(root, 0, 8, thresholds, ReviewConfig())  # room for every image
    rows = plan.queue.to_pylist()
    assert plan.images == len(boxes) == 8
    assert 0 < plan.with_reason < plan.images  # the seed's swapped and missing boxes, on some images only
    assert len(rows) == plan.with_reason
    assert all(row["reasons"] and row["priority"] > 0 for row in rows)
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
    assert plan_queue(root, 0, 1, thresholds, ReviewConfig()).queue.num_rows == 1  # the budget still caps it

    assert main(["review", "plan", "--root", str(root.path), "--round", "0", "--budget", "8"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"review queue of round 0: {plan.with_reason} images")
    assert f"{plan.with_reason} of 8 curated images have a reason" in line
