"""Two model-free annotators for pipeline tests and benchmarks (registered only where this
module is imported, or named in ``FLD_PLUGINS``; never in the production registry).

``noop`` emits nothing (measures the pipeline's own cost). ``dark_patch`` finds the darkest
``patch`` x ``patch`` block of each image and emits it as an object region (text
``"dark patch"``, score = 1 - mean brightness in 0..1), repeating the search ``repeat`` times
to stand in for a CPU-bound model. Boxes are absolute pixels of the upright image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from annotators.base import Annotator, ImageBatch
from annotators.registry import register_annotator
from hf.settings import check_positive_int, settings_from_kwargs
from storage.schema import annotation_row


@dataclass(frozen=True)
class NoopSettings:
    """``batch_size``: images per batch (>= 1)."""

    batch_size: int = 16

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size)


@register_annotator("noop")
class NoopAnnotator(Annotator):
    """Emits no rows; for measuring the pipeline around an annotator."""

    kinds = ()

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(NoopSettings, settings, self.name)
        self.batch_size = self.settings.batch_size

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        return []


@dataclass(frozen=True)
class DarkPatchSettings:
    """``patch``: block side in pixels; ``repeat``: how many times the search runs (CPU cost)."""

    patch: int = 16
    repeat: int = 1
    batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("patch", "repeat", "batch_size"):
            check_positive_int(name, getattr(self, name))


def darkest_block(gray: np.ndarray, patch: int) -> tuple[int, int, float]:
    """(x0, y0, mean) of the darkest ``patch``-sized block on a stride-``patch`` grid."""
    h, w = (gray.shape[0] // patch) * patch, (gray.shape[1] // patch) * patch
    blocks = gray[:h, :w].reshape(h // patch, patch, w // patch, patch).mean(axis=(1, 3))
    row, col = np.unravel_index(int(np.argmin(blocks)), blocks.shape)
    return int(col) * patch, int(row) * patch, float(blocks[row, col])


@register_annotator("dark_patch")
class DarkPatchAnnotator(Annotator):
    """A CPU-bound stand-in for a detector: one ``region`` row per image."""

    kinds = ("region",)

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(DarkPatchSettings, settings, self.name)
        self.batch_size = self.settings.batch_size

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        rows = []
        patch = self.settings.patch
        for item in batch.items:
            gray = np.asarray(item.image.convert("L"), dtype=np.float32) / 255.0
            if min(gray.shape) < patch:
                continue
            for _ in range(self.settings.repeat):
                x0, y0, mean = darkest_block(gray, patch)
            rows.append(annotation_row(
                image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                kind="region", region_type="object", text="dark patch",
                bbox=[float(x0), float(y0), float(x0 + patch), float(y0 + patch)], score=1.0 - mean))
        return rows
