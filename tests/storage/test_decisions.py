"""storage.decisions: trails reference the absorbing row, and both long forms resolve its id."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.decisions import DECISIONS_VIEW_SQL, build_trails, expand_trails
from storage.layout import DataRoot
from storage.schema import DECISION_TRAILS

RULES = ("confidence", "nms", "merge")


def _trails(round_: int, ids: list[str], dropped_by: list[int], absorbed_row: list[int],
            merged_into: list[str | None] | None = None) -> pa.Table:
    dropped = np.array(dropped_by)
    judged = np.array([(1 << (d + 1)) - 1 if d >= 0 else (1 << len(RULES)) - 1 for d in dropped_by], np.int64)
    reason = pa.array([f"dropped by {RULES[d]}" if d >= 0 else None for d in dropped_by], pa.string())
    merged = None if merged_into is None else pa.array(merged_into, pa.string())
    return build_trails(pa.array(ids, pa.string()), round_, RULES, judged, dropped, reason, np.array(absorbed_row),
                        merged)


def _two_rounds() -> pa.Table:
    """Round 0: b and c absorbed by a (row 0), d by c; round 1: the same positions hold other
    ids, f absorbed by g (row 2) and h merged into round 0's a."""
    r0 = _trails(0, ["a", "b", "c", "d"], [-1, 1, 1, 1], [-1, 0, 0, 2])
    r1 = _trails(1, ["e", "f", "g", "h"], [-1, 1, -1, 2], [-1, 2, -1, -1], [None, None, None, "a"])
    return pa.concat_tables([r0, r1])


def _absorbed(long: pa.Table) -> dict[tuple[int, str], str | None]:
    return {(r["round"], r["annotation_id"]): r["absorbed_by"] for r in long.to_pylist() if not r["kept"]}


EXPECTED = {(0, "b"): "a", (0, "c"): "a", (0, "d"): "c", (1, "f"): "g", (1, "h"): "a"}


def test_trails_store_positions_and_the_long_form_resolves_them_per_round():
    trails = _two_rounds()
    assert trails.schema == DECISION_TRAILS
    assert trails["row"].to_pylist() == [0, 1, 2, 3] * 2
    assert trails["absorbed_row"].to_pylist() == [None, 0, 0, 2, None, 2, None, None]
    assert _absorbed(expand_trails(trails)) == EXPECTED
    # the absorbing id is given only on the rule that dropped the row
    long = expand_trails(trails).to_pylist()
    assert all(r["absorbed_by"] is None for r in long if r["kept"])
    decision_trails = trails  # noqa: F841 (read by DuckDB below)
    view = duckdb.sql(DECISIONS_VIEW_SQL).arrow().read_all()
    assert sorted(view.to_pylist(), key=str) == sorted(long, key=str)


def test_a_reference_outside_the_round_is_refused():
    with pytest.raises(ValueError, match="absorbed_row"):
        _trails(0, ["a", "b"], [-1, 1], [-1, 2])
    trails = _trails(0, ["a", "b", "c"], [-1, 1, 1], [-1, 0, 2])
    dangling = trails.slice(1)  # row 0 (a) is gone: b's reference cannot resolve
    with pytest.raises(ValueError, match="absent from their round"):
        expand_trails(dangling)


def test_the_catalog_view_resolves_references_across_part_files(tmp_path):
    root = DataRoot(tmp_path)
    trails = _two_rounds()
    for round_, part in ((0, trails.slice(0, 4)), (1, trails.slice(4))):
        # two parts per round, as curate_round writes them: row 3 (d) names row 2 (c) in the other part
        write_parquet_atomic(part.slice(0, 2), root.decisions(round_) / "part-00000.parquet")
        write_parquet_atomic(part.slice(2), root.decisions(round_) / "part-00001.parquet")
    with Catalog(root) as catalog:
        rows = catalog.query("select round, annotation_id, absorbed_by from decisions where not kept")
    assert {(r, i): a for r, i, a in rows} == EXPECTED


def test_the_catalog_reads_trails_written_before_the_references(tmp_path):
    """An earlier version stored every absorbing id in ``absorbed_by`` and had no ``row``: such
    a round and a new one are read together, each absorbing id where it was stored."""
    root = DataRoot(tmp_path)
    legacy = pa.table({
        "annotation_id": ["a", "b", "m"], "round": pa.array([0, 0, 0], pa.int32()),
        "rules": ["confidence,nms", "confidence,nms", "confidence,nms,merge"],
        "dropped_by": [None, "nms", "merge"], "reason": [None, "suppressed", "merged"],
        "absorbed_by": [None, "a", "z"]})
    write_parquet_atomic(legacy, root.decisions(0) / "part-00000.parquet")
    with Catalog(root) as catalog:  # no file has the new columns yet: they read as NULLs
        assert catalog.query("select annotation_id, absorbed_by from decisions where not kept order by 1") == [
            ("b", "a"), ("m", "z")]
    write_parquet_atomic(_two_rounds().slice(4), root.decisions(1) / "part-00000.parquet")
    with Catalog(root) as catalog:
        rows = catalog.query("select round, annotation_id, absorbed_by from decisions where not kept")
        assert catalog.query("select count(*) from decision_trails where round = 0 and row is null") == [(3,)]
    assert {(r, i): a for r, i, a in rows} == {(0, "b"): "a", (0, "m"): "z", (1, "f"): "g", (1, "h"): "a"}
