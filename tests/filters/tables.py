"""Builders of small hand-made annotation and image tables for the filter tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from storage.schema import ANNOTATIONS, annotation_row, table_from_rows

IMAGE_SIZE_SCHEMA = pa.schema([("image_id", pa.string()), ("width", pa.int32()), ("height", pa.int32())])


def region(image: str, box, *, source: str = "detector", label: str = "dog", score: float | None = 0.9,
           round_: int = 0, region_type: str = "object", version: str | None = None, **extra: Any) -> dict:
    return annotation_row(image_id=image, round_=round_, source=source, source_version=version or f"{source}-v1",
                          kind="region", region_type=region_type, text=label,
                          bbox=[float(v) for v in box] if box is not None else None, score=score, **extra)


def caption(image: str, text: str, *, source: str = "florence2", granularity: str = "brief",
            round_: int = 0, score: float | None = None, version: str | None = None) -> dict:
    return annotation_row(image_id=image, round_=round_, source=source, source_version=version or f"{source}-v1",
                          kind="caption", granularity=granularity, text=text, score=score)


def phrase(image: str, parent: dict, start: int, end: int, box, *, text: str | None = None,
           source: str = "grounding", score: float | None = 0.9, round_: int = 0) -> dict:
    text = parent["text"][start:end] if text is None else text
    return annotation_row(image_id=image, round_=round_, source=source, source_version=f"{source}-v1",
                          kind="phrase", granularity=parent.get("granularity"), text=text,
                          parent_id=parent["annotation_id"], span_start=start, span_end=end,
                          bbox=[float(v) for v in box] if box is not None else None, score=score)


def candidate(image: str, parent: dict, text: str, *, source: str, score: float | None = None,
              round_: int = 0) -> dict:
    """A region-text candidate (region captioner / matcher output) pointing at ``parent``."""
    return annotation_row(image_id=image, round_=round_, source=source, source_version=f"{source}-v1",
                          kind="region", region_type=parent.get("region_type"), text=text,
                          parent_id=parent["annotation_id"], score=score)


def similarity(image: str, parent: dict, score: float | None, *, source: str = "caption_scorer",
               round_: int = 0) -> dict:
    """A caption scorer's image-text similarity row for the caption ``parent``."""
    return annotation_row(image_id=image, round_=round_, source=source, source_version=f"{source}-v1",
                          kind="caption", granularity=parent.get("granularity"), parent_id=parent["annotation_id"],
                          score=score)


def table(rows: list[dict]) -> pa.Table:
    return table_from_rows(rows, ANNOTATIONS)


def images(*sizes: tuple[str, int, int]) -> pa.Table:
    ids, w, h = zip(*sizes) if sizes else ((), (), ())
    return pa.table({"image_id": list(ids), "width": list(w), "height": list(h)}, schema=IMAGE_SIZE_SCHEMA)


def random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    """``n`` random boxes ``(x0, y0, x1, y1)`` inside a ``size`` square, clustered to overlap."""
    centers = rng.uniform(20, size - 20, size=(max(1, n // 4), 2))[rng.integers(0, max(1, n // 4), n)]
    centers = centers + rng.normal(0, 4, size=(n, 2))
    half = rng.uniform(4, 20, size=(n, 2))
    return np.concatenate([centers - half, centers + half], axis=1)
