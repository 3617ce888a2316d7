"""The rounds' catalog reads (completed steps, round status, metric history) open the catalog
read-only: same answers, and neither the private nor the published file is written; the curate
step publishes the views of the files it added."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from engine.config import EngineConfig
from engine.rounds import state
from engine.rounds.context import RoundContext
from engine.rounds.loop import metric_history, next_round, round_status
from engine.rounds.state import completed_steps, run_step
from engine.rounds.steps import curate_step
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import IMAGES, table_from_rows, utc_now
from tests.filters.tables import region, table


def _fingerprint(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _recorded_root(tmp_path) -> DataRoot:
    root = DataRoot(tmp_path / "root")
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": 0, "status": "done"}, {"round": 1, "status": "running"}])
        catalog.upsert("round_steps", [
            {"round": 0, "step": "ingest", "status": "done", "summary": json.dumps({"sources": 2})},
            {"round": 1, "step": "ingest", "status": "done", "summary": None},
            {"round": 1, "step": "annotate", "status": "running", "summary": "{}"}])
        catalog.upsert("models", [
            {"round": r, "path": f"/m/{r}", "version": f"m{r}", "promoted": True, "reason": "",
             "metrics": json.dumps(metrics), "created_at": utc_now()}
            for r, metrics in [(0, {"val_loss": 1.5}), (1, {"val_loss": 0.75, "other": 3}), (2, {})]])
    return root


def test_round_reads_answer_as_before_and_write_nothing(tmp_path):
    root = _recorded_root(tmp_path)
    published, private = _fingerprint(root.catalog), _fingerprint(root.engine_catalog)
    assert completed_steps(root, 0) == {"ingest": {"sources": 2}}
    assert completed_steps(root, 1) == {"ingest": {}}
    assert completed_steps(root, 5) == {}
    assert round_status(root) == {0: "done", 1: "running"}
    assert next_round(root) == 1
    assert metric_history(root, "val_loss") == [(0, 1.5), (1, 0.75)]
    assert metric_history(root, "missing") == []
    assert _fingerprint(root.catalog) == published  # no copy published (same inode, same mtime)
    assert _fingerprint(root.engine_catalog) == private


def test_a_fresh_root_has_no_rounds_and_reading_makes_no_catalog(tmp_path):
    root = DataRoot(tmp_path / "fresh").ensure()
    assert round_status(root) == {} and next_round(root) == 0
    assert completed_steps(root, 0) == {} and metric_history(root, "val_loss") == []
    assert not root.catalog.exists() and not root.engine_catalog.exists()


def test_run_step_skips_a_step_it_recorded(tmp_path, monkeypatch):
    root = DataRoot(tmp_path / "root")
    calls = []

    def step(ctx: RoundContext) -> dict:
        calls.append(ctx.round)
        return {"rows": 7}

    monkeypatch.setattr(state, "step_function", lambda name: step)
    context = RoundContext(root=root, round=3, config=EngineConfig.from_dict({}), progress=False)
    assert run_step(context, "curate") == {"rows": 7}
    assert run_step(context, "curate") == {"rows": 7, "skipped": True}
    assert calls == [3]
    assert completed_steps(root, 3) == {"curate": {"rows": 7}}


def test_the_curate_step_publishes_the_views_of_its_files(tmp_path):
    root = DataRoot(tmp_path / "root").ensure()
    images = [dict(image_id="a", shard_id="s0", shard="/x", key="a", width=100, height=80, status="ok",
                   ingested_at=utc_now())]
    root.images.mkdir(parents=True, exist_ok=True)
    pq.write_table(table_from_rows(images, IMAGES), root.images_part("s0"))
    with Catalog(root):  # the catalog as ingest leaves it: no curated files yet
        pass
    path = root.annotation_shard(0, "detector", "000")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table([region("a", [10, 10, 50, 50], score=0.9)]), path)
    config = EngineConfig.from_dict({"curation": {"rules": ["image", "geometry"]}})
    summary = curate_step(RoundContext(root=root, round=0, config=config, progress=False))
    assert summary["curated_rows"] == 1
    with duckdb.connect(str(root.catalog), read_only=True) as con:  # a user's client of the published file
        con.execute(f"set file_search_path = '{root.path}'")  # its views name files relative to the root
        assert con.execute("select count(*) from curated where curated_round = 0").fetchall() == [(1,)]
