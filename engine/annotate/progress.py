"""Per-image progress of an annotation run: workers append counts to files, the driver polls them.

Workers may be other processes (the multi-process runner) or other machines sharing the root,
so they report through the data root, the way their markers do. After every batch, a handler
appends the batch's image count as one line to the (round, source, shard)'s progress file
(``DataRoot.annotation_progress``: a hidden ``*.tmp`` that no reader of the root opens), with one
``O_APPEND`` write, so lines of concurrent writers never interleave; the marker's writer removes
the file. The driver (:class:`ImageProgress`) sums the lines of each unit still running, counts a
unit with a marker as whole, and shows images of (annotator x image) units with their rate and ETA.

A poll lists each source's marker and progress folders once and reads only the progress files
it found, so its cost is one listing per source plus the running units' files, not a file-system
lookup per planned unit (measured: 50 µs per unit, a whole 0.5 s poll interval at 10,000 shards of
two annotators, taken from the pipeline's own process with the in-process runner).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm

from engine.annotate.elements import ShardTask
from storage.layout import DataRoot

POLL_S = 0.5


def add_images(path: Path, images: int) -> None:
    """Append one finished batch's image count to a progress file; progress is only shown, so a
    file that cannot be written is skipped, never an annotation's failure."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{int(images)}\n".encode())
        finally:
            os.close(fd)


def images_done(path: Path) -> int:
    """The images a progress file counts (0 without one; a line still being written is skipped)."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    return sum(int(line) for line in text.split("\n")[:-1] if line.isdigit())


@dataclass(frozen=True)
class AnnotateProgress:
    """Where a run stands: ``done`` of ``total`` (annotator x image) units, and per source
    ``sources[name] = (done, total)``."""

    done: int
    total: int
    sources: dict[str, tuple[int, int]]


@dataclass
class _Unit:
    source: str
    shard_id: str
    images: int
    marker: str  # the marker's file name (in its group's marker folder)
    progress: str  # the progress file's name (in its group's progress folder)
    done: int = 0
    finished: bool = False


def _names(folder: Path) -> set[str]:
    """The entry names of ``folder`` (none when it does not exist yet)."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


class ImageProgress:
    """The driver's view of the ``tasks`` of round ``round_``: a tqdm bar of images (``annotate``,
    with img/s and ETA) and ``on_progress`` called from a polling thread whenever the count moves."""

    def __init__(self, root: DataRoot, round_: int, tasks: Iterable[ShardTask], enabled: bool,
                 on_progress: Callable[[AnnotateProgress], None] | None = None):
        self.root, self.round, self.on_progress = root, int(round_), on_progress
        self.units: list[_Unit] = []
        #: the unfinished units by (marker folder, progress folder): each folder is listed once a poll
        self.running: dict[tuple[Path, Path], list[_Unit]] = {}
        for task in tasks:
            for source in task.sources:
                marker = root.annotation_marker(self.round, source, task.shard_id)
                progress = root.annotation_progress(self.round, source, task.shard_id)
                unit = _Unit(source, task.shard_id, task.images, marker.name, progress.name)
                self.units.append(unit)
                self.running.setdefault((marker.parent, progress.parent), []).append(unit)
        self.sources = list(dict.fromkeys(u.source for u in self.units))
        self.totals = {s: sum(u.images for u in self.units if u.source == s) for s in self.sources}
        self.finished = dict.fromkeys(self.sources, 0)  # images of each source's finished units
        total = sum(u.images for u in self.units)
        # every poll that moved draws one frame (polls are POLL_S apart: no throttling needed)
        self.bar = tqdm(total=total, desc="annotate", unit="img", disable=not enabled, dynamic_ncols=True,
                        mininterval=0, miniters=1)
        self.active = enabled or on_progress is not None
        self.last = -1
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def clear(self) -> None:
        """Remove the progress files of this run's sources in the round: a killed run's counts
        start over, and one killed between a marker and its file's removal leaves nothing."""
        for source in self.sources:
            every = self.root.annotation_progress(self.round, source, "*")  # the name, any shard
            for path in every.parent.glob(every.name):
                path.unlink(missing_ok=True)

    def snapshot(self) -> AnnotateProgress:
        """Count each unfinished unit: whole once its marker exists, else its progress file (a
        unit's count never goes back, e.g. when its file goes before its marker is listed)."""
        running = dict.fromkeys(self.sources, 0)
        for (marker_folder, progress_folder), units in self.running.items():
            if not units:
                continue
            progress = _names(progress_folder)  # before the markers: a file gone since then has its marker
            markers = _names(marker_folder)
            still = []
            for unit in units:
                if unit.marker in markers:
                    unit.done, unit.finished = unit.images, True
                    self.finished[unit.source] += unit.images
                    continue
                if unit.progress in progress:
                    unit.done = max(unit.done, min(unit.images, images_done(progress_folder / unit.progress)))
                running[unit.source] += unit.done
                still.append(unit)
            self.running[marker_folder, progress_folder] = still
        sources = {s: (self.finished[s] + running[s], self.totals[s]) for s in self.sources}
        return AnnotateProgress(sum(d for d, _ in sources.values()), self.bar.total, sources)

    def _update(self) -> None:
        state = self.snapshot()
        if state.done == self.last:
            return  # nothing finished since the last poll: no redraw (keeps logs short)
        self.last = state.done
        self.bar.set_postfix_str(", ".join(f"{s} {d}/{t}" for s, (d, t) in state.sources.items()), refresh=False)
        moved = state.done - self.bar.n
        if moved:
            self.bar.update(moved)  # draws the frame, rate and ETA included
        else:
            self.bar.refresh()  # the first frame: the sources, nothing done yet
        if self.on_progress is not None:
            self.on_progress(state)

    def _poll(self) -> None:
        while not self.stop.wait(POLL_S):
            self._update()

    def __enter__(self) -> "ImageProgress":
        self.clear()
        if self.active:
            self._update()
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            self.stop.set()
            self.thread.join()
            self._update()
        self.bar.close()
        self.clear()
