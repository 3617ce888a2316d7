"""The review loop without a server: plan ranks by disagreement, export writes tasks Label Studio
reads, a person's export comes back as verdicts and human rows, and curation gives them precedence
with every decision recorded (the same path the real Label Studio test drives through its API)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import duckdb
import pytest

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.curate.parquet_io import read_curated
from engine.report.dashboard import DashboardConfig, build_dashboard
from engine.report.gallery_rows import gallery_rows
from engine.review.config import ReviewConfig
from engine.review.export import export_label_studio
from engine.review.importing import ReviewImportError, import_review
from engine.review.plan import plan_review, round_thresholds
from storage.catalog import Catalog
from tests.engine.review.data import CURATION, reviewed_root, write_sources
from tests.engine.review.people import assert_holds_the_corrections, correct, export_of


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    root, boxes = reviewed_root(tmp)
    plan_review(root, 0, 4, round_thresholds(root, 0, CurationConfig().confidence), ReviewConfig())
    export_label_studio(root, 0, tmp / "ls")
    return root, boxes, tmp / "ls"


def test_plan_ranks_disputed_images_first_and_the_catalog_shows_the_queue(exported):
    root, _, _ = exported
    with Catalog(root, read_only=True) as catalog:
        queue = catalog.query("select rank, priority, disputed_labels, reasons from review_queue order by rank")
    assert [r[0] for r in queue] == [1, 2]  # budget 4, but only 2 images have a reason: no padding
    assert all(r[1] > 0 and r[3] for r in queue)
    assert queue[0][1] >= queue[-1][1] and queue[0][2] >= 1  # a swapped seed label is a dispute
    assert any("is also called" in reason for reason in queue[0][3])
    priorities = [r[1] for r in queue]
    assert priorities == sorted(priorities, reverse=True)


def test_export_writes_tasks_config_and_images_label_studio_reads(exported):
    root, _, out = exported
    tasks = json.loads((out / "tasks.json").read_text())
    config = ET.fromstring((out / "label_config.xml").read_text())
    controls = {el.get("name") for el in config.iter() if el.get("toName") == "image"}
    assert len(tasks) == 2
    for task in tasks:
        assert (out / task["data"]["image"].split("?d=", 1)[1]).is_file()
        for item in task["predictions"][0]["result"]:
            assert item["from_name"] in controls and 0 <= item["value"].get("x", 0) <= 100
        assert {i["id"] for i in task["predictions"][0]["result"]} >= set(task["data"]["fld_shown"])
    labels = {el.get("value") for el in config.iter("Label")}
    assert {"circle", "square", "triangle"} <= labels


def test_import_then_curate_holds_exactly_the_corrections(exported, tmp_path):
    root, boxes, out = exported
    tasks = json.loads((out / "tasks.json").read_text())
    export = tmp_path / "project-1.json"
    export.write_text(json.dumps(export_of(tasks, {0: correct}, cancelled=(1,))))
    summary = import_review(root, export)
    shown = tasks[0]["data"]["fld_shown"]
    assert (summary.reviewed_images, summary.corrected, summary.deleted, summary.added) == (1, 2, 1, 1)
    assert summary.kept == len(shown) - 3 and summary.target_round == 1
    before = read_curated(root, 0).to_pylist()
    curate_round(root, 1, CURATION)
    assert_holds_the_corrections(root, tasks[0], before, 1)
    image = tasks[0]["data"]["fld_image_id"]
    after = [r for r in read_curated(root, 1).to_pylist() if r["image_id"] == image and r["kind"] == "region"]
    # the skipped task's image is untouched
    skipped = tasks[1]["data"]["fld_image_id"]
    assert sorted(r["annotation_id"] for r in read_curated(root, 1).to_pylist() if r["image_id"] == skipped) == \
        sorted(r["annotation_id"] for r in before if r["image_id"] == skipped)

    # the dashboard of the round that applied it shows what people did and how far each source agreed
    page = build_dashboard(root, 1, config=DashboardConfig(caption_images=0)).read_text()
    review = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page, re.S).group(1))["review"]
    assert review["people"] == [{"round": 1, "kept": summary.kept, "corrected": 2, "deleted": 1, "added": 1}]
    agreement = {a["source"]: a for a in review["agreement"]}
    assert set(agreement) <= {"seed", "model", "reader", "captioner"} and agreement["reader"]["agreement"] == 1.0
    assert sum(a["shown"] for a in agreement.values()) >= len(shown)
    assert all(0 <= a["agreement"] <= 1 for a in agreement.values()) and 'id="review"' in page
    # its gallery shows the previous rows people replaced among the round's dropped rows, with the trails' reasons
    trails = duckdb.sql(f"select annotation_id, cast(reason as varchar) from read_parquet('{root.decisions(1)}/*.parquet', "
                        "hive_partitioning = false) where cast(dropped_by as varchar) = 'human_review'").fetchall()
    previous = {r["annotation_id"] for r in before if r["image_id"] == image}
    replaced = {a: why for a, why in trails if a in previous}
    with Catalog(root, read_only=True) as catalog:
        drawn = gallery_rows(catalog, 1, [image], 200)[image].dropped
    assert len(replaced) >= 3 and {r["annotation_id"]: r["drop_reason"] for r in drawn if r["annotation_id"] in previous} \
        == replaced

    # the same file again adds nothing
    files = sorted(p.name for p in root.path.rglob("*.parquet"))
    again = import_review(root, export)
    assert again.already and sorted(p.name for p in root.path.rglob("*.parquet")) == files

    # a later model cannot override people: its box where the deleted one was is dropped, with the reason
    write_sources(root, boxes, 2)
    curate_round(root, 2, CURATION)
    later = [r for r in read_curated(root, 2).to_pylist() if r["image_id"] == image and r["kind"] == "region"]
    assert sorted(r["annotation_id"] for r in later) == sorted(r["annotation_id"] for r in after)
    with duckdb.connect() as con:
        reasons = {r[0] for r in con.execute(
            "select reason from read_parquet(?) t join read_parquet(?) a using (annotation_id) "
            "where a.image_id = ? and t.dropped_by = 'human_review'",
            [str(root.decisions(2) / "*.parquet"), str(root.annotations(2) / "*/*.parquet"), image]).fetchall()}
    assert reasons and all("reviewed by a person" in r for r in reasons)


def test_a_file_that_is_not_our_export_is_one_clear_error(exported, tmp_path):
    root, _, _ = exported
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps([{"data": {"image": "a.png"}}]))
    with pytest.raises(ReviewImportError, match="did not write"):
        import_review(root, bad)
    tasks = json.loads((exported[2] / "tasks.json").read_text())  # our own tasks: nobody submitted anything
    bad.write_text(json.dumps(tasks))
    with pytest.raises(ReviewImportError, match="no task .* has a submitted annotation"):
        import_review(root, bad)
    assert not any((root.path / "reviews").glob("import=*/import.json")) or \
        all(json.loads(p.read_text())["file"] != str(bad) for p in (root.path / "reviews").glob("import=*/import.json"))
    bad.write_text("{not json")
    with pytest.raises(ReviewImportError, match="not JSON"):
        import_review(root, bad)


def test_cli_plans_exports_and_imports_with_one_line_errors(tmp_path, capsys):
    from engine.cli import main

    root, _ = reviewed_root(tmp_path, images=8)  # 2 images with a reason to look
    out = tmp_path / "ls"
    assert main(["review", "export", "--root", str(root.path), "--round", "0", "--out", str(out)]) == 2
    assert "no review queue" in capsys.readouterr().err  # one line says what to run first
    assert main(["review", "plan", "--root", str(root.path), "--round", "0", "--budget", "2"]) == 0
    assert "review queue of round 0: 2 images" in capsys.readouterr().out
    assert main(["review", "export", "--root", str(root.path), "--round", "0", "--out", str(out)]) == 0
    assert "2 tasks" in capsys.readouterr().out
    tasks = json.loads((out / "tasks.json").read_text())
    export = tmp_path / "export.json"
    export.write_text(json.dumps(export_of(tasks, {0: lambda result: result})))  # a person kept everything
    assert main(["review", "import", "--root", str(root.path), str(export)]) == 0
    assert "1 of 2 images reviewed" in capsys.readouterr().out
    assert main(["review", "import", "--root", str(root.path), str(export)]) == 0
    assert "nothing added" in capsys.readouterr().out
    assert main(["review", "plan", "--root", str(root.path), "--round", "7", "--budget", "2"]) == 2
    err = capsys.readouterr().err
    assert "round 7 has no curated set" in err and len(err.strip().splitlines()) == 1
