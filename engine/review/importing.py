"""``fld review import``: a Label Studio export becomes people's verdicts and a ``human`` source.

For every task a person submitted (the latest annotation not cancelled), each row shown
(``data.fld_shown``) is compared with what the person's result holds under the same region id:

* absent: ``deleted``;
* the same box (within Label Studio's rounding), label, text and mask: ``kept``;
* anything changed: ``corrected``: a ``human`` row with the person's values (a moved box whose
  mask the person did not redraw loses the mask);
* a region id that was not shown: ``added``: a ``human`` row.

Nothing in the file is trusted: it is read within bounds (:data:`MAX_EXPORT_BYTES`,
:data:`MAX_EXPORT_DEPTH`) and every value read is checked before it is used (types, finite
numbers, boxes and polygon points inside the image, labels of the review), the image sizes
coming from this root, not from the file; a bad value refuses the whole file with one line
naming the file, the task and the field, before anything is written. Tasks of images that are
not in this root are skipped and counted (a file with none of this root's images is refused).

The review's id is the first 16 hex digits of the sha256 of the parsed export in canonical
form (sorted keys, no spaces), so importing the same export again, even reformatted, adds
nothing (an id of the file's bytes, as earlier versions took, counts as imported too). Its
``target_round`` is the round after the last one that has started: the human rows are written
as that round's raw annotations (``annotations/round=T/source=human/shard=review-J.parquet``,
``source_version`` J, score 1),
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

from engine.curate.parquet_io import read_curated
from engine.curate.review_state import IMPORT_FILE, VERDICTS_FILE
from engine.review import fields
from engine.review.label_studio import MASK_SUFFIX, Region, regions_of, same_box, submitted_annotation
from engine.review.rounds_started import last_started_round
from engine.review.rows import object_labels, row_sources, scoped_rows
from storage.atomic import write_parquet_atomic, write_text_atomic
from storage.bounded_json import JsonBoundsError, load_json
from storage.catalog import Catalog, publish_views
from storage.layout import DataRoot
from storage.masks import polygons_to_rle
from storage.schema import ANNOTATIONS, HUMAN_SOURCE, REVIEW_VERDICTS, annotation_row, table_from_rows, utc_now

#: the largest export read (bytes): a review of 500 images with masks is a few MB
MAX_EXPORT_BYTES = 256 << 20
#: the deepest nesting read: an export nests 9 levels (tasks, task, annotations, annotation,
#: result, item, value, points, point); the rest is room for what Label Studio adds (meta, drafts)
MAX_EXPORT_DEPTH = 64


class ReviewImportError(ValueError):
    """The file is not a Label Studio export of ``fld review export`` tasks of this root, or one
    of its values is not what it must be (one line naming the file, the task and the field)."""


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
    foreign_tasks: int = 0

    def line(self) -> str:
        if self.already:
            return f"review {self.review_id} was imported before (round {self.target_round} applies it): nothing added"
        line = (f"review {self.review_id}: {self.reviewed_images} of {self.tasks} images reviewed in round "
                f"{self.reviewed_round}: {self.kept} kept, {self.corrected} corrected, {self.deleted} deleted, "
                f"{self.added} added; round {self.target_round} applies it")
        if self.unknown_rows:
            line += (f"; {self.unknown_rows} rows shown are no longer in round {self.reviewed_round}'s curated set "
                     "(re-curated since the export): not judged")
        if self.foreign_tasks:
            line += f"; {self.foreign_tasks} reviewed tasks skipped: their images are not in this root"
        return line


@dataclass(frozen=True)
class _Task:
    """One exported task, checked: ``name`` for messages (``task 101``), the image, round and row
    ids it showed, and its standing annotation (None: not reviewed) with that one's index."""

    name: str
    image_id: str
    round: int
    shown: list[str]
    annotation: dict[str, Any] | None
    index: int


def _task_name(task: Any, k: int) -> str:
    """``task ID`` (Label Studio's id) or ``task #K`` (its 1-based place in the file)."""
    tid = task.get("id") if isinstance(task, dict) else None
    if (isinstance(tid, int) and not isinstance(tid, bool)) or (isinstance(tid, str) and 0 < len(tid) <= 40):
        return f"task {tid}"
    return f"task #{k + 1}"


def _refusal(path: Path, name: str, error: Exception) -> ReviewImportError:
    """The one line refusing the file for ``error`` (a field's message) in task ``name``."""
    return ReviewImportError(f"{path}: {name}: {error}; fix it in Label Studio (or the file), then import again")


def _load_tasks(path: Path) -> tuple[bytes, Any, list[_Task]]:
    """The file's bytes, its parsed value and its tasks, read within bounds and checked (one line
    for the first problem, naming the task and the field)."""
    try:
        data, value = load_json(path, MAX_EXPORT_BYTES, MAX_EXPORT_DEPTH)
    except OSError as exc:
        raise ReviewImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except JsonBoundsError as exc:
        raise ReviewImportError(f"{exc}: export the project from Label Studio as JSON") from None
    if not isinstance(value, list) or not value:
        raise ReviewImportError(f"{path} is not a Label Studio JSON export (a list of tasks with data)")
    tasks = []
    for k, raw in enumerate(value):
        name = _task_name(raw, k)
        try:
            task = fields.mapping(raw, "task")
            data_ = fields.mapping(task.get("data"), "data")
            if "fld_image_id" not in data_ or "fld_round" not in data_:
                raise ReviewImportError(f"{path}: {name} has no fld_image_id/fld_round in its data: `fld review "
                                        "export` did not write it; import exports of its tasks only")
            annotation = submitted_annotation(task)
            index = -1 if annotation is None else next(i for i, a in enumerate(task["annotations"]) if a is annotation)
            tasks.append(_Task(name, fields.text(data_["fld_image_id"], "data.fld_image_id"),
                               fields.whole(data_["fld_round"], "data.fld_round"),
                               fields.texts(data_.get("fld_shown"), "data.fld_shown"), annotation, index))
        except fields.FieldError as exc:
            raise _refusal(path, name, exc) from None
    return data, value, tasks


def _review_ids(data: bytes, value: Any) -> tuple[str, str]:
    """(the id of the export's content in canonical form, the id of its bytes as earlier versions took)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:16], hashlib.sha256(data).hexdigest()[:16]


def _image_sizes(root: DataRoot, image_ids: set[str]) -> dict[str, tuple[int, int]]:
    """image_id -> (width, height) upright pixels of the ones ingested in ``root`` with status ok."""
    with Catalog.reading(root) as catalog:
        rows = catalog.query("select image_id, any_value(width), any_value(height) from images "
                             "where status = 'ok' and list_contains(?, image_id) group by image_id",
                             [sorted(image_ids)])
    return {image_id: (int(width), int(height)) for image_id, width, height in rows}


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
    path = Path(path)
    data, value, tasks = _load_tasks(path)
    review_id, bytes_id = _review_ids(data, value)
    rounds = {t.round for t in tasks}
    if len(rounds) != 1:
        raise ReviewImportError(f"{path} mixes tasks of rounds {sorted(rounds)}: export and import one round at a time")
    reviewed = rounds.pop()
    folder = root.review_import(review_id)
    for done in (folder, root.review_import(bytes_id)):
        if (done / IMPORT_FILE).exists():
            record = json.loads((done / IMPORT_FILE).read_text())
            return ImportSummary(done.name.split("=", 1)[1], reviewed, int(record["target_round"]), len(tasks), 0,
                                 already=True)
    sizes = _image_sizes(root, {t.image_id for t in tasks})
    if not sizes:
        raise ReviewImportError(f"{path}: none of its {len(tasks)} tasks is of an image of {root.path} (data.fld_image_id,"
                                f" e.g. {tasks[0].image_id[:16]!r}): this export is not from this root; import it "
                                "into the root it was exported from")
    curated = read_curated(root, reviewed)
    if curated is None:
        raise ReviewImportError(f"{path}: its tasks are of round {reviewed} (data.fld_round), which {root.path} has not "
                                "curated: this export is not from this root; import it into the root it was exported from")
    target = max(last_started_round(root) + 1, reviewed + 1)
    reviewed_tasks = [t for t in tasks if t.annotation is not None]
    submitted = {t.image_id: t for t in reviewed_tasks if t.image_id in sizes}
    foreign = len(reviewed_tasks) - sum(t.image_id in sizes for t in reviewed_tasks)
    if not submitted:
        raise ReviewImportError(f"no task in {path} has a submitted annotation" + (
            f" for an image of this root ({foreign} reviewed tasks are of images not in it)" if foreign else "")
            + ": export the Label Studio project (JSON) after people submitted their corrections")
    shown_rows = scoped_rows(root, reviewed, submitted, curated)
    labels = frozenset(object_labels(curated)) | {r.get("label") or r.get("text") or "" for rows in shown_rows.values()
                                                   for r in rows if r["kind"] == "region" and r.get("region_type") != "ocr"}
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

    for image_id, task in sorted(submitted.items()):
        width, height = sizes[image_id]
        try:  # every value is checked here, before anything is written
            regions = regions_of(task.annotation.get("result"), width, height, labels,
                                 f"annotations[{task.index}].result")
            _judge(image_id, task, regions, shown_rows.get(image_id, []), target, review_id, width, height,
                   verdict, humans, counts)
        except ValueError as exc:
            raise _refusal(path, task.name, exc) from None
    if humans:
        write_parquet_atomic(table_from_rows(humans, ANNOTATIONS),
                             root.annotations(target, HUMAN_SOURCE) / f"shard=review-{review_id}.parquet")
    write_parquet_atomic(table_from_rows(verdicts, REVIEW_VERDICTS), folder / VERDICTS_FILE)
    summary = ImportSummary(review_id, reviewed, target, len(tasks), len(submitted), counts["kept"],
                            counts["corrected"], counts["deleted"], counts["added"], counts["unknown"],
                            foreign_tasks=foreign)
    record = {**asdict(summary), "file": str(path.resolve()), "imported_at": now.isoformat()}
    write_text_atomic(json.dumps(record, indent=2, sort_keys=True), folder / IMPORT_FILE)
    publish_views(root)
    return summary


def _judge(image_id: str, task: _Task, regions: dict[str, Region], shown_rows: list[dict[str, Any]], target: int,
           review_id: str, width: int, height: int, verdict: Any, humans: list[dict[str, Any]],
           counts: dict[str, int]) -> None:
    """The verdicts of one reviewed image: each row shown (kept, corrected, deleted; unknown when
    the round no longer holds it), then each region the person added."""
    rows = {r["annotation_id"]: r for r in shown_rows}
    for aid in task.shown:
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
        if rid in rows or rid in task.shown or rid.endswith(MASK_SUFFIX):
            continue
        human = _human_row(image_id, target, review_id, region, None, width, height)
        if human is not None:
            humans.append(human)
            verdict(image_id, "added", None, human, None)
