"""A release's COCO JSON (``exports/coco.json``), written as a stream.

``images`` sorted by COCO id, every released image, annotated or not (``file_name`` = the
image's file under ``images/``, its own name made safe and unique: :mod:`engine.release.names`;
``fld_image_id``; ``fld_annotated``); ``categories``: the object labels (``label``, else
``text``) sorted, then ``text`` for OCR regions; ``annotations``: every region with a box,
``bbox`` as COCO ``[x, y, w, h]``, ``segmentation`` = the RLE mask (``{"size": [h, w],
"counts"}``) when there is one, else the polygons, and no ``segmentation`` key for a box alone;
``area`` = mask pixels when masked, else the box area; ``score`` = the row's released score
(:mod:`engine.release.scores`: a model's confidence; 1.0 for a given label, never its curation
prior), and the region's ``text``, ``quad`` (OCR) and ``fld_annotation_id`` ride along. When the
round's input carried COCO labels (:class:`CocoSource`), their image ids, file names and
category ids are kept (names matched case-insensitively); other images and categories get ids
after the largest. Captions go to ``captions`` (COCO captions style plus ``granularity``) and
grounded phrases to ``grounded_phrases`` (caption id, phrase, span, box); pycocotools ignores
both keys. Annotation, caption and phrase ids count from 1 in the rows' (image_id, kind,
annotation_id) order.

The file is the bytes ``dumps`` gives the whole document (keys sorted: annotations, captions,
categories, grounded_phrases, images, info), made piece by piece: the category ids come first
from the round's distinct labels (:func:`category_ids`); :class:`CocoWriter` appends each
image's annotations, captions and phrases to three files of the work folder as the build streams
the images in image id order (a phrase's caption id is its parent's number among this image's
captions, else, for the few whose parent is on another image, :func:`caption_exceptions`), and
its image entry to a scratch table; :meth:`CocoWriter.write` joins them with the categories and
the image entries in COCO id order into the document.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import duckdb
import pyarrow as pa

from engine.release.batching import SCRATCH, append, record_batches
from engine.release.exports import Row, dumps, rounded
from storage.masks import rle_area

TEXT_CATEGORY = "text"
PARTS = ("annotations", "captions", "grounded_phrases")
IMAGE_ENTRIES = f"{SCRATCH}.coco_images"
CAPTION_NUMBERS = f"{SCRATCH}.caption_numbers"
LAST_NUMBERS = f"{SCRATCH}.caption_last_numbers"


class CocoLabelsError(ValueError):
    """The round's COCO labels cannot be read again."""


@dataclass(frozen=True)
class CocoSource:
    """The COCO labels a round started from: ``image_ids`` (our image id -> theirs),
    ``file_names`` (their id -> file name) and ``categories`` (their ``{id, name,
    supercategory}`` entries)."""

    image_ids: Mapping[str, int]
    file_names: Mapping[int, str]
    categories: tuple[Mapping[str, Any], ...]


def coco_source(round_config: Mapping[str, Any] | None, locations: Any) -> CocoSource | None:
    """The COCO identities of the round's ``coco_labels`` input (its file, read again), or None;
    ``locations``: anything whose ``items()`` gives (image_id, ``ImageLocation``) of every image.
    Raises :class:`CocoLabelsError` when the file is not COCO."""
    from engine.dataset.coco_eval import coco_image_ids

    path = ((round_config or {}).get("annotators") or {}).get("coco_labels", {}).get("path")
    if not path or not Path(path).is_file():
        return None
    try:
        coco = json.loads(Path(path).read_text(encoding="utf-8"))
        return CocoSource(image_ids=coco_image_ids(coco, locations),
                          file_names={int(i["id"]): str(i.get("file_name", "")) for i in coco["images"]},
                          categories=tuple(coco.get("categories", [])))
    except (ValueError, KeyError, TypeError) as error:
        raise CocoLabelsError(f"the round's COCO labels {path} cannot be read again: {error}") from None


def category(row: Row) -> str:
    """A region's category name: ``text`` for OCR, else its label or text (``object`` if empty)."""
    if row.get("region_type") == "ocr":
        return TEXT_CATEGORY
    return category_of(row.get("label") or row.get("text") or "")


def category_of(label: str) -> str:
    """The category name of an object region labelled ``label`` (its label, else its text)."""
    return label.strip() or "object"


def _numbering(keys: list[str], kept: Mapping[str, int]) -> dict[str, int]:
    """``kept`` ids, then ids after the largest for the other keys in their order."""
    out, nxt = {}, max(kept.values(), default=0) + 1
    for key in keys:
        if key in kept:
            out[key] = kept[key]
        else:
            out[key], nxt = nxt, nxt + 1
    return out


@dataclass(frozen=True)
class Categories:
    """The document's categories: ``ids`` (name -> id, in id order), ``theirs`` (the input's
    entries by lower-case name) and ``supers`` (the input's supercategory per name)."""

    ids: dict[str, int]
    theirs: dict[str, Mapping[str, Any]]
    supers: dict[str, Any]

    def entries(self) -> list[dict[str, Any]]:
        return [{"id": cid, "name": name,
                 "supercategory": self.supers.get(name) or ("text" if name == TEXT_CATEGORY else "object")}
                for name, cid in sorted(self.ids.items(), key=lambda kv: kv[1])]

    def of(self, row: Row) -> int:
        """The category id of the region ``row``."""
        name = category(row)
        return self.ids[str(self.theirs[name.lower()]["name"]) if name.lower() in self.theirs else name]


def category_ids(labels: Iterable[str], has_ocr: bool, source: CocoSource | None) -> Categories:
    """:class:`Categories` of the boxed object regions' distinct ``labels`` (their label, else
    text) and, ``has_ocr``, the OCR regions' ``text``."""
    names = sorted({category_of(label) for label in labels})
    if has_ocr and TEXT_CATEGORY not in names:
        names.append(TEXT_CATEGORY)
    # the input's categories keep their ids (all of them, used or not); ours that they lack follow
    theirs = {str(c["name"]).lower(): c for c in (source.categories if source else ())}
    kept = {str(c["name"]): int(c["id"]) for c in theirs.values()}
    ids = _numbering([*kept, *(n for n in names if n.lower() not in theirs)], kept)
    return Categories(ids, theirs, {str(c["name"]): c.get("supercategory") for c in theirs.values()})


def caption_exceptions(con: duckdb.DuckDBPyConnection, round_: int) -> dict[str, int]:
    """phrase annotation id -> its parent caption's COCO id, for the phrases of round ``round_``
    whose parent caption (the last row of that id, captions numbered from 1 in (image_id,
    annotation_id) order) is on another image: the ones an image's own captions cannot number."""
    curated = f"curated where curated_round = {int(round_)}"
    con.execute(f"create table {CAPTION_NUMBERS} as select annotation_id, image_id, row_number() over "
                f"(order by image_id, annotation_id) as n from {curated} and kind = 'caption'")
    con.execute(f"create table {LAST_NUMBERS} as select annotation_id, max(n) as n, arg_max(image_id, n) as image_id "
                f"from {CAPTION_NUMBERS} group by annotation_id")
    phrases = f"(select annotation_id, image_id, parent_id from {curated} and kind = 'phrase') p"
    return dict(con.execute(f"select p.annotation_id, l.n from {phrases} join {LAST_NUMBERS} l "
                            "on l.annotation_id = p.parent_id where l.image_id <> p.image_id").fetchall())


class CocoWriter:
    """Annotations, captions and grounded phrases of the images given in image id order, each
    appended to its own part file under ``work``, and each image's entry to the scratch table
    :data:`IMAGE_ENTRIES` (module docstring). ``largest_kept``: the largest COCO image id the
    round's labels gave (images they did not name get ids after it, in image id order);
    ``exceptions``: :func:`caption_exceptions`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, work: Path, categories: Categories, largest_kept: int,
                 exceptions: Mapping[str, int]):
        work.mkdir(parents=True, exist_ok=True)
        self.con, self.work, self.categories, self.exceptions = con, work, categories, exceptions
        self.next_id = largest_kept + 1
        self.parts: dict[str, BinaryIO] = {part: open(work / f"coco-{part}.json", "wb") for part in PARTS}
        self.counts = dict.fromkeys(PARTS, 0)
        self.segmentations = 0
        self.entries: list[tuple[int, int, bytes]] = []
        con.execute(f"create table {IMAGE_ENTRIES} (coco_id bigint, pos bigint, entry blob)")

    def _append(self, part: str, item: Row) -> None:
        self.parts[part].write((b"," if self.counts[part] else b"") + dumps(item, at=f"{part}[{self.counts[part]}]"))
        self.counts[part] += 1

    def add(self, meta: Mapping[str, Any], rows: list[Row]) -> None:
        """One image (``meta``: image_id, kept_id, pos, file_name, width, height, annotated) and its rows."""
        if meta["kept_id"] is not None:
            coco_id = meta["kept_id"]
        else:
            coco_id, self.next_id = self.next_id, self.next_id + 1
        for r in rows:
            if r["kind"] == "region" and r.get("bbox") is not None:
                self._append("annotations", self._annotation(r, meta, coco_id))
        numbers: dict[str, int] = {}
        for r in rows:
            if r["kind"] == "caption":
                numbers[r["annotation_id"]] = self.counts["captions"] + 1
                self._append("captions", {"id": self.counts["captions"] + 1, "image_id": coco_id,
                                          "caption": r.get("text"), "granularity": r.get("granularity"),
                                          "fld_annotation_id": r["annotation_id"]})
        for r in rows:
            if r["kind"] == "phrase":
                box = r.get("bbox")
                self._append("grounded_phrases", {
                    "id": self.counts["grounded_phrases"] + 1, "image_id": coco_id,
                    "caption_id": self.exceptions.get(r["annotation_id"], numbers.get(r.get("parent_id"))),
                    "phrase": r.get("text"), "span": [r.get("span_start"), r.get("span_end")],
                    "bbox": None if box is None else rounded([box[0], box[1], box[2] - box[0], box[3] - box[1]]),
                    "fld_annotation_id": r["annotation_id"]})
        entry = {"id": coco_id, "file_name": meta["file_name"], "width": meta["width"], "height": meta["height"],
                 "fld_image_id": meta["image_id"], "fld_annotated": bool(meta["annotated"])}
        self.entries.append((coco_id, meta["pos"], dumps(entry, at="images")))

    def flush(self) -> None:
        """Append the image entries added since the last flush to :data:`IMAGE_ENTRIES`."""
        if self.entries:
            append(self.con, IMAGE_ENTRIES, pa.table(list(zip(*self.entries)), names=["coco_id", "pos", "entry"]))
            self.entries.clear()

    def _annotation(self, r: Row, meta: Mapping[str, Any], coco_id: int) -> Row:
        x0, y0, x1, y1 = (float(v) for v in r["bbox"])
        ann: Row = {"id": self.counts["annotations"] + 1, "image_id": coco_id,
                    "category_id": self.categories.of(r), "bbox": rounded([x0, y0, x1 - x0, y1 - y0]), "iscrowd": 0,
                    "fld_annotation_id": r["annotation_id"], "text": r.get("text"),
                    "score": 1.0 if r.get("score") is None else round(float(r["score"]), 4)}
        polygons = [p for p in (r.get("polygons") or []) if p is not None and len(p) >= 6]
        if r.get("mask_rle"):
            ann["segmentation"] = {"size": [meta["height"], meta["width"]], "counts": r["mask_rle"]}
            ann["area"] = rle_area(r["mask_rle"], meta["height"], meta["width"])
        else:
            if polygons:
                ann["segmentation"] = [rounded(p) for p in polygons]
            ann["area"] = round((x1 - x0) * (y1 - y0), 2)
        if r.get("quad") is not None:
            ann["quad"] = rounded(r["quad"])
        self.segmentations += "segmentation" in ann
        return ann

    def write(self, path: Path, fetch_rows: int) -> None:
        """The document at ``path``: the parts, the categories and the image entries in COCO id
        order (ties in tar order)."""
        self.flush()
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {"description": "fld-engine release (FLD-5B-style curated annotations)", "version": "1"}
        with open(path, "wb") as out:  # the bytes of dumps(document): keys sorted, no spaces
            out.write(b'{"annotations":[')
            self._copy("annotations", out)
            out.write(b'],"captions":[')
            self._copy("captions", out)
            out.write(b'],"categories":' + dumps(self.categories.entries(), at="categories"))
            out.write(b',"grounded_phrases":[')
            self._copy("grounded_phrases", out)
            out.write(b'],"images":[')
            first = True
            for batch in record_batches(self.con, f"select entry from {IMAGE_ENTRIES} order by coco_id, pos", fetch_rows):
                for entry in batch.column(0).to_pylist():
                    out.write(entry if first else b"," + entry)
                    first = False
            out.write(b'],"info":' + dumps(info, at="info") + b"}")

    def close(self) -> None:
        """Close the part files (the work folder holds them until the build ends)."""
        for handle in self.parts.values():
            handle.close()

    def _copy(self, part: str, out: BinaryIO) -> None:
        with open(self.work / f"coco-{part}.json", "rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 20)
