"""Smoke test of the real Label Studio harness: import a task with a prediction, serve its image, annotate, export JSON.

Skips while Label Studio is not installed (bash scripts/install_label_studio.sh), unless
FLD_REQUIRE_LABEL_STUDIO=1, which turns the skip into a failure.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.review.label_studio_server import LABEL_STUDIO_VENV, label_studio_installed

LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="label" toName="image"><Label value="cat"/><Label value="dog"/></RectangleLabels></View>'
)
IMAGE_WIDTH, IMAGE_HEIGHT = 40, 30


def require_label_studio() -> None:
    """Skip (or fail, with FLD_REQUIRE_LABEL_STUDIO=1) when the Label Studio venv is missing."""
    if label_studio_installed():
        return
    reason = f"Label Studio is not installed in {LABEL_STUDIO_VENV}; run bash scripts/install_label_studio.sh"
    if os.environ.get("FLD_REQUIRE_LABEL_STUDIO") == "1":
        pytest.fail(f"FLD_REQUIRE_LABEL_STUDIO=1 but {reason}")
    pytest.skip(reason)


def write_png(path: Path) -> bytes:
    """Write a small RGB PNG to ``path`` and return its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMAGE_WIDTH, IMAGE_HEIGHT), (200, 40, 90)).save(path, format="PNG")
    return path.read_bytes()


def rectangle(region_id: str, x: float, y: float, width: float, height: float, label: str) -> dict:
    """One RectangleLabels region in Label Studio's result format (percent coordinates)."""
    return {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": IMAGE_WIDTH,
        "original_height": IMAGE_HEIGHT,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0, "rectanglelabels": [label]},
    }


@pytest.mark.slow
def test_round_trip_through_a_real_label_studio(label_studio) -> None:
    client, document_root = label_studio
    png_bytes = write_png(document_root / "smoke" / "images" / "cell.png")
    image_url = "/data/local-files/?d=smoke/images/cell.png"
    predicted = rectangle("pred-1", 10.0, 20.0, 30.0, 40.0, "cat")

    project_id = client.create_project("fld review smoke", LABEL_CONFIG)
    client.add_local_files_storage(project_id, document_root / "smoke" / "images")
    prediction = {"model_version": "fld-test", "result": [predicted]}
    client.import_tasks(project_id, [{"data": {"image": image_url}, "predictions": [prediction]}])

    tasks = client.list_tasks(project_id)
    assert len(tasks) == 1
    task = tasks[0]
    assert task["data"]["image"] == image_url
    assert [p["result"] for p in task["predictions"]] == [[predicted]]
    assert client.fetch(image_url) == png_bytes

    moved = rectangle("pred-1", 12.5, 22.5, 30.0, 40.0, "dog")
    added = rectangle("new-region-1", 50.0, 5.0, 25.0, 25.0, "cat")
    submitted = [moved, added]
    annotation = client.submit_annotation(task["id"], copy.deepcopy(submitted), parent_prediction=task["predictions"][0]["id"])
    assert annotation["result"] == submitted

    exported = client.export_json(project_id)

    assert [t["id"] for t in exported] == [task["id"]]
    exported_task = exported[0]
    assert exported_task["data"]["image"] == image_url
    assert [a["id"] for a in exported_task["annotations"]] == [annotation["id"]]
    exported_annotation = exported_task["annotations"][0]
    assert exported_annotation["result"] == submitted
    assert exported_annotation["was_cancelled"] is False
    # the JSON export lists a task's predictions by id only; the annotation links the one it started from
    assert exported_task["predictions"] == [task["predictions"][0]["id"]]
    assert exported_annotation["parent_prediction"] == task["predictions"][0]["id"]
