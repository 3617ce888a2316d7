"""A person's work on exported tasks, written as Label Studio's JSON export writes it: each
task with its data, its predictions and one submitted annotation whose result starts from the
prediction (region ids kept) and carries the person's changes."""

from __future__ import annotations

import copy
from typing import Any, Callable

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
