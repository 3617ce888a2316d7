"""The driver's count of a run's (annotator x image) units from the files workers leave: a unit
with a marker counts whole, a running one its progress file's lines, one not started nothing,
and a count never goes back (a progress file removed before its marker is listed)."""

from __future__ import annotations

import json

from engine.annotate.elements import ShardTask
from engine.annotate.progress import ImageProgress, add_images
from storage.atomic import write_text_atomic
from storage.layout import DataRoot

SOURCES = ("ocr", "florence2")


def _tasks(shards: int, images: int = 10) -> list[ShardTask]:
    return [ShardTask(f"shard-{i:03d}", f"/data/{i}.tar", "tar", SOURCES, 0, images) for i in range(shards)]


def _finish(root: DataRoot, source: str, shard_id: str) -> None:
    """What a worker leaves when a unit is complete: the marker, then no progress file."""
    write_text_atomic(json.dumps({"source": source, "shard_id": shard_id}), root.annotation_marker(0, source, shard_id))
    root.annotation_progress(0, source, shard_id).unlink(missing_ok=True)


def test_markers_count_whole_progress_files_their_lines_and_the_rest_nothing(tmp_path):
    root = DataRoot(tmp_path)
    progress = ImageProgress(root, 0, _tasks(40), enabled=False)
    assert progress.snapshot().done == 0  # no folder exists yet

    for shard in range(5):
        _finish(root, "ocr", f"shard-{shard:03d}")
    add_images(root.annotation_progress(0, "ocr", "shard-005"), 4)
    add_images(root.annotation_progress(0, "ocr", "shard-005"), 3)
    add_images(root.annotation_progress(0, "florence2", "shard-007"), 8)
    add_images(root.annotation_progress(1, "florence2", "shard-008"), 8)  # another round's: not this run's
    state = progress.snapshot()
    assert state.sources == {"ocr": (5 * 10 + 7, 400), "florence2": (8, 400)}
    assert (state.done, state.total) == (65, 800)

    _finish(root, "ocr", "shard-005")
    _finish(root, "florence2", "shard-007")
    assert progress.snapshot().sources == {"ocr": (60, 400), "florence2": (10, 400)}
    assert progress.snapshot().done == 70  # a finished unit is counted once, not again on the next poll


def test_a_count_never_goes_back_and_stays_within_its_shard(tmp_path):
    root = DataRoot(tmp_path)
    progress = ImageProgress(root, 0, _tasks(2), enabled=False)
    path = root.annotation_progress(0, "ocr", "shard-000")
    add_images(path, 6)
    assert progress.snapshot().sources["ocr"] == (6, 20)
    path.unlink()  # removed by its marker's writer, the marker not listed yet
    assert progress.snapshot().sources["ocr"] == (6, 20)
    for _ in range(3):  # a retried batch counted twice: never past the shard's images
        add_images(root.annotation_progress(0, "ocr", "shard-001"), 8)
    assert progress.snapshot().sources["ocr"] == (16, 20)


def test_every_unit_finished_counts_the_total(tmp_path):
    root = DataRoot(tmp_path)
    tasks = _tasks(25, images=3)
    progress = ImageProgress(root, 0, tasks, enabled=False)
    for task in tasks:
        for source in SOURCES:
            _finish(root, source, task.shard_id)
    state = progress.snapshot()
    assert (state.done, state.total) == (150, 150)
    assert all(unit.finished for unit in progress.units)
