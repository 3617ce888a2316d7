"""FiftyOne reads a release: its own COCO importer (``fiftyone.utils.coco.COCODetectionDatasetImporter``,
iterated, no database) finds every released image under its file name, with the release's boxes,
labels, confidences and masks. FiftyOne runs in its own venv (``scripts/install_fiftyone.sh``), or in
this interpreter if it has FiftyOne; the test skips only when neither does."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.release.build import build_release

REPO_ROOT = Path(__file__).resolve().parents[3]
FIFTYONE_PYTHON = REPO_ROOT / ".venv-fiftyone" / "bin" / "python"
READER = Path(__file__).with_name("fiftyone_coco.py")


def fiftyone_python() -> str | None:
    """The interpreter that has FiftyOne: ``.venv-fiftyone``'s once installed, else this one if it has it."""
    if (FIFTYONE_PYTHON.parent.parent / ".fld-installed").is_file() and os.access(FIFTYONE_PYTHON, os.X_OK):
        return str(FIFTYONE_PYTHON)
    return sys.executable if importlib.util.find_spec("fiftyone") else None


pytestmark = pytest.mark.skipif(fiftyone_python() is None, reason="FiftyOne is not installed: `bash "
                                "scripts/install_fiftyone.sh` puts it in .venv-fiftyone (it cannot share .venv)")


def read_with_fiftyone(release: Path, tmp_path: Path) -> dict:
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true", "HOME": str(tmp_path)}  # no analytics, no ~/.fiftyone
    done = subprocess.run([fiftyone_python(), str(READER), str(release / "images"), str(release / "exports/coco.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["user photos", "two-round sample"])
def release(request) -> Path:
    if request.param == "user photos":  # real names: spaces, brackets, a duplicate name, an unlabelled image
        return request.getfixturevalue("user_release")["folder"]
    return Path(build_release(request.getfixturevalue("report_root")["root"], 1, "fiftyone-r1")["path"])  # masks


def test_fiftyone_finds_every_image_by_name_with_the_release_annotations(release, tmp_path):
    coco = json.loads((release / "exports/coco.json").read_text())
    seen = read_with_fiftyone(release, tmp_path)
    samples = {s["file"]: s for s in seen["samples"]}
    assert len(samples) == len(seen["samples"]) == len(coco["images"])
    assert sorted(samples) == sorted(i["file_name"] for i in coco["images"])  # every image, found by its name
    assert all(s["exists"] for s in samples.values())
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    assert seen["classes"] == [categories.get(k, str(k)) for k in range(1, max(categories) + 1)]
    for image in coco["images"]:
        sample = samples[image["file_name"]]
        assert (sample["width"], sample["height"]) == (image["width"], image["height"])
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        got = {d["fld_annotation_id"]: d for d in sample["detections"]}
        assert len(sample["detections"]) == len(got) == len(anns)
        assert Counter(d["label"] for d in sample["detections"]) == Counter(categories[a["category_id"]] for a in anns)
        for a in anns:
            d = got[a["fld_annotation_id"]]
            x, y, w, h = a["bbox"]
            assert d["label"] == categories[a["category_id"]] and d["confidence"] == pytest.approx(a["score"])
            relative = [x / image["width"], y / image["height"], w / image["width"], h / image["height"]]
            assert d["bounding_box"] == pytest.approx(relative, abs=1e-6)
        assert len(sample["masks"]) == sum("segmentation" in a for a in anns)
    assert sum(len(s["detections"]) for s in samples.values()) == len(coco["annotations"]) > 0
