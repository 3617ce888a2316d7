"""Vectorised greedy NMS against a plain-Python reference, and the region NMS rules."""

from __future__ import annotations

import numpy as np
import pytest

from filters.base import FilterContext
from filters.nms import (
    NmsConfig,
    calibrate,
    greedy_nms,
    nms_across_sources,
    nms_within_source,
    pairs_in_groups,
    score_reference,
)

from .tables import random_boxes, region, table


def py_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, groups, threshold, tiebreak=None):
    """Textbook greedy NMS, one group at a time, in plain Python (equal scores: lower
    ``tiebreak`` first, default input order)."""
    tiebreak = list(range(len(boxes))) if tiebreak is None else tiebreak
    keep = [False] * len(boxes)
    suppressor = [-1] * len(boxes)
    for g in sorted(set(groups)):
        members = sorted((i for i in range(len(boxes)) if groups[i] == g), key=lambda i: (-scores[i], tiebreak[i]))
        kept: list[int] = []
        for i in members:
            by = next((k for k in kept if py_iou(boxes[k], boxes[i]) > threshold), None)
            if by is None:
                kept.append(i)
                keep[i] = True
            else:
                suppressor[i] = by
    return keep, suppressor


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_greedy_nms_matches_reference(seed, threshold):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    boxes = random_boxes(rng, n)
    scores = rng.random(n)
    groups = rng.integers(0, 3, n)
    keep, sup = greedy_nms(boxes, scores, groups, threshold)
    ref_keep, ref_sup = reference_nms(boxes.tolist(), scores.tolist(), groups.tolist(), threshold)
    assert keep.tolist() == ref_keep
    assert sup.tolist() == ref_sup
    assert (~keep).any() or threshold == 0.7 or n < 5  # the clustered boxes do overlap


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("callable_tiebreak", [False, True])
def test_greedy_nms_matches_reference_with_many_tied_scores(seed, callable_tiebreak):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 150))
    boxes = random_boxes(rng, n)
    scores = rng.integers(0, 3, n) / 2  # three score values: ties everywhere
    groups = rng.integers(0, 2, n)
    perm = rng.permutation(n)
    # a callable sees only some rows and returns keys that order them, not perm itself
    tiebreak = (lambda rows: np.argsort(np.argsort(perm[rows])) * 7 + 3) if callable_tiebreak else perm
    keep, sup = greedy_nms(boxes, scores, groups, 0.4, tiebreak=tiebreak)
    ref_keep, ref_sup = reference_nms(boxes.tolist(), scores.tolist(), groups.tolist(), 0.4, perm.tolist())
    assert keep.tolist() == ref_keep
    assert sup.tolist() == ref_sup


@pytest.mark.parametrize("callable_tiebreak", [False, True])
def test_greedy_nms_split_over_threads_gives_the_same_result(monkeypatch, callable_tiebreak):
    import filters.nms as nms

    rng = np.random.default_rng(7)
    n = 400
    boxes, scores, groups = random_boxes(rng, n), rng.integers(0, 4, n) / 3, rng.integers(0, 9, n)
    perm = rng.permutation(n)
    tiebreak = (lambda rows: perm[rows]) if callable_tiebreak else perm
    single = greedy_nms(boxes, scores, groups, 0.4, tiebreak=tiebreak, workers=1)
    monkeypatch.setattr(nms, "PARALLEL_MIN_ROWS", 0)
    split = greedy_nms(boxes, scores, groups, 0.4, tiebreak=tiebreak, workers=3)
    assert split[0].tolist() == single[0].tolist() and split[1].tolist() == single[1].tolist()
    ref_keep, ref_sup = reference_nms(boxes.tolist(), scores.tolist(), groups.tolist(), 0.4, perm.tolist())
    assert split[0].tolist() == ref_keep and split[1].tolist() == ref_sup


def test_greedy_nms_ties_follow_tiebreak_and_empty():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    keep, sup = greedy_nms(boxes, np.array([0.5, 0.5]), np.zeros(2, int), 0.5, tiebreak=np.array([1, 0]))
    assert keep.tolist() == [False, True] and sup.tolist() == [1, -1]
    keep, sup = greedy_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5)
    assert len(keep) == 0 and len(sup) == 0


def test_pairs_in_groups_chunks_do_not_change_pairs():
    groups = np.sort(np.random.default_rng(1).integers(0, 7, 60))
    small = {(int(i), int(j)) for a, b in pairs_in_groups(groups, budget=5) for i, j in zip(a, b)}
    large = {(int(i), int(j)) for a, b in pairs_in_groups(groups) for i, j in zip(a, b)}
    expected = {(i, j) for i in range(60) for j in range(i + 1, 60) if groups[i] == groups[j]}
    assert small == large == expected


def test_class_aware_within_and_across_sources():
    a = region("img", [10, 10, 50, 50], source="detector", label="dog", score=0.9)
    b = region("img", [11, 10, 51, 50], source="detector", label="dog", score=0.8)   # duplicate of a
    c = region("img", [10, 11, 50, 51], source="detector", label="cat", score=0.7)   # other class
    d = region("img", [10, 10, 50, 51], source="florence2", label="Dog ", score=0.6)  # other source
    e = region("img2", [10, 10, 50, 50], source="detector", label="dog", score=0.5)  # other image
    t = table([a, b, c, d, e])
    res = nms_within_source(t, NmsConfig(), FilterContext())
    assert res.keep.tolist() == [True, False, True, True, True]
    assert res.absorbed_by.tolist() == [-1, 0, -1, -1, -1] and res.agrees
    assert res.reason[1].as_py().startswith("suppressed by a higher-scored box (same source")
    across = nms_across_sources(t.filter(res.keep), NmsConfig(calibration="raw"), FilterContext())
    assert across.keep.tolist() == [True, True, False, True]  # d (normalised label "dog") joins a
    blind = nms_within_source(t, NmsConfig(class_aware=False), FilterContext())
    assert blind.keep.tolist() == [True, False, False, True, True]


def test_rank_calibration_changes_the_winner():
    # source "low" reports small scores; its best box overlaps the worst box of "high"
    low = [region("img", [10, 10, 50, 50], source="low", score=0.2)] + \
          [region(f"o{i}", [10, 10, 50, 50], source="low", score=0.05) for i in range(3)]
    high = [region("img", [11, 10, 51, 50], source="high", score=0.6)] + \
           [region(f"p{i}", [10, 10, 50, 50], source="high", score=0.9) for i in range(3)]
    t = table(low + high)
    raw = nms_across_sources(t, NmsConfig(calibration="raw"), FilterContext())
    ranked = nms_across_sources(t, NmsConfig(calibration="rank"), FilterContext())
    weighted = nms_across_sources(t, NmsConfig(calibration="weight", weights={"low": 10.0}), FilterContext())
    assert raw.keep[0] == False and raw.keep[4] == True  # noqa: E712
    assert ranked.keep[0] == True and ranked.keep[4] == False  # noqa: E712
    assert weighted.keep[0] == True and weighted.keep[4] == False  # noqa: E712


def test_calibrate_rank_is_a_percentile_per_source():
    import pyarrow as pa

    scores = np.array([0.1, 0.2, 0.3, 5.0, 7.0, 7.0])
    out = calibrate(scores, pa.array(["a", "a", "a", "b", "b", "b"]), NmsConfig(calibration="rank"))
    assert out[2] > out[1] > out[0] and out[4] == out[5] > out[3]
    assert np.allclose(out[:3], [1 / 6, 3 / 6, 5 / 6])


@pytest.mark.parametrize("float32_exact", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_calibrate_rank_matches_a_counting_reference_with_ties(seed, float32_exact):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = 300
    scores = rng.integers(0, 12, n) / 4  # many ties
    if not float32_exact:  # distinct float64 scores that float32 would merge: they must keep their order
        scores = 0.5 + scores * 1e-12
    sources = rng.choice(["a", "b", "c"], n)
    out = calibrate(scores, pa.array(sources), NmsConfig(calibration="rank"))
    for i in range(n):
        same = scores[sources == sources[i]]
        below, equal = (same < scores[i]).sum(), (same == scores[i]).sum()
        assert out[i] == pytest.approx((2 * below + equal) / (2 * len(same)))


def test_calibrate_ranks_a_subset_against_a_reference_of_all_rows():
    """What nms_cross does per curation partition: ranks among every partition's rows."""
    import pyarrow as pa

    rng = np.random.default_rng(5)
    n = 400
    scores = rng.integers(0, 9, n) / 8
    scores[rng.integers(0, n, 6)] = np.nan  # NaN scores tie with each other above every number
    sources = rng.choice(["a", "b"], n)
    reference = score_reference(scores, pa.array(sources))
    part = rng.permutation(n)[:150]
    out = calibrate(scores[part], pa.array(sources[part]), NmsConfig(calibration="rank"), reference)
    for i, row in enumerate(part):
        same = scores[sources == sources[row]]
        if np.isnan(scores[row]):
            below, equal = (~np.isnan(same)).sum(), np.isnan(same).sum()
        else:
            below, equal = (same < scores[row]).sum(), (same == scores[row]).sum()
        assert out[i] == pytest.approx((2 * below + equal) / (2 * len(same)))


def test_scope_empty_and_single_row():
    cfg = NmsConfig()
    assert len(nms_within_source(table([]), cfg, FilterContext()).keep) == 0
    one = nms_across_sources(table([region("img", [0, 0, 5, 5])]), cfg, FilterContext())
    assert one.keep.tolist() == [True] and one.judged.tolist() == [True]
    no_box = nms_within_source(table([region("img", None)]), cfg, FilterContext())
    assert no_box.judged.tolist() == [False]
    with pytest.raises(ValueError, match="iou_within_source"):
        NmsConfig(iou_within_source=1.5)
    with pytest.raises(ValueError, match="calibration"):
        NmsConfig(calibration="softmax")
