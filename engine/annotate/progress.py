"""Per-image progress of an annotation run: workers append counts to files, the driver polls them.

Workers may be other processes (the multi-process runner) or other machines sharing the root,
so they report through the data root, the way their markers do. After every batch, a handler
appends the batch's image count as one line to the (round, source, shard)'s progress file
(``DataRoot.annotation_progress``: a hidden ``*.tmp`` that no reader of the root opens), with one
``O_APPEND`` write, so lines of concurrent writers never interleave; the marker's writer removes
the file. The driver (:class:`ImageProgress`) sums the lines of each unit still running, counts a
unit with a marker as whole, and shows images of (annotator x image) units with their rate and ETA.
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
    done: int = 0
    finished: bool = False


class ImageProgress:
    """The driver's view of the ``tasks`` of round ``round_``: a tqdm bar of images (``annotate``,
    with img/s and ETA) and ``on_progress`` called from a polling thread whenever the count moves."""

    def __init__(self, root: DataRoot, round_: int, tasks: Iterable[ShardTask], enabled: bool,
                 on_progress: Callable[[AnnotateProgress], None] | None = None):
        self.root, self.round, self.on_progress = root, int(round_), on_progress
        self.units = [_Unit(s, t.shard_id, t.images) for t in tasks for s in t.sources]
        self.sources = list(dict.fromkeys(u.source for u in self.units))
        total = sum(u.images for u in self.units)
        # every poll that moved draws one frame (polls are POLL_S apart: no throttling needed)
        self.bar = tqdm(total=total, desc="annotate", unit="img", disable=not enabled, dynamic_ncols=True,
                        mininterval=0, miniters=1)
        self.active = enabled or on_progress is not None
        self.last = -1
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _progress_file(self, unit: _Unit) -> Path:
        return self.root.annotation_progress(self.round, unit.source, unit.shard_id)

    def clear(self) -> None:
        """Remove the progress files of this run's sources in the round: a killed run's counts
        start over, and one killed between a marker and its file's removal leaves nothing."""
        for source in self.sources:
            every = self.root.annotation_progress(self.round, source, "*")  # the name, any shard
            for path in every.parent.glob(every.name):
                path.unlink(missing_ok=True)

    def snapshot(self) -> AnnotateProgress:
        """Count each unfinished unit: whole once its marker exists, else its progress file."""
        for unit in self.units:
            if unit.finished:
                continue
            if self.root.annotation_marker(self.round, unit.source, unit.shard_id).exists():
                unit.done, unit.finished = unit.images, True
            else:
                unit.done = min(unit.images, images_done(self._progress_file(unit)))
        sources = {s: (sum(u.done for u in self.units if u.source == s),
                       sum(u.images for u in self.units if u.source == s)) for s in self.sources}
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
