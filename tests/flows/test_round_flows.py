"""The Prefect flows end to end: a 2-round loop, kill-and-resume, the lock, config errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.annotate.plan import read_markers
from flows.release_flow import release_flow
from flows.review_flow import review_flow
from flows.round_flow import loop_flow
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.flows.conftest import fld_process, kill_run, write_config


def _table(folder: Path) -> list[tuple]:
    rows = []
    for path in sorted(folder.rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            row.pop("created_at", None)
            rows.append(tuple(sorted((k, json.dumps(v, default=str)) for k, v in row.items())))
    return sorted(rows)


def final_tables(root: DataRoot, round_: int = 0) -> dict[str, list[tuple]]:
    return {"annotations": _table(root.annotations(round_)), "curated": _table(root.curated(round_)),
            "decisions": _table(root.decisions(round_))}


def test_two_round_loop_end_to_end(tmp_path, tiny_sample):
    config = write_config(tmp_path / "engine.toml", tiny_sample)
    root = DataRoot(tmp_path / "root")
    results = loop_flow(root=str(root.path), config_path=str(config), rounds=2)
    assert [r["round"] for r in results] == [0, 1]
    steps = results[0]["steps"]
    assert list(steps) == ["ingest", "annotate", "curate", "review", "train", "evaluate", "promote", "dashboard"]
    assert steps["ingest"]["ok"] == 12
    # round 0 has only the exact labels' boxes: nothing points at an image, and the queue is never padded
    assert steps["review"]["queue"] == 0 and steps["review"]["export"] is None
    assert set(steps["annotate"]["sources"]) == {"coco_labels", "ocr", "sidecar_captions"}
    assert "florence2" in results[1]["steps"]["annotate"]["sources"]  # the current model annotates from round 1
    with Catalog(root) as catalog:
        assert catalog.query("select round, status from rounds order by round") == [(0, "done"), (1, "done")]
        models = catalog.query("select round, promoted, metrics from models order by round")
        curated_rounds = catalog.query("select distinct curated_round from curated order by 1")
    assert [m[0] for m in models] == [0, 1] and all("val_loss" in json.loads(m[2])["new"] for m in models)
    assert curated_rounds == [(0,), (1,)]
    assert root.report(1).exists() and (root.path / "rounds" / "round=1" / "config.json").exists()
    # a round already done is not run again
    again = loop_flow(root=str(root.path), config_path=str(config), rounds=1)
    assert again[0]["round"] == 2 or again[0].get("skipped")
    release = release_flow(root=str(root.path), round_number=1, name="tiny-v1")
    assert Path(release["path"]).is_dir() and len(release["manifest_sha256"]) == 64
    review = review_flow(root=str(root.path), round_number=1, out=str(tmp_path / "review"), budget=3)
    # nothing points at an image of this tiny loop either (no disputes, no scored boxes near a threshold):
    # the queue stays empty whatever the budget, and the export is an empty project
    assert review["queued"] == 0 and review["tasks"] == 0 and (tmp_path / "review" / "label_config.xml").is_file()
    # runs of several roots stay apart on one Prefect server: run names name the root (artifact keys
    # too: tests/flows/test_artifacts.py)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        names = {run.name for run in client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_DESC)}
    assert {f"round of {root.path}", f"loop of {root.path}", f"release of {root.path}"} <= names


def resume_to_the_clean_tables(root: DataRoot, clean: DataRoot, config: Path) -> None:
    """Run the round again on ``root``: it finishes with the tables of the never-killed ``clean`` run,
    done, with one model."""
    resumed = fld_process("round", "--root", str(root.path), "--config", str(config))
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]
    assert final_tables(root) == final_tables(clean)
    with Catalog(root) as catalog:
        assert catalog.query("select status from rounds where round = 0") == [("done",)]
        assert catalog.query("select count(*) from models where round = 0") == [(1,)]


def _wait_for(predicate, process, timeout: float = 300) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(os.environ.get("FLD_LONG_PROBES") != "1",
                    reason="FLD_LONG_PROBES=1: test_fault_injection kills the suite's round in every step (CI time)")
def test_round_killed_in_annotate_and_in_train_resumes_to_the_same_tables(tmp_path, tiny_sample):
    config = write_config(tmp_path / "engine.toml", tiny_sample, max_steps=150, save_every=5)
    clean = DataRoot(tmp_path / "clean")
    run = fld_process("round", "--root", str(clean.path), "--config", str(config))
    assert run.wait(timeout=900) == 0, run.stderr.read()[-3000:]

    root = DataRoot(tmp_path / "killed")
    victim = fld_process("round", "--root", str(root.path), "--config", str(config))
    assert _wait_for(lambda: root.annotations(0).exists() and len(read_markers(root, 0)) >= 1, victim)
    kill_run(victim)
    assert len(read_markers(root, 0)) < 9, "killed after annotation finished: the test would prove nothing"

    victim = fld_process("round", "--root", str(root.path), "--config", str(config))
    checkpoints = root.model(0) / "checkpoints"
    assert _wait_for(lambda: checkpoints.exists() and any(checkpoints.glob("step-*")), victim)
    kill_run(victim)
    assert not (root.model(0) / "train_summary.json").exists(), "training had finished before the kill"

    resume_to_the_clean_tables(root, clean, config)
    summary = json.loads((root.model(0) / "train_summary.json").read_text())
    assert summary["resumed_from"] > 0  # training continued from its checkpoint


def test_second_concurrent_round_is_refused(tmp_path, tiny_sample):
    # long training keeps the first round running while the second one starts
    config = write_config(tmp_path / "engine.toml", tiny_sample, max_steps=2000)
    root = DataRoot(tmp_path / "root")
    first = fld_process("round", "--root", str(root.path), "--config", str(config))
    try:
        lock = root.path / ".round.lock"
        assert _wait_for(lambda: lock.exists() and lock.read_text(), first)
        second = fld_process("round", "--root", str(root.path), "--config", str(config))
        assert second.wait(timeout=300) == 2
        err = second.stderr.read()
        assert "another round is running on this data root" in err and f"pid {first.pid}" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err  # refused before Prefect
    finally:
        kill_run(first)


def test_bad_config_key_is_named(tmp_path, tiny_sample):
    config = write_config(tmp_path / "engine.toml", tiny_sample)
    config.write_text(config.read_text().replace("patience", "patiance"))
    run = fld_process("round", "--root", str(tmp_path / "root"), "--config", str(config))
    assert run.wait(timeout=300) == 2
    err = run.stderr.read()
    assert "loop.patiance" in err and "Traceback" not in err
