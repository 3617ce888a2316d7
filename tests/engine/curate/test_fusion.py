"""Fusion across rounds on hand-made rows: a new checkpoint's box refines a previous box and
corrects its label, re-emitted boxes are not new evidence, and every change is a decision."""

from __future__ import annotations

import numpy as np
import pytest

from engine.curate.config import DEFAULT_RULES, CurationConfig, MergeConfig
from engine.curate.curation import curate_tables
from filters.prior_score import PriorScoreConfig
from storage.decisions import expand_trails
from tests.filters.tables import images, region, table

IMAGES = images(("img", 100, 100))
RULES = tuple(r for r in DEFAULT_RULES if r != "text_complexity")


def _config(**merge) -> CurationConfig:
    return CurationConfig(rules=RULES, merge=MergeConfig(**merge),
                          sections={"prior_score": PriorScoreConfig(default=0.5)})


def _round0():
    label = region("img", [10, 10, 50, 50], source="coco_labels", label="triangle", score=None, version="gt-v1")
    other = region("img", [60, 60, 90, 90], source="coco_labels", label="circle", score=None, version="gt-v1")
    curated, _ = curate_tables(table([label, other]), None, IMAGES, _config(), 0)
    return label, other, curated


def _decisions(trails):
    return {r["annotation_id"]: r for r in expand_trails(trails).to_pylist() if r["rule"] == "merge"}


def test_existing_labels_carry_their_prior_score():
    label, other, curated = _round0()
    assert curated["score"].to_pylist() == [0.5, 0.5]
    config = CurationConfig(rules=RULES, sections={"prior_score": PriorScoreConfig(default=None,
                                                                                 per_source={"coco_labels": 0.8})})
    assert curate_tables(table([label]), None, IMAGES, config, 0)[0]["score"].to_pylist() == [pytest.approx(0.8)]
    config = CurationConfig(rules=RULES, sections={"prior_score": PriorScoreConfig(default=None, per_source={})})
    assert curate_tables(table([label]), None, IMAGES, config, 0)[0]["score"].to_pylist() == [None]


def test_a_new_checkpoint_refines_the_box_and_corrects_the_label():
    label, other, previous = _round0()
    again = region("img", [10, 10, 50, 50], source="coco_labels", label="triangle", score=None, version="gt-v1", round_=1)
    model = region("img", [14, 14, 54, 54], source="florence2", label="square", score=0.9, version="m1", round_=1)
    curated, trails = curate_tables(table([again, model]), previous, IMAGES, _config(), 1)
    rows = {r["annotation_id"]: r for r in curated.to_pylist()}
    assert set(rows) == {label["annotation_id"], other["annotation_id"]}  # nothing added: both merged
    fused = rows[label["annotation_id"]]
    expected = (0.5 * np.array([10, 10, 50, 50]) + 0.9 * np.array([14, 14, 54, 54])) / 1.4
    assert fused["bbox"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert fused["label"] == fused["text"] == "square"
    assert fused["score"] == pytest.approx(0.9)  # only the agreeing evidence counts
    assert set(fused["seen_by"]) == {"coco_labels@gt-v1", "florence2@m1"}
    assert {again["annotation_id"], model["annotation_id"]} <= set(fused["absorbed_ids"])
    assert rows[other["annotation_id"]]["bbox"] == [60, 60, 90, 90]  # untouched
    decisions = _decisions(trails)
    assert decisions[model["annotation_id"]]["reason"] == \
        "fused into a previous round's box (IoU 0.68): label corrected 'triangle' -> 'square'; box refined"
    assert "its producer gave that box before" in decisions[again["annotation_id"]]["reason"]
    assert {d["absorbed_by"] for d in decisions.values()} == {label["annotation_id"]}


def test_label_correction_can_be_turned_off_and_agreement_raises_the_score():
    label, _, previous = _round0()
    model = region("img", [12, 12, 52, 52], source="florence2", label="square", score=0.6, version="m1", round_=1)
    curated, trails = curate_tables(table([model]), previous, IMAGES, _config(correct_labels=False), 1)
    fused = {r["annotation_id"]: r for r in curated.to_pylist()}[label["annotation_id"]]
    assert fused["label"] == "triangle" and fused["score"] == pytest.approx(0.5)
    assert _decisions(trails)[model["annotation_id"]]["reason"].endswith(": box refined")
    agreeing = region("img", [12, 12, 52, 52], source="florence2", label="Triangle", score=0.6, version="m1", round_=1)
    curated, _ = curate_tables(table([agreeing]), previous, IMAGES, _config(), 1)
    fused = {r["annotation_id"]: r for r in curated.to_pylist()}[label["annotation_id"]]
    assert fused["label"] == "triangle" and fused["score"] == pytest.approx(1 - 0.5 * 0.4)


def test_ties_keep_the_previous_label_and_a_weaker_vote_loses():
    label, _, previous = _round0()
    for score, expected in [(0.5, "triangle"), (0.4, "triangle"), (0.55, "square")]:
        model = region("img", [10, 10, 50, 50], source="florence2", label="square", score=score, version="m1", round_=1)
        curated, _ = curate_tables(table([model]), previous, IMAGES, _config(), 1)
        assert {r["annotation_id"]: r for r in curated.to_pylist()}[label["annotation_id"]]["label"] == expected, score


def test_re_emitted_boxes_change_nothing_and_new_boxes_are_added():
    label, other, previous = _round0()
    model = region("img", [14, 14, 54, 54], source="florence2", label="square", score=0.9, version="m1", round_=1)
    round1, _ = curate_tables(table([model]), previous, IMAGES, _config(), 1)
    same = region("img", [16, 16, 56, 56], source="florence2", label="square", score=0.9, version="m1", round_=2)
    missed = region("img", [70, 5, 95, 30], source="florence2", label="star", score=0.8, version="m1", round_=2)
    round2, trails = curate_tables(table([same, missed]), round1, IMAGES, _config(), 2)
    before = {r["annotation_id"]: r for r in round1.to_pylist()}
    after = {r["annotation_id"]: r for r in round2.to_pylist()}
    assert after[label["annotation_id"]]["bbox"] == before[label["annotation_id"]]["bbox"]  # m1 gave it before
    assert after[missed["annotation_id"]]["label"] == "star" and after[missed["annotation_id"]]["round"] == 2
    assert len(after) == len(before) + 1


def test_fusion_off_falls_back_to_same_label_merging():
    _, _, previous = _round0()
    model = region("img", [10, 10, 50, 50], source="florence2", label="square", score=0.9, version="m1", round_=1)
    curated, _ = curate_tables(table([model]), previous, IMAGES, _config(fuse=False), 1)
    assert curated.num_rows == previous.num_rows + 1  # another label: a second row, nothing corrected
    assert sorted(curated["label"].to_pylist()) == ["circle", "square", "triangle"]


def test_a_new_box_needs_the_stricter_new_box_threshold_of_its_checkpoint():
    label, _, previous = _round0()
    confirming = region("img", [12, 12, 52, 52], source="florence2", label="triangle", score=0.5, version="m1", round_=1)
    lone = region("img", [70, 5, 95, 30], source="florence2", label="star", score=0.5, version="m1", round_=1)
    rows = table([confirming, lone])
    held, trails = curate_tables(rows, previous, IMAGES, _config(), 1, new_box_thresholds={"florence2": 0.6})
    assert lone["annotation_id"] not in held["annotation_id"].to_pylist()
    decision = _decisions(trails)[lone["annotation_id"]]
    assert not decision["kept"] and decision["absorbed_by"] is None
    assert decision["reason"] == "a new box scoring below 0.6, the new-box threshold of its checkpoint (no curated box there)"
    assert _decisions(trails)[confirming["annotation_id"]]["reason"].startswith("fused into")  # fusion is not held back
    added, _ = curate_tables(rows, previous, IMAGES, _config(), 1, new_box_thresholds={"florence2": 0.4})
    assert lone["annotation_id"] in added["annotation_id"].to_pylist()
    other, _ = curate_tables(rows, previous, IMAGES, _config(), 1, new_box_thresholds={"detector": 0.9})
    assert lone["annotation_id"] in other["annotation_id"].to_pylist()


def test_a_lone_box_of_the_same_label_joins_a_loosely_overlapping_label():
    label, _, previous = _round0()
    loose = region("img", [22, 22, 62, 62], source="florence2", label="triangle", score=0.6, version="m1", round_=1)
    rows = table([loose])
    apart, _ = curate_tables(rows, previous, IMAGES, _config(), 1)  # default: the looser match is off
    assert loose["annotation_id"] in apart["annotation_id"].to_pylist()
    curated, trails = curate_tables(rows, previous, IMAGES, _config(fuse_iou_same_label=0.3), 1)
    fused = {r["annotation_id"]: r for r in curated.to_pylist()}[label["annotation_id"]]
    assert curated.num_rows == previous.num_rows
    expected = (0.5 * np.array([10, 10, 50, 50]) + 0.6 * np.array([22, 22, 62, 62])) / 1.1
    assert fused["bbox"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert _decisions(trails)[loose["annotation_id"]]["reason"] == "fused into a previous round's box (IoU 0.32): box refined"
    other_label = region("img", [22, 22, 62, 62], source="florence2", label="square", score=0.6, version="m1", round_=1)
    kept, _ = curate_tables(table([other_label]), previous, IMAGES, _config(fuse_iou_same_label=0.3), 1)
    assert other_label["annotation_id"] in kept["annotation_id"].to_pylist()  # another label needs fuse_iou


def test_a_second_object_beside_a_confirmed_one_stays_a_new_row():
    label, _, previous = _round0()
    confirming = region("img", [11, 11, 51, 51], source="florence2", label="triangle", score=0.6, version="m1", round_=1)
    beside = region("img", [30, 10, 70, 50], source="florence2", label="triangle", score=0.6, version="m1", round_=1)
    curated, trails = curate_tables(table([confirming, beside]), previous, IMAGES, _config(fuse_iou_same_label=0.3), 1)
    assert beside["annotation_id"] in curated["annotation_id"].to_pylist()
    assert _decisions(trails)[confirming["annotation_id"]]["reason"].startswith("fused into")
    twins = [region("img", [22, 22, 62, 62], source="florence2", label="triangle", score=0.6, version="m1", round_=1),
             region("img", [0, 20, 40, 60], source="florence2", label="triangle", score=0.6, version="m1", round_=1)]
    curated, _ = curate_tables(table(twins), previous, IMAGES, _config(fuse_iou_same_label=0.3), 1)
    assert sum(t["annotation_id"] in curated["annotation_id"].to_pylist() for t in twins) == 1  # the better one joins


def test_a_box_over_a_curated_box_is_not_a_new_object_when_asked():
    label, other, previous = _round0()
    second_guess = region("img", [20, 20, 60, 60], source="florence2", label="square", score=0.7, version="m1", round_=1)
    elsewhere = region("img", [5, 70, 25, 95], source="florence2", label="star", score=0.7, version="m1", round_=1)
    rows = table([second_guess, elsewhere])
    both, _ = curate_tables(rows, previous, IMAGES, _config(), 1)  # default: overlapping objects are added
    assert {second_guess["annotation_id"], elsewhere["annotation_id"]} <= set(both["annotation_id"].to_pylist())
    curated, trails = curate_tables(rows, previous, IMAGES, _config(new_box_max_overlap=0.3), 1)
    ids = curated["annotation_id"].to_pylist()
    assert second_guess["annotation_id"] not in ids and elsewhere["annotation_id"] in ids
    assert curated.num_rows == previous.num_rows + 1
    decision = _decisions(trails)[second_guess["annotation_id"]]  # IoU of [20,20,60,60] with [10,10,50,50]: 900/2300
    assert not decision["kept"] and decision["absorbed_by"] is None
    assert decision["reason"] == ("not a new object: overlaps a curated box (IoU 0.39 >= new_box_max_overlap 0.3) "
                                  "without merging into it")
    assert _decisions(trails).get(elsewhere["annotation_id"], {"kept": True})["kept"]
    looser, _ = curate_tables(rows, previous, IMAGES, _config(new_box_max_overlap=0.4), 1)
    assert second_guess["annotation_id"] in looser["annotation_id"].to_pylist()  # 0.39 < 0.4
    fused, trails = curate_tables(rows, previous, IMAGES, _config(new_box_max_overlap=0.3, fuse_iou=0.35), 1)
    assert _decisions(trails)[second_guess["annotation_id"]]["reason"].startswith("fused into")  # merging comes first


def test_a_label_outside_the_curated_vocabulary_corrects_nothing_when_asked():
    label, _, previous = _round0()  # the curated labels: triangle, circle
    phrase = region("img", [14, 14, 54, 54], source="florence2", label="Four  Shapes", score=0.9, version="m1", round_=1)
    renamed, _ = curate_tables(table([phrase]), previous, IMAGES, _config(), 1)
    assert {r["annotation_id"]: r for r in renamed.to_pylist()}[label["annotation_id"]]["label"] == "Four  Shapes"
    curated, trails = curate_tables(table([phrase]), previous, IMAGES, _config(relabel_known_only=True), 1)
    kept = {r["annotation_id"]: r for r in curated.to_pylist()}[label["annotation_id"]]
    assert kept["label"] == "triangle" and kept["bbox"] != [10, 10, 50, 50]  # refined, not renamed
    assert _decisions(trails)[phrase["annotation_id"]]["reason"] == "fused into a previous round's box (IoU 0.68): box refined"
    known = region("img", [14, 14, 54, 54], source="florence2", label="CIRCLE", score=0.9, version="m1", round_=1)
    corrected, _ = curate_tables(table([known]), previous, IMAGES, _config(relabel_known_only=True), 1)
    assert {r["annotation_id"]: r for r in corrected.to_pylist()}[label["annotation_id"]]["label"] == "CIRCLE"


def test_a_new_box_with_a_label_outside_the_curated_vocabulary_is_not_added_when_asked():
    _, _, previous = _round0()  # the curated labels: triangle, circle
    phrase = region("img", [60, 5, 95, 40], source="florence2", label="Four  Shapes", score=0.9, version="m1", round_=1)
    known = region("img", [5, 60, 40, 95], source="florence2", label="CIRCLE", score=0.9, version="m1", round_=1)
    added, _ = curate_tables(table([phrase, known]), previous, IMAGES, _config(), 1)
    assert {phrase["annotation_id"], known["annotation_id"]} <= set(added["annotation_id"].to_pylist())
    curated, trails = curate_tables(table([phrase, known]), previous, IMAGES, _config(new_box_known_labels_only=True), 1)
    ids = set(curated["annotation_id"].to_pylist())
    assert known["annotation_id"] in ids and phrase["annotation_id"] not in ids
    assert _decisions(trails)[phrase["annotation_id"]]["reason"] == (
        "not a known object class: no curated box is labelled 'four shapes' (new_box_known_labels_only)")
    # without a labelled previous box every label is known
    first, _ = curate_tables(table([phrase]), None, IMAGES, _config(new_box_known_labels_only=True), 1)
    assert phrase["annotation_id"] in first["annotation_id"].to_pylist()


def test_merge_settings_are_validated():
    with pytest.raises(ValueError, match="merge.fuse_iou_same_label must be in"):
        MergeConfig(fuse_iou_same_label=0)
    with pytest.raises(ValueError, match="merge.new_box_max_overlap must be in"):
        MergeConfig(new_box_max_overlap=1.5)
    with pytest.raises(ValueError, match="merge.new_box_known_labels_only must be true or false"):
        MergeConfig(new_box_known_labels_only="yes")


def test_an_absorbed_box_gives_the_previous_box_its_mask_and_description():
    from filters.region_text import RegionTextConfig
    from tests.filters.tables import candidate

    label, other, previous = _round0()
    polygon = [[12.0, 12.0, 52.0, 12.0, 32.0, 52.0]]
    from storage.masks import polygons_to_rle

    rle = polygons_to_rle(polygon, 100, 100)
    model = region("img", [12, 12, 52, 52], source="florence2", label="triangle", score=0.9, version="m1", round_=1,
                   polygons=polygon, mask_rle=rle)
    wrong = region("img", [61, 61, 91, 91], source="florence2", label="square", score=0.2, version="m1", round_=1)
    rows = [model, wrong,
            candidate("img", model, "a large red triangle", source="florence2", score=0.7, round_=1),
            candidate("img", wrong, "a small blue square", source="florence2", score=0.7, round_=1)]
    config = CurationConfig(rules=RULES, merge=MergeConfig(), sections={"prior_score": PriorScoreConfig(default=0.5),
                                                                       "region_text": RegionTextConfig()})
    curated, trails = curate_tables(table(rows), previous, IMAGES, config, 1)
    got = {r["annotation_id"]: r for r in curated.to_pylist()}
    assert set(got) == {label["annotation_id"], other["annotation_id"]}
    triangle, circle = got[label["annotation_id"]], got[other["annotation_id"]]
    assert triangle["label"] == "triangle" and triangle["text"] == "a large red triangle"
    assert triangle["mask_rle"] == rle and triangle["polygons"] == polygon
    # the weak "square" evidence does not win the circle's label, so its "square" description is not carried
    assert circle["text"] == "circle" and circle["mask_rle"] is None
