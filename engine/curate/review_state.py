"""Which imported reviews bind a round's curation, as the ``ReviewState`` the ``human_review`` rule reads.

An import (``fld review import``) records the round it applies to (``target_round``: the
round after the last one that had started when it was imported, so a running round never
changes under it) in ``reviews/import=J/import.json`` and its verdicts in
``reviews/import=J/verdicts.parquet``. Curation of round X is bound by every import with
``target_round <= X``; where several cover one image, the one with the highest
``(target_round, imported_at, review_id)`` stands. Images whose standing review has
``target_round == X`` are *fresh*: this round replaces their previous curated rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from filters.human_review import ReviewState
from storage.layout import DataRoot

IMPORT_FILE, VERDICTS_FILE = "import.json", "verdicts.parquet"


@dataclass(frozen=True)
class ImportRecord:
    """One imported review: its id, the rounds it reviewed and applies to, and when it came."""

    review_id: str
    reviewed_round: int
    target_round: int
    imported_at: str
    folder: Path


def imports(root: DataRoot) -> list[ImportRecord]:
    """Every complete import of ``root`` (its ``import.json`` is written last), oldest first."""
    records = []
    for path in sorted((root.path / "reviews").glob(f"import=*/{IMPORT_FILE}")):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            records.append(ImportRecord(str(data["review_id"]), int(data["reviewed_round"]), int(data["target_round"]),
                                        str(data["imported_at"]), path.parent))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written record is not an import yet
    return sorted(records, key=lambda r: (r.target_round, r.imported_at, r.review_id))


def review_state(root: DataRoot, round_: int) -> ReviewState:
    """The verdicts that bind curation of ``round_`` (empty when no import applies)."""
    latest: dict[str, ImportRecord] = {}
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for record in imports(root):
        if record.target_round > round_:
            continue
        rows = pq.read_table(record.folder / VERDICTS_FILE, columns=["image_id", "annotation_id", "human_id",
                                                                      "verdict"]).to_pylist()
        verdicts[record.review_id] = rows
        for image in {r["image_id"] for r in rows}:
            latest[image] = record  # records are sorted: a later one overrides
    kept, deleted, corrected = set(), set(), {}
    for record_id, rows in verdicts.items():
        for row in rows:
            if latest[row["image_id"]].review_id != record_id or row["annotation_id"] is None:
                continue
            if row["verdict"] == "kept":
                kept.add(row["annotation_id"])
            elif row["verdict"] == "deleted":
                deleted.add(row["annotation_id"])
            elif row["verdict"] == "corrected":
                corrected[row["annotation_id"]] = row["human_id"]
    return ReviewState(latest={image: record.review_id for image, record in latest.items()}, kept=frozenset(kept),
                       corrected=corrected, deleted=frozenset(deleted),
                       fresh=frozenset(image for image, record in latest.items() if record.target_round == round_))
