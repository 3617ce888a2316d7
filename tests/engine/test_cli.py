"""The ``fld`` CLI end to end in a subprocess: exit codes, one-line errors, stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def fld(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "flows.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_sample_ingest_stats_round_trip(tmp_path):
    out, root = tmp_path / "sample", tmp_path / "root"
    assert fld("sample", "--out", str(out), "--images", "12", "--seed", "3").returncode == 0
    (out / "shards" / "broken.tar").write_bytes(b"not a tar at all" * 100)
    first = fld("ingest", "--root", str(root), "--quiet", str(out / "shards"))
    assert first.returncode == 0, first.stderr
    assert "12 ok" in first.stdout and "1 errors" in first.stdout
    again = fld("ingest", "--root", str(root), "--quiet", str(out / "shards"))
    assert "0 ingested, 2 already there" in again.stdout and "0 ok" in again.stdout
    stats = json.loads(fld("stats", "--root", str(root), "--json").stdout)["images"]
    assert stats["unique_images"] == 12 and stats["by_status"] == {"error": 1, "ok": 12}
    assert sum(stats["by_format"].values()) == 12 and set(stats["by_format"]) == {"JPEG", "PNG"}
    assert "by status" in fld("stats", "--root", str(root)).stdout


@pytest.mark.parametrize("args,message", [
    (["ingest", "--root", "{tmp}/r", "{tmp}/missing.tar"], "source not found"),
    (["ingest", "--root", "/proc/forbidden/root", "{tmp}"], "cannot write the data root"),
    (["stats", "--root", "{tmp}/empty"], "no catalog"),
    (["sample", "--out", "{tmp}/s", "--images", "0"], "images must be >= 1"),
])
def test_unusable_arguments_exit_2_with_one_line(tmp_path, args, message):
    result = fld(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_lists_every_command():
    result = fld("--help")
    for name in ("sample", "ingest", "stats"):
        assert name in result.stdout


def test_annotators_lists_what_each_reads():
    rows = {row["name"]: row for row in json.loads(fld("annotators", "--json").stdout)}
    assert rows["grounding"]["reads"] == ["top-level caption"] and rows["grounding"]["emitted_rows"] == ["derived phrase"]
    assert rows["ocr"]["reads"] == [] and rows["ocr"]["emits"] == ["region"]
    text = fld("annotators").stdout
    assert "caption_scorer" in text and "reads top-level caption" in text and "reads no row of the round" in text


def test_fld_commands_collect_cycles_in_larger_steps():
    """engine.collector: fld sets the cycle collector's thresholds before any command runs."""
    import gc

    from engine.cli import main
    from engine.collector import THRESHOLDS

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert main([]) == 2  # no command: help, exit 2
        assert gc.get_threshold() == THRESHOLDS
    finally:
        gc.set_threshold(*before)
