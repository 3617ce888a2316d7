"""``started_probe``: a plugin annotator for interrupt tests (named in a config's ``plugins``).

On its first batch it creates the file ``started`` (so a test knows annotation is under way and
sends its signal then), and while ``hold`` exists it waits, so the signal lands during annotate.
The file is created once: a later run (a resume) finds it and annotates without waiting. Each
image gets one caption row, so a resumed round has rows to curate and train on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotators.base import Annotator, ImageBatch
from annotators.registry import register_annotator
from hf.settings import settings_from_kwargs
from storage.schema import annotation_row


@dataclass(frozen=True)
class StartedProbeSettings:
    """``started``: the file created on the first batch of the first run; ``hold``: a file that
    keeps that first batch waiting while it exists (a safety net ends the wait after an hour)."""

    started: str = ""
    hold: str = ""
    batch_size: int = 4


@register_annotator("started_probe")
class StartedProbeAnnotator(Annotator):
    """One brief caption per image; the first batch of the first run waits for a signal."""

    kinds = ("caption",)

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(StartedProbeSettings, settings, self.name)
        self.batch_size = self.settings.batch_size

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        started = Path(self.settings.started)
        try:
            fd = os.open(started, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass  # a later run (or another worker): no wait
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            deadline = time.monotonic() + 3600
            while Path(self.settings.hold).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return [annotation_row(image_id=item.image_id, round_=batch.round, source=self.name,
                               source_version=self.version, kind="caption", granularity="brief",
                               text="a picture", score=0.9)
                for item in batch.items]
