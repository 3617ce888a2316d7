"""Existing captions from the images' sidecar metadata (alt text, as web datasets carry it).

Reads ``item.context["meta"]``: the ``.json`` sidecar's ``field`` key (default ``caption``) or,
with ``field = "txt"``, the ``.txt`` sidecar; Parquet shards' scalar columns are under
``meta["columns"]``. Emits one ``caption`` row of granularity ``granularity`` per image that
has a non-empty text; no score (it is a given, not a prediction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from annotators.base import Annotator, ImageBatch, Rows
from annotators.registry import register_annotator
from hf.settings import check_positive_int, settings_from_kwargs
from storage.schema import GRANULARITIES, KIND_CAPTION, annotation_row


@dataclass(frozen=True)
class SidecarCaptionSettings:
    """``field``: the JSON key (or ``txt``); ``granularity``: brief, detailed or more_detailed."""

    field: str = "caption"
    granularity: str = "brief"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.field:
            raise ValueError("field must name a sidecar key (or txt)")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        check_positive_int("batch_size", self.batch_size)


def sidecar_text(meta: dict[str, Any], field: str) -> str | None:
    """The text stored under ``field`` in the sidecars, or None."""
    if field == "txt":
        value = meta.get("txt")
    else:
        json_meta = meta.get("json")
        value = json_meta.get(field) if isinstance(json_meta, dict) else None
        if value is None:
            value = (meta.get("columns") or {}).get(field)
    return value.strip() if isinstance(value, str) and value.strip() else None


@register_annotator("sidecar_captions")
class SidecarCaptions(Annotator):
    """Captions that came with the images (sidecar alt text) as ``caption`` rows."""

    kinds = (KIND_CAPTION,)
    needs = ("meta",)
    reads = ()
    emits = (Rows(KIND_CAPTION, derived=False),)

    def __init__(self, **settings: Any):
        self.settings = settings_from_kwargs(SidecarCaptionSettings, settings, self.name)
        self.batch_size = self.settings.batch_size

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.settings.field}|{self.settings.granularity}".encode()).hexdigest()[:16]

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        rows = []
        for item in batch.items:
            text = sidecar_text(dict(item.context.get("meta") or {}), self.settings.field)
            if text:
                rows.append(annotation_row(image_id=item.image_id, round_=batch.round, source=self.name,
                                           source_version=self.version, kind=KIND_CAPTION,
                                           granularity=self.settings.granularity, text=text))
        return rows
