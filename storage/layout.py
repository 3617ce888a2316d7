"""Paths of the data root (one per engine instance), as laid out in DESIGN.md.

Every path is derived here so no other module spells a folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Collection

#: the top-level entries of a data root that the engine makes (the paths below, each round's
#: resolved config under ``rounds/``, the marker, the run lock and the write probe); a hidden
#: ``*.tmp`` is an atomic write's temp. Anything else at the top of a root is the user's.
LAYOUT_ENTRIES = frozenset({
    "catalog.duckdb", ".engine", "images", "errors", "annotations", "curated", "decisions", "review", "reviews",
    "models", "training_sets", "reports", "releases", "rounds", ".fld-root", ".round.lock", ".write-probe",
})


#: file names a source holds (images and shards), never a data root's top level
SOURCE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                   ".tar", ".tar.gz", ".tgz", ".parquet")


def _is_source_file(name: str) -> bool:
    return name.lower().endswith(SOURCE_SUFFIXES)


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
    def has_catalog(self) -> bool:
        """Whether the engine recorded anything here: its private catalog exists (or, in a root
        made before that file, the published one). The published file alone is its readers'."""
        return self.engine_catalog.exists() or self.catalog.exists()

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

    def annotation_progress(self, round_: int, source: str, shard_id: str) -> Path:
        """Images of the (round, source, shard) annotated so far, while it runs: a hidden ``*.tmp``
        no reader of the root opens, removed once the marker is written (a killed run's is stale)."""
        return self.annotations(round_, source) / f".shard={shard_id}.progress.tmp"

    def error_shard(self, round_: int, source: str, shard_id: str) -> Path:
        """Dead letters of one (round, source, shard): images that could not be annotated."""
        return self.errors / f"round={int(round_)}" / f"source={source}" / f"shard={shard_id}.parquet"

    def curated(self, round_: int) -> Path:
        return self.path / "curated" / f"round={int(round_)}"

    def decisions(self, round_: int) -> Path:
        return self.path / "decisions" / f"round={int(round_)}"

    def curation_work(self, round_: int) -> Path:
        """``.engine/curation/round=R/``: a round curated in partitions keeps its plan, its
        partitions' staged parts and their completion markers here until the round's curated
        and decision parts are switched in (``engine.curate.partitioned``); no view reads it."""
        return self.path / ".engine" / "curation" / f"round={int(round_)}"

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

    def round_folder(self, round_: int) -> Path:
        """``rounds/round=R/``: the round's resolved ``config.json``, its record ``round.json`` and
        one record per finished step in ``steps/`` (``engine.rounds.records``)."""
        return self.path / "rounds" / f"round={int(round_)}"

    @property
    def engine_roots(self) -> Path:
        """``.engine/roots.json``: the root the catalog was last opened at and the ones before
        (``storage.catalog_moves``), so a rebuilt catalog maps their paths too."""
        return self.path / ".engine" / "roots.json"

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

    def foreign_entries(self, own: Collection[str] = ()) -> list[str]:
        """Names (sorted; folders end in ``/``) of the top-level entries that are neither the
        layout's (:data:`LAYOUT_ENTRIES`, a hidden ``*.tmp``) nor in ``own``; none for a missing folder."""
        if not self.path.is_dir():
            return []
        return sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in self.path.iterdir()
                      if p.name not in LAYOUT_ENTRIES and p.name not in own
                      and not (p.name.startswith(".") and p.name.endswith(".tmp")))

    def holds_images(self, scan: int = 1000) -> bool:
        """Whether this folder, which has no catalog, holds image files or shards (``.jpg``,
        ``.tar``, ``.parquet``, ...) at its top level or one folder down: a source named as a
        root. At most ``scan`` entries are looked at; links are not followed."""
        if not self.path.is_dir() or self.has_catalog:
            return False
        seen = 0
        folders = [self.path]
        for depth in range(2):
            below: list[Path] = []
            for folder in folders:
                try:
                    entries = list(folder.iterdir())
                except OSError:
                    continue
                for entry in entries:
                    seen += 1
                    if seen > scan:
                        return False
                    if entry.name.startswith(".") or entry.is_symlink():
                        continue
                    if entry.is_file() and _is_source_file(entry.name):
                        return True
                    if depth == 0 and entry.is_dir() and entry.name not in LAYOUT_ENTRIES:
                        below.append(entry)
            folders = below
        return False

    def refusal(self) -> str | None:
        """Why this folder is not one the engine may use as a data root, or None: a missing
        folder, one holding only the layout's entries, one with the engine's marker or private
        catalog are fine; a file, or a folder of other files (``~``, ``/``), is refused."""
        if self.path.exists() and not self.path.is_dir():
            return f"--root {self.path} is a file, not a data root; give a folder"
        if self.marker.is_file() or self.engine_catalog.is_file():
            return None
        if foreign := self.foreign_entries():
            few = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            return (f"--root {self.path} is not an fld data root (no .fld-root marker) and holds other files "
                    f"({few}); give a new or empty folder, or an existing data root")
        return None

    def ensure(self, kind: str = "root") -> "DataRoot":
        """Create the root folder (with its marker of ``kind`` when the folder was missing or
        empty but for a run lock); raises ``PermissionError``/``OSError`` when it cannot."""
        new = not self.path.exists() or (self.path.is_dir() and all(p.name == ".round.lock" for p in self.path.iterdir()))
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / ".write-probe"
        probe.write_text("")
        probe.unlink()
        if new:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.marker.write_text(json.dumps({"kind": kind, "created": stamp}) + "\n")
        return self
