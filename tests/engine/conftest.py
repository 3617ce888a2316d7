"""Shared fixtures of the engine tests: a data root with sample shards ingested."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.ingest.shards import IngestConfig, ingest
from engine.demo.sample_data import SampleConfig, write_sample
from storage.layout import DataRoot


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """24 synthetic images (with words) in 4 tar shards, plus ground truth."""
    out = tmp_path_factory.mktemp("sample")
    write_sample(out, SampleConfig(images=24, images_per_shard=6, seed=5))
    return out


@pytest.fixture
def ingested_root(sample_dir, tmp_path) -> DataRoot:
    """A fresh data root with the sample shards (copied, so tests may alter them) ingested."""
    shards = tmp_path / "shards"
    shutil.copytree(sample_dir / "shards", shards)
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(shards)], IngestConfig(progress=False))
    return root


from tests.engine.report_root import report_root  # noqa: E402,F401  (the two-round root of report and release tests)
