"""Per-source confidence thresholds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filters.base import FilterContext
from filters.confidence import ConfidenceConfig, confidence_filter

from .tables import caption, region, table


def _rows():
    rng = np.random.default_rng(3)
    sources = ["detector", "ocr", "florence2", "grounding"]
    rows = [region("img", [0, 0, 10, 10], source=sources[i % 4], score=float(rng.random())) for i in range(40)]
    return rows + [caption("img", "a dog", score=None)]


@pytest.mark.parametrize("config", [
    ConfidenceConfig(),
    ConfidenceConfig(default=0.5, per_source={"ocr": 0.9, "detector": 0.1}),
    ConfidenceConfig(default=0.0, null_score="drop"),
])
def test_threshold_per_source(config):
    rows = _rows()
    res = confidence_filter(table(rows), config, FilterContext())
    expected = [(r.get("score") is None and config.null_score == "keep")
                or (r.get("score") is not None and r["score"] >= config.threshold_of(r["source"])) for r in rows]
    assert res.keep.tolist() == expected
    assert res.judged.all()
    reasons = res.reason.to_pylist()
    assert all((reason is None) == keep for reason, keep in zip(reasons, expected))
    if config.null_score == "drop":
        assert "no score" in reasons[-1]
    for row, reason in zip(rows, reasons):  # each dropped row names its own source's threshold
        if reason is not None and row.get("score") is not None:
            threshold = pa.array([config.threshold_of(row["source"])]).cast(pa.string())[0].as_py()
            assert reason == f"score below {threshold} for its source"


def test_changing_the_config_changes_the_result():
    t = table(_rows())
    loose = confidence_filter(t, ConfidenceConfig(default=0.1), FilterContext()).keep.sum()
    strict = confidence_filter(t, ConfidenceConfig(default=0.8), FilterContext()).keep.sum()
    assert loose > strict


def test_empty_table_and_all_dropped_image():
    assert len(confidence_filter(table([]), ConfidenceConfig(), FilterContext()).keep) == 0
    rows = [region("img", [0, 0, 10, 10], score=0.1), region("img", [5, 5, 10, 10], score=0.2)]
    res = confidence_filter(table(rows), ConfidenceConfig(default=0.5), FilterContext())
    assert not res.keep.any() and all("0.5" in r for r in res.reason.to_pylist())


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="per_source\\['ocr'\\]"):
        ConfidenceConfig(per_source={"ocr": "high"})
    with pytest.raises(ValueError, match="null_score"):
        ConfidenceConfig(null_score="maybe")
