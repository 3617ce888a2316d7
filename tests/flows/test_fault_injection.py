"""Fault injection: ``fld round`` SIGKILLed (with its whole process group) at random moments in
annotate, curate, train, evaluate and dashboard, resumed after each kill; the finished round's
tables equal those of a run never killed, and nothing half-written or temporary is left. The run
never killed has a reader (a notebook, a dashboard) on the published catalog all along."""

from __future__ import annotations

import os
import random
import time

import duckdb

from storage.atomic import stale_temps
from storage.layout import DataRoot
from tests.flows.conftest import fld_process, kill_run, write_config
from tests.flows.test_round_flows import resume_to_the_clean_tables

#: (the step the round must be in, the longest random wait after it is seen there, seconds)
ALL_KILL_POINTS = [("annotate", 1.0), ("annotate", 3.0), ("annotate", 6.0), ("curate", 0.5), ("curate", 1.5),
                   ("train", 1.0), ("train", 4.0), ("train", 8.0), ("evaluate", 2.0), ("dashboard", 0.5),
                   ("dashboard", 2.0)]
#: the suite kills at one point per step; FLD_LONG_PROBES=1 runs all eleven
KILL_POINTS = ALL_KILL_POINTS if os.environ.get("FLD_LONG_PROBES") == "1" else \
    [ALL_KILL_POINTS[i] for i in (1, 3, 6, 8, 9)]


def _step(root: DataRoot) -> str | None:
    """The step the published catalog says round 0 is in (None: not yet, or done)."""
    if not root.catalog.exists():
        return None
    try:
        with duckdb.connect(str(root.catalog), read_only=True) as con:
            rows = con.execute("select status, step from rounds where round = 0").fetchall()
    except duckdb.Error:
        return None
    return rows[0][1] if rows and rows[0][0] == "running" else None


def _leftovers(root: DataRoot) -> list[str]:
    names = [str(p.relative_to(root.path)) for p in root.path.rglob("*") if p.name.endswith(".tmp")]
    return sorted(names + [str(p) for p in stale_temps(root.path)])


def _read_all_along(root: DataRoot, run) -> None:
    """Hold one read-only connection on the published catalog from its first appearance to the
    end of ``run``, querying it now and then; the round must finish regardless."""
    deadline = time.time() + 900
    while not root.catalog.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    reader = duckdb.connect(str(root.catalog), read_only=True)
    queries = 0
    while run.poll() is None and time.time() < deadline:
        reader.execute("select count(*) from shards").fetchall()
        queries += 1
        time.sleep(0.2)
    assert run.wait(timeout=60) == 0, run.stderr.read()[-3000:]
    assert queries > 0
    reader.execute("select count(*) from rounds").fetchall()  # its snapshot still answers
    reader.close()
    with duckdb.connect(str(root.catalog), read_only=True) as fresh:  # a new reader sees the round
        assert fresh.execute("select round, status from rounds").fetchall() == [(0, "done")]


def test_random_kills_across_a_round_resume_to_the_same_tables(tmp_path, tiny_sample):
    config = write_config(tmp_path / "engine.toml", tiny_sample, max_steps=30, save_every=5, rounds=1)
    clean = DataRoot(tmp_path / "clean")
    run = fld_process("round", "--root", str(clean.path), "--config", str(config))
    try:
        _read_all_along(clean, run)
    finally:
        kill_run(run)

    rng = random.Random(7)
    root = DataRoot(tmp_path / "killed")
    kills: list[tuple[str, str | None]] = []
    for step, longest in KILL_POINTS:
        victim = fld_process("round", "--root", str(root.path), "--config", str(config))
        try:
            deadline = time.time() + 600
            while victim.poll() is None and time.time() < deadline:
                current = _step(root)
                order = ["ingest", "annotate", "curate", "review", "train", "evaluate", "promote", "dashboard"]
                if current is not None and order.index(current) >= order.index(step):
                    time.sleep(rng.uniform(0.0, longest))
                    kills.append((step, _step(root)))
                    break
                time.sleep(0.05)
        finally:
            kill_run(victim)
        if victim.returncode == 0:  # the round finished before this kill point: nothing left to kill
            break
    assert len(kills) >= len(KILL_POINTS) - 1, kills
    killed_in = {step for _, step in kills if step}
    assert {"annotate", "train"} <= killed_in, kills

    resume_to_the_clean_tables(root, clean, config)
    assert root.report(0).exists()
    assert _leftovers(root) == []
