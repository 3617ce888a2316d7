"""OCR text, captions and masks go to Label Studio and come back: a person fixing an OCR word,
rewriting a caption and redrawing a mask makes human rows with exactly those values."""

from __future__ import annotations

import json

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.curate.parquet_io import read_curated
from engine.review.config import ReviewConfig
from engine.review.export import export_label_studio
from engine.review.importing import import_review
from engine.review.label_studio import MASK_SUFFIX, regions_of, row_results
from engine.review.plan import plan_review, round_thresholds
from tests.engine.review.data import CURATION, reviewed_root
from tests.engine.review.people import export_of


def test_a_row_shows_and_reads_back_as_the_same_region():
    row = {"annotation_id": "a1", "kind": "region", "region_type": "object", "text": "circle", "label": "circle",
           "bbox": [10.0, 20.0, 50.0, 60.0], "polygons": [[10.0, 20.0, 50.0, 20.0, 30.0, 60.0]], "score": 0.8}
    items = row_results(row, 200, 100)
    assert [i["id"] for i in items] == ["a1", "a1" + MASK_SUFFIX]
    region = regions_of(items, 200, 100)["a1"]
    assert region.label == "circle" and region.has_polygon_result
    assert region.box == [10.0, 20.0, 50.0, 60.0] and region.polygon == row["polygons"][0]


def test_a_person_fixing_text_caption_and_mask_makes_exactly_those_rows(tmp_path):
    root, _ = reviewed_root(tmp_path, images=4)
    plan_review(root, 0, 1, round_thresholds(root, 0, CurationConfig().confidence), ReviewConfig())
    export_label_studio(root, 0, tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())

    def edit(result):
        for item in result:
            if item["from_name"] == "ocr_text":
                item["value"]["text"] = ["SALE 50%"]
            elif item["from_name"] == "caption_brief":
                item["value"]["text"] = ["a few shapes"]
        for item in list(result):  # draw a triangle mask for the first box that had none
            if item["from_name"] == "object" and not any(i["id"] == item["id"] + MASK_SUFFIX for i in result):
                v = item["value"]
                result.append({"id": item["id"] + MASK_SUFFIX, "from_name": "mask", "to_name": "image",
                               "type": "polygonlabels", "original_width": item["original_width"],
                               "original_height": item["original_height"],
                               "value": {"points": [[v["x"], v["y"]], [v["x"] + v["width"], v["y"]],
                                                    [v["x"], v["y"] + v["height"]]],
                                         "polygonlabels": v["rectanglelabels"]}})
                break
        return result

    export = tmp_path / "export.json"
    export.write_text(json.dumps(export_of(tasks, {0: edit})))
    summary = import_review(root, export)
    assert summary.corrected == 3 and summary.deleted == 0 and summary.added == 0
    curate_round(root, 1, CURATION)
    image = tasks[0]["data"]["fld_image_id"]
    humans = [r for r in read_curated(root, 1).to_pylist() if r["image_id"] == image and r["source"] == "human"]
    by_kind = {(r["kind"], r["region_type"]): r for r in humans}
    assert by_kind[("region", "ocr")]["text"] == "SALE 50%" and by_kind[("region", "ocr")]["quad"] is not None
    assert by_kind[("caption", None)]["text"] == "a few shapes" and by_kind[("caption", None)]["granularity"] == "brief"
    masked = by_kind[("region", "object")]
    assert masked["mask_rle"] and len(masked["polygons"][0]) == 6
    captions = [r for r in read_curated(root, 1).to_pylist() if r["image_id"] == image and r["kind"] == "caption"]
    assert [c["text"] for c in captions] == ["a few shapes"]  # the person's caption replaced the model's
