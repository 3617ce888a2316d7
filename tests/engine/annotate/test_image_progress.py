"""Per-image progress of an annotation run: a folder of images (one shard) advances by batches.

A gated annotator lets its first batch through and holds every later one until the test has
seen progress inside the shard, so the check is ordered by events, never by timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from annotators.base import Annotator, ImageBatch
from annotators.registry import _REGISTRY, register_annotator
from engine.annotate.plan import AnnotateRequest, annotate
from engine.ingest.shards import IngestConfig, ingest
from hf.settings import check_positive_int, settings_from_kwargs
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.fake_annotators import NoopAnnotator

IMAGES = 12
#: how long held batches wait for the test to open the gate before going on regardless (a
#: broken progress report then fails the assertions below instead of hanging the suite)
GATE_GIVE_UP_S = 60.0


@dataclass(frozen=True)
class GatedSettings:
    """``gate``: a file whose existence lets the second and later batches run."""

    gate: str = ""
    batch_size: int = 4

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size)


class GatedAnnotator(Annotator):
    """Test-only: emits nothing; every batch after its first waits for the gate file."""

    kinds = ()

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(GatedSettings, settings, self.name)
        self.batch_size = self.settings.batch_size
        self.batches = 0
        self.give_up: float | None = None

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.batches += 1
        if self.batches > 1:
            self.give_up = self.give_up or time.monotonic() + GATE_GIVE_UP_S
            while not Path(self.settings.gate).exists() and time.monotonic() < self.give_up:
                time.sleep(0.01)
        return []


@pytest.fixture
def gated_annotator():
    """Registered for one test only, so the registry-wide contract test never sees it."""
    register_annotator("gated")(GatedAnnotator)
    yield "gated"
    _REGISTRY.pop("gated", None)


@pytest.fixture
def folder_root(tmp_path) -> DataRoot:
    """A root with one folder of IMAGES images ingested: a single shard."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(IMAGES):
        Image.new("RGB", (64 + i, 48), (i * 20, 100, 200 - i * 10)).save(folder / f"photo-{i:02d}.png")
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(folder)], IngestConfig(progress=False))
    return root


def test_a_single_shard_shows_image_progress_before_its_marker(folder_root, gated_annotator, tmp_path, capsys):
    with Catalog.reading(folder_root) as catalog:
        (shard_id,) = [r[0] for r in catalog.query("select shard_id from shards")]
    marker = folder_root.annotation_marker(0, "gated", shard_id)
    gate = tmp_path / "gate"
    seen: list[tuple[int, int, int, bool]] = []  # (done, total, gated's done, marker there)

    def on_progress(update) -> None:
        gated_done = update.sources["gated"][0]
        inside_shard = 0 < gated_done < IMAGES and not marker.exists()
        seen.append((update.done, update.total, gated_done, marker.exists()))
        if inside_shard:
            gate.touch()

    summary = annotate(folder_root, AnnotateRequest(
        round=0, annotators={"gated": {"gate": str(gate)}, NoopAnnotator.name: {}}, on_progress=on_progress))

    assert summary["sources"]["gated"]["images"] == IMAGES and summary["units_run"] == 2
    assert {total for _, total, _, _ in seen} == {2 * IMAGES}  # the unit is (annotator x image)
    inside = [s for s in seen if 0 < s[2] < IMAGES and not s[3]]
    assert inside, f"no update inside the shard before its marker: {seen}"
    assert seen[-1][:3] == (2 * IMAGES, 2 * IMAGES, IMAGES)
    bar = capsys.readouterr().err
    assert "img/s" in bar and f"{2 * IMAGES}/{2 * IMAGES} [" in bar
    assert any(f" {n}/{2 * IMAGES} [" in bar for n in range(1, 2 * IMAGES)), bar  # a frame inside the run
    # the workers' progress files are gone once their markers are written
    assert not list(folder_root.annotations(0).rglob("*.progress.tmp"))
