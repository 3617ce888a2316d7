"""Paths of the data root (one per engine instance), as laid out in DESIGN.md.

Every path is derived here so no other module spells a folder name.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def model(self, round_: int) -> Path:
        return self.path / "models" / f"round={int(round_)}"

    def training_set(self, round_: int) -> Path:
        """The round's Florence-2 training examples as JSONL (written by the train step)."""
        return self.path / "training_sets" / f"round={int(round_)}.jsonl"

    def report(self, round_: int) -> Path:
        return self.path / "reports" / f"round={int(round_)}" / "dashboard.html"

    def release(self, name: str) -> Path:
        return self.path / "releases" / name

    def ensure(self) -> "DataRoot":
        """Create the root folder; raises ``PermissionError``/``OSError`` when it cannot."""
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / ".write-probe"
        probe.write_text("")
        probe.unlink()
        return self
