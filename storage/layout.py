"""Paths of the data root (one per engine instance), as laid out in DESIGN.md.

Every path is derived here so no other module spells a folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class DataRoot:
    """The folder that holds one engine's catalog, Parquet tables, models and releases."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser().resolve())

    @property
    def catalog(self) -> Path:
        return self.path / "catalog.duckdb"

    @property
    def engine_catalog(self) -> Path:
        """The engine's private catalog (``storage.catalog_file``); ``catalog`` is its published copy."""
        return self.path / ".engine" / "catalog.duckdb"

    @property
    def images(self) -> Path:
        return self.path / "images"

    def images_part(self, shard_id: str) -> Path:
        """The images rows of one shard; its existence is the shard's completion marker."""
        return self.images / f"part-{shard_id}.parquet"

    @property
    def errors(self) -> Path:
        return self.path / "errors"

    def annotations(self, round_: int, source: str | None = None) -> Path:
        base = self.path / "annotations" / f"round={int(round_)}"
        return base if source is None else base / f"source={source}"

    def annotation_shard(self, round_: int, source: str, shard_id: str) -> Path:
        return self.annotations(round_, source) / f"shard={shard_id}.parquet"

    def annotation_marker(self, round_: int, source: str, shard_id: str) -> Path:
        """Written last, once the shard's annotation and error files of ``source`` are complete."""
        return self.annotations(round_, source) / "_done" / f"shard={shard_id}.json"

    def error_shard(self, round_: int, source: str, shard_id: str) -> Path:
        """Dead letters of one (round, source, shard): images that could not be annotated."""
        return self.errors / f"round={int(round_)}" / f"source={source}" / f"shard={shard_id}.parquet"

    def curated(self, round_: int) -> Path:
        return self.path / "curated" / f"round={int(round_)}"

    def decisions(self, round_: int) -> Path:
        return self.path / "decisions" / f"round={int(round_)}"

    def review_queue(self, round_: int) -> Path:
        """The ranked review queue of a round (``fld review plan``)."""
        return self.path / "review" / f"round={int(round_)}" / "queue.parquet"

    def review_import(self, review_id: str) -> Path:
        """One imported review (``fld review import``): ``verdicts.parquet`` and ``import.json``."""
        return self.path / "reviews" / f"import={review_id}"

    def model(self, round_: int) -> Path:
        return self.path / "models" / f"round={int(round_)}"

    def training_set(self, round_: int) -> Path:
        """The round's Florence-2 training examples as JSONL (written by the train step)."""
        return self.path / "training_sets" / f"round={int(round_)}.jsonl"

    def report(self, round_: int) -> Path:
        return self.path / "reports" / f"round={int(round_)}" / "dashboard.html"

    def release(self, name: str) -> Path:
        return self.path / "releases" / name

    @property
    def marker(self) -> Path:
        """``ROOT/.fld-root``: JSON ``{"kind": ..., "created": ...}``, written when the engine
        creates the root (the folder was missing or empty); only such a folder is the engine's
        to delete (``fld demo --fresh``, kind ``demo``)."""
        return self.path / ".fld-root"

    def kind(self) -> str | None:
        """The ``kind`` the marker records (``root``, ``demo``), or None: no readable marker."""
        try:
            value = json.loads(self.marker.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def ensure(self, kind: str = "root") -> "DataRoot":
        """Create the root folder (with its marker of ``kind`` when the folder was missing or
        empty); raises ``PermissionError``/``OSError`` when it cannot."""
        new = not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / ".write-probe"
        probe.write_text("")
        probe.unlink()
        if new:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.marker.write_text(json.dumps({"kind": kind, "created": stamp}) + "\n")
        return self
