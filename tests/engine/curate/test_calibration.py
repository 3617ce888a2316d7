"""Calibrated thresholds: read from the catalog for the checkpoint that produced a source's
rows, applied by the confidence rule in place of the configured threshold."""

from __future__ import annotations

import json

import pyarrow as pa

from engine.curate.calibration import calibrated_thresholds
from engine.curate.config import CurationConfig
from engine.curate.curation import curate_tables
from filters.confidence import ConfidenceConfig
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import utc_now
from tests.filters.tables import images, region, table

IMAGES = images(("img", 100, 100))


def _model(root: DataRoot, round_: int, version: str, threshold: float | None, current: tuple | None = None) -> None:
    metrics = {"new": {"val_loss": 1.0, **({"score_threshold": threshold} if threshold is not None else {})}}
    if current:
        metrics.update(current_version=current[0], current={"score_threshold": current[1]})
    with Catalog(root) as catalog:
        catalog.upsert("models", [{"round": round_, "path": f"/m/{version}", "version": version,
                                   "metrics": json.dumps(metrics), "promoted": True, "reason": "", "created_at": utc_now()}])


def test_thresholds_come_from_the_producing_checkpoint(tmp_path):
    root = DataRoot(tmp_path / "root")
    root.ensure()
    _model(root, 0, "m0", 0.61)
    _model(root, 1, "m1", 0.42)
    _model(root, 2, "m2", None)
    rows = [region("img", [1, 1, 20, 20], source="florence2", version="m1", score=0.5),
            region("img", [1, 1, 20, 20], source="detector", version="d9", score=0.5),
            region("img", [1, 1, 20, 20], source="grounder", version="m2", score=0.5)]
    raw = table(rows)
    raw = raw.set_column(raw.schema.get_field_index("source"), "source", raw["source"].dictionary_encode())
    assert calibrated_thresholds(root, raw) == {"florence2": 0.42}
    mixed = table(rows + [region("img", [2, 2, 20, 20], source="florence2", version="m0", score=0.5)])
    assert calibrated_thresholds(root, mixed) == {}  # two checkpoints in one source: no single threshold
    _model(root, 3, "m3", 0.7, current=("base", 0.25))  # the base checkpoint, measured as the current model
    base = table([region("img", [1, 1, 20, 20], source="florence2", version="base", score=0.5)])
    assert calibrated_thresholds(root, base) == {"florence2": 0.25}
    _model(root, 4, "m4", 0.7, current=("m1", 0.33))  # a later measurement replaces the earlier one
    assert calibrated_thresholds(root, raw) == {"florence2": 0.33}


def test_the_confidence_rule_applies_a_calibrated_threshold_and_says_so():
    rows = [region("img", [1, 1, 20, 20], source="florence2", score=0.5),
            region("img", [30, 30, 60, 60], source="florence2", score=0.2)]
    config = CurationConfig(rules=("confidence",))
    _, trails = curate_tables(table(rows), None, IMAGES, config, 0, calibrated={"florence2": 0.6})
    assert trails["reason"].cast(pa.string()).to_pylist() == ["score below 0.6 (calibrated for its checkpoint)"] * 2
    _, trails = curate_tables(table(rows), None, IMAGES, config, 0)
    assert trails["reason"].cast(pa.string()).to_pylist() == [None, "score below 0.3 for its source"]
    off = CurationConfig(rules=("confidence",), sections={"confidence": ConfidenceConfig(calibrated=False)})
    _, trails = curate_tables(table(rows), None, IMAGES, off, 0, calibrated={"florence2": 0.6})
    assert trails["reason"].cast(pa.string()).to_pylist() == [None, "score below 0.3 for its source"]


def test_reading_thresholds_publishes_nothing(tmp_path):
    root = DataRoot(tmp_path / "root")
    _model(root, 0, "m0", 0.61)
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (root.catalog, root.engine_catalog)]
    raw = table([region("img", [1, 1, 20, 20], source="florence2", version="m0", score=0.5)])
    assert calibrated_thresholds(root, raw) == {"florence2": 0.61}
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (root.catalog, root.engine_catalog)] == before
