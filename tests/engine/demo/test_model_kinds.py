"""model_kinds: a checkpoint's predictions become rows every kind figure reads, on unseen scenes."""

from __future__ import annotations

from engine.demo.model_kinds import model_kinds, prediction_rows, unseen_kind_truth
from engine.report.kind_quality import KINDS
from florence2.model import Prediction
from florence2.settings import Florence2Settings


def test_predictions_become_linked_rows():
    found = Prediction(payloads=[{"kind": "caption", "granularity": "brief", "text": "A red circle."},
                                 {"kind": "region", "region_type": "object", "text": "circle", "bbox": [1, 2, 30, 40]},
                                 {"kind": "region", "region_type": "object", "granularity": "brief",
                                  "text": "a red circle", "bbox": [1, 2, 30, 40]},
                                 {"kind": "phrase", "granularity": "brief", "text": "A red circle", "bbox": [1, 2, 30, 40]}],
                       parents=[None, None, 1, 0])
    rows = prediction_rows([Prediction(), found])
    assert [r["annotation_id"] for r in rows] == ["2-0", "2-1", "2-2", "2-3"]
    assert [r["parent_id"] for r in rows] == [None, None, "2-1", "2-0"] and {r["coco_id"] for r in rows} == {2}


def test_unseen_truth_and_a_real_checkpoint_through_every_figure():
    from engine.demo.report import DEMO_CHECKPOINT

    images, truth, vocabulary = unseen_kind_truth("plain", 3)
    assert len(images) == len(truth) == 3 and all(t.objects for t in truth.values())
    assert all(o.rle for t in truth.values() for o in t.objects)
    settings = Florence2Settings(model=str(DEMO_CHECKPOINT), device="cpu", num_beams=1, max_new_tokens=64,
                                 tasks=("CAPTION", "OD", "CAPTION_TO_PHRASE_GROUNDING"))
    got = model_kinds(DEMO_CHECKPOINT, settings, "plain", 6)
    assert got["images"] == 6 and set(got["coverage"]) == set(KINDS)
    assert got["shape_ap50"] > 0.2  # the shipped checkpoint sees its pre-training style
    assert got["captions"]["brief"]["captions"] <= 6
