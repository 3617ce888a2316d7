"""Score-threshold calibration: the lowest score reaching the target precision against the
curated held-out labels, on hand-made scores and through the evaluation's own matching."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from engine.dataset.locations import image_locations
from engine.retrain.calibrate import calibration, hits, threshold_at_precision
from engine.retrain.config import TrainingConfig
from engine.retrain.evaluate import agreement_metrics
from engine.retrain.examples import Example
from florence2.model import Florence2Model, Generation
from florence2.settings import Florence2Settings
from tests.engine.retrain.data import make_root


def test_threshold_is_the_lowest_cut_at_the_target_precision():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    hit = [True, True, False, True, False, False]  # precision at each cut: 1, 1, .67, .75, .6, .5
    assert threshold_at_precision(scores, hit, 0.75) == 0.6
    assert threshold_at_precision(scores, hit, 1.0) == 0.8
    assert threshold_at_precision(scores, hit, 0.5) == 0.4
    assert threshold_at_precision([0.9, 0.8], [False, True], 0.99) is None
    assert threshold_at_precision([0.9, 0.9], [True, False], 1.0) is None  # equal scores are never split
    assert threshold_at_precision([], [], 0.9) is None


def test_calibration_reports_what_the_threshold_keeps():
    out = calibration([0.9, 0.8, 0.7, 0.6], [True, True, False, True], references=5, target=0.75)
    assert out["score_threshold"] == 0.6 and out["calibration_reached"]
    assert out["calibration_precision"] == 0.75 and out["calibration_recall"] == 0.6
    never = calibration([0.3, 0.2], [False, False], references=2, target=0.9)
    assert not never["calibration_reached"] and never["score_threshold"] > 0.3


def test_matches_are_class_aware_and_one_to_one():
    ref = [("Cat", [0, 0, 10, 10])]
    assert hits([("cat", [0, 0, 10, 10]), ("cat", [0, 0, 10, 10]), ("dog", [0, 0, 10, 10])], ref, 0.5).tolist() == \
        [True, False, False]


class ScriptedModel(Florence2Model):
    """A Florence-2 model whose generations are scripted: ``<OD>`` boxes (with per-box scores) per
    generation, in call order, and curated targets parsed from a table (the evaluation parses
    targets with the model's parser). Everything else (batching, views, fusion) is the real
    :class:`Florence2Model`'s."""

    def __init__(self, predictions: list[list[dict]], targets: dict[str, list[dict]], views: tuple[str, ...] = ()):
        self.settings = Florence2Settings(model="scripted", batch_size=3, tasks=("OD",), views=views)
        self.stats = Counter()
        self.predictions, self.targets, self.calls = predictions, targets, 0

    def generate(self, prompts, images):
        out = [Generation(f"PRED:{self.calls + k}", None) for k in range(len(prompts))]
        self.calls += len(prompts)
        return out

    def parse(self, task, text, width, height, caption=None, stats=None, counter=""):
        return self.predictions[int(text[5:])] if text.startswith("PRED:") else self.targets[text]


def test_the_threshold_comes_from_the_curated_validation_labels(tmp_path):
    root, _ = make_root(tmp_path, images=6, seed=3, per_shard=3)
    locations = sorted(image_locations(root).items())
    box = [4.0, 4.0, 30.0, 30.0]
    examples, targets, predictions = [], {}, []
    for k, (image_id, w) in enumerate(locations):
        target = f"square-{k}"
        targets[target] = [{"text": "square", "bbox": box}]
        examples.append(Example(image_id, "OD", "<OD>", target, w.width, w.height, w.shard, w.key,
                                w.shard_format, "validation"))
        # a right box scored by k, and a wrong one scored 0.55
        predictions.append([{"text": "square", "bbox": box, "score": 0.5 + 0.08 * k},
                            {"text": "circle", "bbox": box, "score": 0.55}])
    metrics = agreement_metrics(ScriptedModel(predictions, targets), examples, target_precision=0.9)
    scores = np.array([0.5 + 0.08 * k for k in range(6)])
    assert metrics["score_threshold"] == pytest.approx(float(scores[scores > 0.55].min()))
    assert metrics["calibration_precision"] == 1.0 and metrics["box_precision"] == 0.5
    # other curated labels (every box a circle): the confident squares are now wrong, no cut
    # reaches 0.9, and no box of this model is trusted
    circles = {t: [{"text": "circle", "bbox": box}] for t in targets}
    other = agreement_metrics(ScriptedModel(predictions, circles), examples, target_precision=0.9)
    assert not other["calibration_reached"] and other["score_threshold"] > scores.max()
    lenient = agreement_metrics(ScriptedModel(predictions, circles), examples, target_precision=0.54)
    assert lenient["score_threshold"] == pytest.approx(0.55)


def test_the_labelled_scope_counts_only_boxes_where_the_labels_looked():
    from engine.retrain.calibrate import labelled

    reference = [("square", [0, 0, 10, 10])]
    predicted = [("square", [0, 0, 10, 10]), ("circle", [1, 0, 10, 10]), ("square", [50, 50, 60, 60])]
    assert labelled(predicted, reference, 0.3).tolist() == [True, True, False]  # any label counts as looked at
    assert labelled(predicted, [], 0.3).tolist() == [False] * 3


def test_boxes_off_the_labels_do_not_move_a_labelled_threshold(tmp_path):
    root, _ = make_root(tmp_path, images=4, seed=5, per_shard=2)
    box, elsewhere = [4.0, 4.0, 30.0, 30.0], [60.0, 60.0, 90.0, 90.0]
    examples, targets, predictions = [], {}, []
    for k, (image_id, w) in enumerate(sorted(image_locations(root).items())):
        targets[f"t{k}"] = [{"text": "square", "bbox": box}]
        examples.append(Example(image_id, "OD", "<OD>", f"t{k}", w.width, w.height, w.shard, w.key,
                                w.shard_format, "validation"))
        predictions.append([{"text": "square", "bbox": box, "score": 0.6 + 0.05 * k},
                            {"text": "square", "bbox": elsewhere, "score": 0.95}])  # an object the labels may miss
    everything = agreement_metrics(ScriptedModel(predictions, targets), examples, target_precision=0.9)
    looked = agreement_metrics(ScriptedModel(predictions, targets), examples, target_precision=0.9,
                               calibration_scope="labelled")
    assert not everything["calibration_reached"]  # the top-scored boxes are off the labels
    assert looked["score_threshold"] == pytest.approx(0.6) and looked["calibration_boxes"] == 4


def test_the_new_box_threshold_is_the_same_curve_at_a_stricter_precision():
    out = calibration([0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, True, True], references=5, target=0.75,
                      new_box_target=1.0)
    assert out["score_threshold"] == 0.5 and out["new_box_threshold"] == 0.8
    assert calibration([0.4], [False], 1, 0.9, new_box_target=0.95)["new_box_threshold"] > 0.4


def test_independent_references_are_the_other_sources_boxes_as_they_gave_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.retrain.examples import calibration_references
    from storage.layout import DataRoot

    root = DataRoot(tmp_path)
    raw = {0: [("l-cat", "a", "coco_labels", "cat", [0, 0, 10, 10]), ("l-owl", "a", "coco_labels", "owl", [20, 20, 30, 30]),
               ("d-cow", "b", "detector", "cow", [5, 5, 15, 15])],
           1: [("m-dog", "a", "florence2", "dog", [40, 40, 50, 50]), ("m-owl", "a", "florence2", "owl", [22, 22, 32, 32]),
               ("l-owl-1", "a", "coco_labels", "owl", [20, 20, 30, 30])]}
    for round_, rows in raw.items():
        for source in {r[2] for r in rows}:
            mine = [r for r in rows if r[2] == source]
            folder = root.annotations(round_, source)
            folder.mkdir(parents=True)
            pq.write_table(pa.table({"annotation_id": [r[0] for r in mine], "image_id": [r[1] for r in mine],
                                     "round": [round_] * len(mine), "source": [source] * len(mine),
                                     "text": [r[3] for r in mine], "bbox": [r[4] for r in mine]}), folder / "shard=0.parquet")

    def row(annotation_id, image, label, bbox, seen, absorbed=()):
        return {"annotation_id": annotation_id, "image_id": image, "kind": "region", "region_type": "object",
                "parent_id": None, "label": label, "text": label, "bbox": bbox, "seen_by": seen, "absorbed_ids": list(absorbed)}

    curated = [row("l-cat", "a", "cat", [0, 0, 10, 10], ["coco_labels@v1"]),
               row("m-dog", "a", "dog", [40, 40, 50, 50], ["florence2@m1"]),  # the model's own new box
               # a label the model's box was fused into: moved and relabelled, given back as the label gave it
               row("l-owl", "a", "hawk", [21, 21, 31, 31], ["coco_labels@v1", "florence2@m1"], ["l-owl-1", "m-owl"]),
               row("d-cow", "b", "cow", [5, 5, 15, 15], ["detector@d1"])]
    independent = calibration_references(root, 1, curated)
    assert independent == {"a": [("cat", [0, 0, 10, 10]), ("owl", [20, 20, 30, 30])], "b": [("cow", [5, 5, 15, 15])]}
    everything = calibration_references(root, 1, curated, independent=False)
    assert everything["a"] == [("cat", [0, 0, 10, 10]), ("dog", [40, 40, 50, 50]), ("hawk", [21, 21, 31, 31])]


def test_a_model_is_not_confirmed_by_its_own_boxes(tmp_path):
    root, _ = make_root(tmp_path, images=4, seed=7, per_shard=2)
    box, own = [4.0, 4.0, 30.0, 30.0], [60.0, 60.0, 90.0, 90.0]
    examples, targets, predictions, references = [], {}, [], {}
    for k, (image_id, w) in enumerate(sorted(image_locations(root).items())):
        # the curated labels hold a square the model wrote itself (own) and an independent one
        targets[f"t{k}"] = [{"text": "square", "bbox": box}, {"text": "square", "bbox": own}]
        references[image_id] = [("square", box)]
        examples.append(Example(image_id, "OD", "<OD>", f"t{k}", w.width, w.height, w.shard, w.key,
                                w.shard_format, "validation"))
        predictions.append([{"text": "square", "bbox": own, "score": 0.9},  # its own box again
                            {"text": "circle", "bbox": box, "score": 0.8},  # wrong where the labels looked
                            {"text": "square", "bbox": box, "score": 0.5 + 0.05 * k}])
    mine = agreement_metrics(ScriptedModel(predictions, targets), examples, target_precision=0.9,
                             calibration_scope="labelled")
    fair = agreement_metrics(ScriptedModel(predictions, targets), examples, target_precision=0.9,
                             calibration_scope="labelled", references=references)
    assert mine["calibration_reached"] and mine["score_threshold"] == pytest.approx(0.9)  # confirmed by itself
    assert not fair["calibration_reached"] and fair["calibration_boxes"] == 8  # its own box is not counted


def test_the_evaluation_scores_boxes_with_the_annotators_views(tmp_path):
    from engine.retrain.evaluate import _decoded, run_examples

    root, _ = make_root(tmp_path, images=2, seed=11, per_shard=2)
    examples, predictions = [], []
    for image_id, w in sorted(image_locations(root).items()):
        examples.append(Example(image_id, "OD", "<OD>", "t", w.width, w.height, w.shard, w.key,
                                w.shard_format, "validation"))
        predictions.append([{"text": "square", "bbox": [4.0, 4.0, 30.0, 30.0], "score": 0.8},
                            {"text": "circle", "bbox": [40.0, 40.0, 60.0, 60.0], "score": 0.6}])
    width = examples[0].width
    # each image's mirrored view is generated right after it and confirms the square only
    views = [[{"text": "Square", "bbox": [width - 30.0, 4.0, width - 4.0, 30.0], "score": 0.4}]
             if e.width == width else [] for e in examples]
    scripted = [p for pair in zip(predictions, views) for p in pair]
    results = run_examples(ScriptedModel(copy.deepcopy(scripted), {}, views=("hflip",)), _decoded(examples))
    assert [p["score"] for p in results[0]] == [pytest.approx(0.6), pytest.approx(0.3)]
    plain = run_examples(ScriptedModel(copy.deepcopy(predictions), {}), _decoded(examples))
    assert [p["score"] for p in plain[0]] == [0.8, 0.6]  # no views: the scores as generated


def test_an_unreachable_target_falls_back_to_the_most_precise_cut_that_keeps_boxes():
    from engine.retrain.calibrate import best_cut

    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    hit = [False, True, True, True, True, False, True, False]  # precision: 0, .5, .67, .75, .8, .67, .71, .63
    assert best_cut(scores, hit, 1) == 0.5 and best_cut(scores, hit, 6) == 0.3 and best_cut(scores, hit, 9) is None
    out = calibration(scores, hit, references=8, target=0.95, new_box_target=0.95, min_boxes=3)
    assert not out["calibration_reached"] and out["score_threshold"] == 0.5
    assert out["calibration_precision"] == 0.8 and out["calibration_recall"] == 0.5
    assert out["new_box_threshold"] > 0.9  # new boxes are not let in on a fallback
    assert calibration(scores, hit, references=8, target=0.95, min_boxes=6)["score_threshold"] == 0.3
    old_rule = calibration(scores, hit, references=8, target=0.95, min_boxes=0)
    assert not old_rule["calibration_reached"] and old_rule["score_threshold"] > 0.9


def test_a_target_reached_on_too_few_boxes_is_not_reached():
    # the two top boxes are right (precision 1.0 on 2 boxes), then precision stays below 0.9
    scores = [0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01]
    hit = [True, True, False, True, True, False, True, True, False, True, True, False]
    assert threshold_at_precision(scores, hit, 0.9) == 0.85  # the old rule: 2 of 2 boxes
    assert threshold_at_precision(scores, hit, 0.9, min_boxes=10) is None
    out = calibration(scores, hit, references=12, target=0.9, new_box_target=0.9, min_boxes=10)
    assert not out["calibration_reached"] and out["score_threshold"] == 0.05  # 8 of 11: the best cut of >= 10 boxes
    assert out["new_box_threshold"] > 0.9  # and no new box on the strength of two


def test_an_unreachable_new_box_target_falls_back_only_to_a_cut_of_the_fallback_precision():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    hit = [False, True, True, True, True, False, True, False]  # best cut of >= 3 boxes: 0.5, precision 0.8
    strict = calibration(scores, hit, references=8, target=0.95, new_box_target=0.95, min_boxes=3)
    assert not strict["new_box_reached"] and strict["new_box_threshold"] > 0.9  # fallback off (0): none
    low = calibration(scores, hit, references=8, target=0.95, new_box_target=0.95, min_boxes=3, new_box_fallback=0.8)
    assert not low["new_box_reached"] and low["new_box_threshold"] == 0.5
    high = calibration(scores, hit, references=8, target=0.95, new_box_target=0.95, min_boxes=3, new_box_fallback=0.85)
    assert high["new_box_threshold"] > 0.9  # the best cut (0.8) is below the fallback precision
    reached = calibration(scores, hit, references=8, target=0.75, new_box_target=0.75, min_boxes=3, new_box_fallback=0.5)
    assert reached["new_box_reached"] and reached["new_box_threshold"] == 0.5  # reached: the fallback plays no part
    with pytest.raises(ValueError, match="new_box_fallback_precision must be in"):
        TrainingConfig(new_box_fallback_precision=1.5)
