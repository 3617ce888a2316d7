"""A person's work on exported tasks, written as Label Studio's JSON export writes it: each
task with its data, its predictions and one submitted annotation whose result starts from the
prediction (region ids kept) and carries the person's changes."""

from __future__ import annotations

import copy
from typing import Any, Callable

import duckdb
import pytest

from engine.curate.parquet_io import read_curated
from storage.layout import DataRoot

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def export_of(tasks: list[dict[str, Any]], edits: dict[int, Edit], cancelled: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Label Studio's JSON export after a person submitted ``edits[k](result)`` for task ``k``
    (tasks without an edit are not annotated; ``cancelled`` ones were skipped)."""
    out = []
    for k, task in enumerate(tasks):
        exported = {"id": 100 + k, "data": task["data"], "predictions": copy.deepcopy(task["predictions"]),
                    "annotations": []}
        if k in edits or k in cancelled:
            result = copy.deepcopy(task["predictions"][0]["result"])
            for item in result:
                item.pop("score", None)
            exported["annotations"].append({
                "id": 500 + k, "completed_by": 1, "was_cancelled": k in cancelled, "ground_truth": False,
                "created_at": "2026-12-05T12:00:00.000000Z", "updated_at": "2026-12-05T12:00:00.000000Z",
                "lead_time": 12.5, "result": [] if k in cancelled else edits[k](result)})
        out.append(exported)
    return out


def objects(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The object boxes of a result, in order."""
    return [item for item in result if item["from_name"] == "object"]


def relabelled(label: str) -> str:
    """The label a person changes ``label`` to."""
    return "triangle" if label != "triangle" else "circle"


def correct(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a person does to one task: move the first box 10 px right, relabel the second,
    delete the third, draw a new one in the top-left corner."""
    boxes = objects(result)
    boxes[0]["value"]["x"] += 10 * 100 / boxes[0]["original_width"]
    boxes[1]["value"]["rectanglelabels"] = [relabelled(boxes[1]["value"]["rectanglelabels"][0])]
    result.remove(boxes[2])
    result.append({"id": "drawn1", "from_name": "object", "to_name": "image", "type": "rectanglelabels",
                   "original_width": boxes[0]["original_width"], "original_height": boxes[0]["original_height"],
                   "value": {"x": 1, "y": 1, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["circle"]}})
    return result


def assert_holds_the_corrections(root: DataRoot, task: dict[str, Any], before: list[dict[str, Any]], round_: int
                                 ) -> dict[str, dict[str, Any]]:
    """Round ``round_``'s curated set holds exactly :func:`correct`'s changes to ``task``'s image,
    each with its decision recorded; returns the human rows by what they are (moved, relabelled, drawn)."""
    image = task["data"]["fld_image_id"]
    after = [r for r in read_curated(root, round_).to_pylist() if r["image_id"] == image and r["kind"] == "region"]
    originals = {r["annotation_id"]: r for r in before if r["image_id"] == image and r["kind"] == "region"}
    first, second, third = (objects(task["predictions"][0]["result"])[i]["id"] for i in range(3))
    assert {r["annotation_id"] for r in after if r["source"] != "human"} == set(originals) - {first, second, third}
    humans = [r for r in after if r["source"] == "human"]
    assert len(humans) == 3
    moved, renamed = originals[first], originals[second]
    box = [moved["bbox"][0] + 10, moved["bbox"][1], moved["bbox"][2] + 10, moved["bbox"][3]]
    found = {
        "moved": [h for h in humans if h["bbox"] == pytest.approx(box, abs=0.5)
                  and h["text"] == (moved["label"] or moved["text"])],
        "relabelled": [h for h in humans if h["bbox"] == pytest.approx(renamed["bbox"], abs=0.5)
                       and h["text"] == relabelled(renamed["label"] or renamed["text"])],
        "drawn": [h for h in humans if h["text"] == "circle" and h["bbox"][2] <= 0.11 * task["data"]["fld_width"] + 1],
    }
    assert all(len(rows) == 1 for rows in found.values()), found
    with duckdb.connect() as con:
        decided = {r[0]: r[1:] for r in con.execute(
            "select annotation_id, rules, dropped_by, reason, merged_into from read_parquet(?)",
            [str(root.decisions(round_) / "*.parquet")]).fetchall()}
    assert decided[third][1] == "human_review" and "deleted by a person" in decided[third][2]
    assert decided[second][1] == "human_review" and "corrected by a person" in decided[second][2]
    assert decided[second][3] == found["relabelled"][0]["annotation_id"]  # absorbed by its replacement
    assert decided[first][3] == found["moved"][0]["annotation_id"]
    assert {decided[h["annotation_id"]][0] for h in humans} == {"image,human_review"}  # no later rule judged them
    return {name: rows[0] for name, rows in found.items()}
