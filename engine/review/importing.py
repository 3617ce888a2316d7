"""``fld review import``: a Label Studio export becomes people's verdicts and a ``human`` source.

For every task a person submitted (the latest annotation not cancelled), each row shown
(``data.fld_shown``) is compared with what the person's result holds under the same region id:

* absent: ``deleted``;
* the same box (within Label Studio's rounding), label, text and mask: ``kept``;
* anything changed: ``corrected``: a ``human`` row with the person's values (a moved box whose
  mask the person did not redraw loses the mask);
* a region id that was not shown: ``added``: a ``human`` row.

The review's id is the first 16 hex digits of the file's sha256, so importing the same file
again adds nothing. Its ``target_round`` is the round after the last one that has started:
the human rows are written as that round's raw annotations
(``annotations/round=T/source=human/shard=review-J.parquet``, ``source_version`` J, score 1),
the verdicts as ``reviews/import=J/verdicts.parquet`` and, last, ``import.json``; a killed
import leaves no ``import.json`` and is redone whole (its human rows bind nothing until then:
the ``human_review`` rule drops human rows of a review that has no record).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.curate.review_state import IMPORT_FILE, VERDICTS_FILE
from engine.review.label_studio import MASK_SUFFIX, Region, regions_of, same_box, submitted_annotation
from engine.review.rounds_started import last_started_round
from engine.review.rows import row_sources, scoped_rows
from storage.atomic import write_parquet_atomic, write_text_atomic
from storage.catalog import publish_views
from storage.layout import DataRoot
from storage.masks import polygons_to_rle
from storage.schema import ANNOTATIONS, HUMAN_SOURCE, REVIEW_VERDICTS, annotation_row, table_from_rows, utc_now


class ReviewImportError(ValueError):
    """The file is not a Label Studio export of ``fld review export`` tasks (one line)."""


@dataclass(frozen=True)
class ImportSummary:
    """What one import did (counts of rows by verdict; ``already``: the file was imported before)."""

    review_id: str
    reviewed_round: int
    target_round: int
    tasks: int
    reviewed_images: int
    kept: int = 0
    corrected: int = 0
    deleted: int = 0
    added: int = 0
    unknown_rows: int = 0
    already: bool = False

    def line(self) -> str:
        if self.already:
            return f"review {self.review_id} was imported before (round {self.target_round} applies it): nothing added"
        return (f"review {self.review_id}: {self.reviewed_images} of {self.tasks} images reviewed in round "
                f"{self.reviewed_round}: {self.kept} kept, {self.corrected} corrected, {self.deleted} deleted, "
                f"{self.added} added; round {self.target_round} applies it")


def _load_tasks(path: Path) -> tuple[bytes, list[dict[str, Any]]]:
    try:
        data = path.read_bytes()
        tasks = json.loads(data)
    except OSError as exc:
        raise ReviewImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ReviewImportError(f"{path} is not JSON: export the project from Label Studio as JSON") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise ReviewImportError(f"{path} is not a Label Studio JSON export (a list of tasks with data)")
    if not tasks or any("fld_image_id" not in t["data"] or "fld_round" not in t["data"] for t in tasks):
        raise ReviewImportError(f"{path} holds tasks that `fld review export` did not write (no fld_image_id/fld_round)")
    return data, tasks


def _changes(row: dict[str, Any], region: Region) -> list[str]:
    """What the person changed in ``row`` (empty: nothing)."""
    changes = []
    if row["kind"] == "caption":
        return [f"text {row.get('text')!r} -> {region.text!r}"] if (region.text or "") != (row.get("text") or "") else []
    if not same_box(region.box, row.get("bbox")):
        changes.append("box moved")
    if row.get("region_type") == "ocr":
        if region.text is not None and region.text != (row.get("text") or ""):
            changes.append(f"text {row.get('text')!r} -> {region.text!r}")
        return changes
    label = row.get("label") or row.get("text")
    if region.label is not None and region.label != label:
        changes.append(f"label {label!r} -> {region.label!r}")
    shown_polygon = (row.get("polygons") or [None])[0]
    if region.has_polygon_result and (shown_polygon is None or not same_box(region.polygon, shown_polygon)
                                      or len(region.polygon or []) != len(shown_polygon)):
        changes.append("mask redrawn")
    elif shown_polygon is not None and not region.has_polygon_result:
        changes.append("mask removed")
    return changes


def _human_row(image_id: str, target: int, review_id: str, region: Region, row: dict[str, Any] | None,
               width: int, height: int) -> dict[str, Any] | None:
    """The human row for a corrected (``row`` given) or added region; None when it has nothing to
    keep. Its id also hashes the review id: two reviews drawing the same box make two rows."""
    human = _human_payload(image_id, target, review_id, region, row, width, height)
    if human is not None:
        human["annotation_id"] = hashlib.sha256(f"{human['annotation_id']}:{review_id}".encode()).hexdigest()[:32]
    return human


def _human_payload(image_id: str, target: int, review_id: str, region: Region, row: dict[str, Any] | None,
                   width: int, height: int) -> dict[str, Any] | None:
    common = dict(image_id=image_id, round_=target, source=HUMAN_SOURCE, source_version=review_id, score=1.0)
    if region.kind == "caption":
        granularity = region.granularity or (row or {}).get("granularity")
        if not region.text:
            return None
        return annotation_row(kind="caption", granularity=granularity, text=region.text, **common)
    box = region.box or (row or {}).get("bbox")
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        return None
    box = [float(v) for v in box]
    if region.kind == "ocr":
        text = region.text if region.text is not None else (row or {}).get("text")
        moved = row is None or not same_box(box, row.get("bbox"))
        quad = [box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]] if moved else row.get("quad")
        return annotation_row(kind="region", region_type="ocr", text=text or "", bbox=box, quad=quad, **common)
    label = region.label or (row or {}).get("label") or (row or {}).get("text")
    polygons, mask = None, None
    if region.has_polygon_result and region.polygon and len(region.polygon) >= 6:
        polygons = [region.polygon]
        mask = polygons_to_rle(polygons, height, width)
    elif row is not None and region.box is not None and same_box(region.box, row.get("bbox")):
        polygons, mask = row.get("polygons"), row.get("mask_rle")  # the box stayed: so does its mask
    return annotation_row(kind="region", region_type="object", text=label, bbox=box, polygons=polygons,
                          mask_rle=mask, **common)


def import_review(root: DataRoot, path: Path) -> ImportSummary:
    """Import one Label Studio JSON export of ``fld review export`` tasks into ``root``."""
    data, tasks = _load_tasks(Path(path))
    review_id = hashlib.sha256(data).hexdigest()[:16]
    rounds = {int(t["data"]["fld_round"]) for t in tasks}
    if len(rounds) != 1:
        raise ReviewImportError(f"{path} mixes tasks of rounds {sorted(rounds)}: export and import one round at a time")
    reviewed = rounds.pop()
    folder = root.review_import(review_id)
    if (folder / IMPORT_FILE).exists():
        record = json.loads((folder / IMPORT_FILE).read_text())
        return ImportSummary(review_id, reviewed, int(record["target_round"]), len(tasks), 0, already=True)
    target = max(last_started_round(root) + 1, reviewed + 1)
    submitted = {t["data"]["fld_image_id"]: (t, a) for t in tasks if (a := submitted_annotation(t)) is not None}
    if not submitted:
        raise ReviewImportError(f"no task in {path} has a submitted annotation: export the Label Studio project "
                                "(JSON) after people submitted their corrections")
    shown_rows = scoped_rows(root, reviewed, submitted)
    now = utc_now()
    verdicts: list[dict[str, Any]] = []
    humans: list[dict[str, Any]] = []
    counts = {"kept": 0, "corrected": 0, "deleted": 0, "added": 0, "unknown": 0}

    def verdict(image_id: str, verdict_: str, row: dict[str, Any] | None, human: dict[str, Any] | None,
                detail: str | None) -> None:
        counts[verdict_] += 1
        source = row or human or {}
        verdicts.append({"review_id": review_id, "reviewed_round": reviewed, "target_round": target,
                         "image_id": image_id, "annotation_id": row["annotation_id"] if row else None,
                         "human_id": human["annotation_id"] if human else None, "verdict": verdict_,
                         "kind": source.get("kind", "region"), "region_type": source.get("region_type"),
                         "sources": sorted(row_sources(row)) if row else [HUMAN_SOURCE], "detail": detail, "imported_at": now})

    for image_id, (task, annotation) in sorted(submitted.items()):
        width, height = int(task["data"].get("fld_width") or 0), int(task["data"].get("fld_height") or 0)
        regions = regions_of(annotation.get("result") or [], width, height)
        rows = {r["annotation_id"]: r for r in shown_rows.get(image_id, [])}
        shown = [str(i) for i in task["data"].get("fld_shown") or []]
        for aid in shown:
            row = rows.get(aid)
            if row is None:  # the round was re-curated since the export: the row is gone
                counts["unknown"] += 1
                continue
            region = regions.get(aid)
            if region is None or (region.kind == "caption" and not region.text):
                verdict(image_id, "deleted", row, None, None)
                continue
            changes = _changes(row, region)
            if not changes:
                verdict(image_id, "kept", row, None, None)
                continue
            human = _human_row(image_id, target, review_id, region, row, width, height)
            if human is None:
                verdict(image_id, "deleted", row, None, "; ".join(changes))
            else:
                humans.append(human)
                verdict(image_id, "corrected", row, human, "; ".join(changes))
        for rid, region in sorted(regions.items()):
            if rid in rows or rid in shown or rid.endswith(MASK_SUFFIX):
                continue
            human = _human_row(image_id, target, review_id, region, None, width, height)
            if human is not None:
                humans.append(human)
                verdict(image_id, "added", None, human, None)
    if humans:
        write_parquet_atomic(table_from_rows(humans, ANNOTATIONS),
                             root.annotations(target, HUMAN_SOURCE) / f"shard=review-{review_id}.parquet")
    write_parquet_atomic(table_from_rows(verdicts, REVIEW_VERDICTS), folder / VERDICTS_FILE)
    summary = ImportSummary(review_id, reviewed, target, len(tasks), len(submitted), counts["kept"],
                            counts["corrected"], counts["deleted"], counts["added"], counts["unknown"])
    record = {**asdict(summary), "file": str(Path(path).resolve()), "imported_at": now.isoformat()}
    write_text_atomic(json.dumps(record, indent=2, sort_keys=True), folder / IMPORT_FILE)
    publish_views(root)
    return summary
