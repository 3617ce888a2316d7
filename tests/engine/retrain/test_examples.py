"""Training examples: every target round-trips through the real Florence-2 processor, an
image's examples share its split, and ``fld export`` writes the examples as JSON lines."""

from __future__ import annotations

import collections
import json

import pytest

from engine.retrain.examples import build_examples
from florence2 import format as ff
from florence2.checkpoint import build_checkpoint
from florence2.targets import image_targets
from storage.schema import annotation_row
from tests.engine.retrain.data import curated_rows, make_root, write_curated


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import Florence2Processor

    out = build_checkpoint(tmp_path_factory.mktemp("f2") / "tiny", seed=0)
    return Florence2Processor.from_pretrained(out, local_files_only=True)


def _rows(width: int, height: int) -> list[dict]:
    """Curated rows of one image exercising every task."""
    common = dict(image_id="img", round_=1, source="t", source_version="1")
    caption = annotation_row(kind="caption", granularity="brief", text="A red car next to a stop sign.", **common)
    car, sign = [0.1 * width, 0.2 * height, 0.6 * width, 0.9 * height], [0.55 * width, 0.05 * height, width, 0.3 * height]
    tri = [0.1 * width, 0.1 * height, 0.5 * width, 0.1 * height, 0.3 * width, 0.5 * height]
    rect = [0.6 * width, 0.6 * height, 0.9 * width, 0.6 * height, 0.9 * width, 0.9 * height, 0.6 * width, 0.9 * height]
    quad = [0.1 * width, 0.1 * height, 0.8 * width, 0.15 * height, 0.78 * width, 0.4 * height, 0.12 * width, 0.35 * height]
    rows = [
        caption,
        annotation_row(kind="caption", granularity="detailed", text="A red car parks. A sign stands.", **common),
        annotation_row(kind="caption", granularity="more_detailed", text="A long text about a red car.", **common),
        {**annotation_row(kind="region", region_type="object", text="a red car parked", bbox=car,
                          polygons=[tri, rect], **common), "label": "car"},
        {**annotation_row(kind="region", region_type="object", text="stop sign", bbox=sign, **common), "label": "stop sign"},
        annotation_row(kind="region", region_type="ocr", text="OPEN 24h", quad=quad, bbox=[0, 0, 1, 1], **common),
        annotation_row(kind="region", region_type="ocr", text="EXIT", bbox=car, **common),  # no quad: box corners
    ]
    for text, box in (("red car", car), ("stop sign", sign), ("stop sign", car), ("it", car)):  # "it" is banned
        start = caption["text"].find(text) if text != "it" else 0
        rows.append(annotation_row(kind="phrase", granularity="brief", text=text, bbox=box, span_start=start,
                                   span_end=start + len(text), parent_id=caption["annotation_id"], **common))
    rows.append(annotation_row(kind="region", region_type="object", granularity="brief", text="a small red car",
                               bbox=car, parent_id=rows[3]["annotation_id"], **common))  # the car's description
    low_sign = [0.05 * width, 0.92 * height, 0.2 * width, height]  # below the car: grouped under the first sign
    rows.append({**annotation_row(kind="region", region_type="object", text="stop sign", bbox=low_sign, **common),
                 "label": "stop sign"})
    return rows


def _close(got, want, width, height) -> bool:
    """Within one location bin plus the processor's truncation to whole pixels."""
    return len(got) == len(want) and all(
        abs(g - w) <= (width if i % 2 == 0 else height) / ff.NUM_BINS + 1.0 for i, (g, w) in enumerate(zip(got, want)))


@pytest.mark.parametrize("width,height", [(640, 480), (37, 91), (1999, 333)])
def test_every_target_round_trips_through_the_processor(processor, width, height):
    rows = _rows(width, height)
    targets = image_targets(rows, width, height)
    assert {task for task, _, _ in targets} == set(ff.TASK_ORDER)
    by_task = collections.defaultdict(list)
    for task, prompt, target in targets:
        ids = processor.tokenizer(target).input_ids  # what the model learns to generate
        text = processor.tokenizer.decode(ids, skip_special_tokens=False)
        token = ff.task_spec(task).token
        by_task[task].append((prompt, processor.post_process_generation(text, task=token, image_size=(width, height))[token]))
    captions = {r["granularity"]: r["text"] for r in rows if r["kind"] == "caption"}
    for task, granularity in (("CAPTION", "brief"), ("DETAILED_CAPTION", "detailed"),
                              ("MORE_DETAILED_CAPTION", "more_detailed")):
        assert [answer for _, answer in by_task[task]] == [captions[granularity]]
    car, sign = rows[3]["bbox"], rows[4]["bbox"]
    (_, od), = by_task["OD"]  # labels alphabetical; a label's boxes in reading order: the sign (y0 = 5%), the low sign
    low_sign = rows[-1]["bbox"]
    assert od["labels"] == ["car", "stop sign", "stop sign"]
    assert all(_close(g, w, width, height) for g, w in zip(od["bboxes"], [car, sign, low_sign]))
    od_target, = [target for task, _, target in targets if task == "OD"]  # each label once, as released models write
    assert od_target.count("stop sign") == 1 and od_target.startswith("car<loc_")
    seg_target, = [target for task, _, target in targets if task == "REGION_TO_SEGMENTATION"]
    assert seg_target.startswith("<loc_") and "<sep>" in seg_target and "poly>" not in seg_target
    (_, dense), = by_task["DENSE_REGION_CAPTION"]  # only the region whose text differs from its label
    assert dense["labels"] == ["a red car parked"] and _close(dense["bboxes"][0], car, width, height)
    (_, ocr), = by_task["OCR_WITH_REGION"]
    assert ocr["labels"] == ["OPEN 24h", "EXIT"]
    assert _close(ocr["quad_boxes"][0], rows[5]["quad"], width, height)
    assert _close(ocr["quad_boxes"][1], [car[0], car[1], car[2], car[1], car[2], car[3], car[0], car[3]], width, height)
    (prompt, grounded), = by_task["CAPTION_TO_PHRASE_GROUNDING"]
    assert prompt == "<CAPTION_TO_PHRASE_GROUNDING>" + captions["brief"]
    assert grounded["labels"] == ["red car", "stop sign", "stop sign"]  # "it" left out
    # a phrase's boxes follow each other, left to right
    assert all(_close(g, w, width, height) for g, w in zip(grounded["bboxes"], [car, car, sign]))
    (prompt, described), = by_task["REGION_TO_DESCRIPTION"]  # only the car has a description
    assert prompt == ff.task_prompt("REGION_TO_DESCRIPTION", bbox=car, width=width, height=height)
    assert described == "a small red car"
    (prompt, seg), = by_task["REGION_TO_SEGMENTATION"]  # only the car has polygons
    assert prompt == ff.task_prompt("REGION_TO_SEGMENTATION", bbox=car, width=width, height=height)
    assert len(seg["polygons"]) == 1 and len(seg["polygons"][0]) == 2
    assert all(_close(g, w, width, height) for g, w in zip(seg["polygons"][0], rows[3]["polygons"]))


def test_rows_a_task_cannot_encode_are_skipped_and_counted():
    common = dict(image_id="img", round_=1, source="t", source_version="1")
    rows = [annotation_row(kind="caption", granularity="brief", text="a <loc_3> caption", **common),
            annotation_row(kind="caption", granularity="detailed", text="fine words", **common)]
    skipped = collections.Counter()
    targets = image_targets(rows, 100, 100, skipped=skipped)
    assert targets == [("DETAILED_CAPTION", "<DETAILED_CAPTION>", "fine words")] and skipped == {"CAPTION": 1}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("ts"), images=8, seed=2, per_shard=4)
    write_curated(root, curated_rows(root, truth))
    return root, truth


def test_examples_of_a_root_are_stable_and_point_at_their_images(small_root):
    from storage.decode import decode_rgb
    from storage.readers import READERS

    root, truth = small_root
    examples, summary = build_examples(root, 1, eval_fraction=0.5, seed=1)
    again, _ = build_examples(root, 1, eval_fraction=0.5, seed=1)
    assert examples == again and summary["images"] == 8 and summary["images_not_found"] == 0
    splits = collections.defaultdict(set)
    for e in examples:
        splits[e.image_id].add(e.split)
    assert all(len(s) == 1 for s in splits.values()) and {s for v in splits.values() for s in v} == {"train", "validation"}
    sizes = {i["file_name"].split(".")[0]: (i["width"], i["height"]) for i in truth["images"]}
    for e in examples[:10]:  # the shard + key locate the image, whose size is the example's
        record = next(r for r in READERS[e.shard_format](e.shard).records() if r.key == e.key)
        assert decode_rgb(record.data).size == (e.width, e.height) == sizes[e.key]
    assert sum(e.task == "OD" for e in examples) == 8


def test_fld_export_writes_the_examples(small_root, tmp_path, capsys):
    import hashlib

    import engine.commands.export  # noqa: F401  (registers the command)
    from engine.cli import main

    root, _ = small_root
    out = tmp_path / "florence2"
    assert main(["export", "--root", str(root.path), "--round", "1", "--format", "florence2",
                 "--out", str(out), "--eval-fraction", "0.5", "--seed", "1"]) == 0
    examples, _ = build_examples(root, 1, eval_fraction=0.5, seed=1)
    lines = []
    for split_file in sorted(out.glob("*.jsonl")):
        for text in split_file.read_text().splitlines():
            line = json.loads(text)
            data = (split_file.parent / line["image"]).read_bytes()  # relative to the file, as scripts read it
            assert hashlib.sha256(data).hexdigest() == line["image_id"]
            lines.append((line["image_id"], line["task"], line["prefix"], line["suffix"], split_file.stem))
    assert sorted(lines) == sorted((e.image_id, e.task, e.prompt, e.target, e.split) for e in examples)
    assert {p.stem for p in out.glob("*.jsonl")} == {"train", "validation"}
    assert main(["export", "--root", str(root.path), "--round", "9", "--out", str(tmp_path / "x")]) == 2
    assert "no curated set" in capsys.readouterr().err


@pytest.mark.parametrize("width,height", [(640, 480), (37, 91)])
def test_per_box_targets_keep_a_per_box_checkpoint_s_format_and_parse_to_the_same_geometry(processor, width, height):
    rows = _rows(width, height)
    released = {t: (p, x) for t, p, x in image_targets(rows, width, height)}
    per_box = {t: (p, x) for t, p, x in image_targets(rows, width, height, target_format="per_box")}
    assert per_box["OD"][1].count("stop sign") == 2 and per_box["OD"][1].startswith("stop sign<loc_")  # reading order
    assert per_box["REGION_TO_SEGMENTATION"][1].startswith("<poly>") and per_box["REGION_TO_SEGMENTATION"][1].endswith("</poly>")
    for task in ("OD", "REGION_TO_SEGMENTATION"):
        token = ff.task_spec(task).token
        parsed = [processor.post_process_generation(targets[task][1], task=token, image_size=(width, height))[token]
                  for targets in (released, per_box)]
        if task == "OD":  # the same boxes, each with its label, in another order
            pairs = [sorted(zip(p["labels"], map(tuple, p["bboxes"]))) for p in parsed]
            assert pairs[0] == pairs[1]
        else:
            assert parsed[0]["polygons"] == parsed[1]["polygons"]
    with pytest.raises(ValueError, match="target_format"):
        image_targets(rows, width, height, target_format="grouped")
