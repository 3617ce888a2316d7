"""The review loop through a real Label Studio: our config and tasks go in over its API, a person's
corrections (move a box, fix a label, delete a box, draw a box) are submitted as its labelling UI
submits them, its JSON export comes back through ``fld review import``, and curation then holds
exactly the corrections, each with its decision recorded.

Skips while Label Studio is not installed (bash scripts/install_label_studio.sh), unless
FLD_REQUIRE_LABEL_STUDIO=1 (``scripts/test.sh`` sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import copy
import json

import pytest

from engine.cli import main
from engine.curate.curation import curate_round
from engine.curate.parquet_io import read_curated
from tests.engine.review.data import CURATION, reviewed_root
from tests.engine.review.people import assert_holds_the_corrections, correct

pytestmark = pytest.mark.slow


def test_corrections_made_in_label_studio_come_back_exactly(label_studio, tmp_path, capsys):
    studio, document_root = label_studio
    # 8 images: the queue holds only images with a reason to look (never padded), and this needs two
    root, _ = reviewed_root(tmp_path, images=8)
    out = document_root / "review"  # the server serves its document root: the export lies in a folder of it
    assert main(["review", "plan", "--root", str(root.path), "--round", "0", "--budget", "2"]) == 0
    assert main(["review", "export", "--root", str(root.path), "--round", "0", "--to", "label-studio",
                 "--out", str(out), "--image-url-prefix", "/data/local-files/?d=review/"]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    project = studio.create_project("fld review, round 0", (out / "label_config.xml").read_text())
    studio.add_local_files_storage(project, out / "images")
    studio.import_tasks(project, tasks)
    served = {t["data"]["fld_image_id"]: t for t in studio.list_tasks(project)}
    assert set(served) == {t["data"]["fld_image_id"] for t in tasks}
    task = served[tasks[0]["data"]["fld_image_id"]]
    image = document_root / task["data"]["image"].split("?d=", 1)[1]
    assert studio.fetch(task["data"]["image"]) == image.read_bytes()  # Label Studio serves our image
    prediction = task["predictions"][0]
    assert {item["id"] for item in prediction["result"]} >= set(task["data"]["fld_shown"])
    result = copy.deepcopy(prediction["result"])  # the UI starts from the prediction, region ids kept
    for item in result:
        item.pop("score", None)
    studio.submit_annotation(task["id"], correct(result), parent_prediction=prediction.get("id"))
    exported = studio.export_json(project)
    export = tmp_path / "project-export.json"
    export.write_text(json.dumps(exported))
    capsys.readouterr()
    assert main(["review", "import", "--root", str(root.path), str(export)]) == 0
    line = capsys.readouterr().out
    assert "1 of 1 images reviewed" in line and "2 corrected, 1 deleted, 1 added" in line  # it exports annotated tasks
    before = read_curated(root, 0).to_pylist()
    curate_round(root, 1, CURATION)
    assert_holds_the_corrections(root, task, before, 1)
    # the image nobody reviewed keeps its rows
    other = tasks[1]["data"]["fld_image_id"]
    assert sorted(r["annotation_id"] for r in read_curated(root, 1).to_pylist() if r["image_id"] == other) == \
        sorted(r["annotation_id"] for r in before if r["image_id"] == other)
