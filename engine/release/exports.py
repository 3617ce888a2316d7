"""The export formats of a release: COCO JSON, Florence-2 JSON lines, WebDataset samples.

All writers are pure functions of the release's sorted curated rows (dicts with the
``CURATED`` columns, geometry in absolute pixels of the upright image, boxes x0, y0, x1, y1)
and the images' sizes, and return bytes, so building the same round twice gives the same
bytes. JSON is written with sorted keys and coordinates rounded to 1/100 pixel.

COCO (``exports/coco.json``): ``images`` sorted by COCO id, every released image, annotated or
not (``file_name`` = the image's file under ``images/``, its own name made safe and unique:
:mod:`engine.release.names`; ``fld_image_id``; ``fld_annotated``); ``categories``: the object labels
(``label``, else ``text``) sorted, then ``text`` for OCR regions; ``annotations``: every region
with a box, ``bbox`` as COCO ``[x, y, w, h]``, ``segmentation`` = the RLE mask
(``{"size": [h, w], "counts"}``) when there is one, else the polygons, and no ``segmentation``
key for a box alone; ``area`` = mask pixels when masked, else the box area; ``score`` = the
row's released score (:mod:`engine.release.scores`: a model's confidence; 1.0 for a given
label, never its curation prior), and the region's ``text``,
``quad`` (OCR) and ``fld_annotation_id`` ride along. When the round's input carried COCO
labels (``source``: :class:`CocoSource`), their image ids, file names and category ids are kept
(names matched case-insensitively); other images and categories get ids after the largest. Captions go to ``captions``
(COCO captions style plus ``granularity``) and grounded phrases to ``grounded_phrases``
(caption id, phrase, span, box); pycocotools ignores both keys.

Florence-2 (``florence2/{train,validation}.jsonl``): the examples of
:mod:`engine.retrain.examples` (split by image id), one file per split, ``image`` relative to the
file (``../images/<file name>``), ``prefix`` the task prompt, ``suffix`` the target.
"""

from __future__ import annotations

import collections
import io
import json
import math
import tarfile
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from storage.masks import rle_area

Row = dict[str, Any]
TEXT_CATEGORY = "text"


class NonFiniteValue(ValueError):
    """A NaN or an infinity was about to be written into a release file (JSON has neither): an
    engine bug, since imports and annotators refuse them; the release is not written."""


def dumps(value: Any, indent: int | None = None) -> bytes:
    """Deterministic, strict JSON bytes (sorted keys, UTF-8, no trailing spaces); a non-finite
    number anywhere in ``value`` raises :class:`NonFiniteValue` naming where, never an invalid file."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=indent, allow_nan=False,
                          separators=(",", ": ") if indent else (",", ":")).encode("utf-8")
    except ValueError:
        where = _non_finite(value, "")
        if where is None:
            raise
        raise NonFiniteValue(f"a non-finite number ({where[1]}) was about to be written at {where[0] or 'the top'}"
                             f"{where[2]}: an engine bug, since imports refuse them; nothing was released, please "
                             "report it with this line") from None


def _non_finite(value: Any, path: str) -> tuple[str, float, str] | None:
    """(where, the value, the row it is in) of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value, ""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, child in children:
        found = _non_finite(child, (f"{path}.{key}" if path else key) if isinstance(key, str) else f"{path}[{key}]")
        if found is not None:
            row = value.get("fld_annotation_id") or value.get("annotation_id") if isinstance(value, dict) else None
            return (found if found[2] or not row else (found[0], found[1], f" (annotation {row})"))
    return None


def _r(values: Iterable[float] | None) -> list[float] | None:
    return None if values is None else [round(float(v), 2) for v in values]


def json_row(row: Row) -> Row:
    """A curated row made JSON-ready: timestamps as ISO text, coordinates rounded to 1/100 px."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    for column in ("bbox", "quad"):
        out[column] = _r(row.get(column))
    if row.get("polygons") is not None:
        out["polygons"] = [_r(p) for p in row["polygons"]]
    if row.get("score") is not None:
        out["score"] = round(float(row["score"]), 4)
    return out


def _category(row: Row) -> str:
    if row.get("region_type") == "ocr":
        return TEXT_CATEGORY
    return (row.get("label") or row.get("text") or "").strip() or "object"


@dataclass(frozen=True)
class CocoSource:
    """The COCO labels a round started from: ``image_ids`` (our image id -> theirs),
    ``file_names`` (their id -> file name) and ``categories`` (their ``{id, name,
    supercategory}`` entries)."""

    image_ids: Mapping[str, int]
    file_names: Mapping[int, str]
    categories: tuple[Mapping[str, Any], ...]


def _numbering(keys: list[str], kept: Mapping[str, int]) -> dict[str, int]:
    """``kept`` ids, then ids after the largest for the other keys in their order."""
    out, nxt = {}, max(kept.values(), default=0) + 1
    for key in keys:
        if key in kept:
            out[key] = kept[key]
        else:
            out[key], nxt = nxt, nxt + 1
    return out


def coco_json(rows: list[Row], images: Mapping[str, Mapping[str, Any]], source: CocoSource | None = None) -> bytes:
    """COCO instances (+ captions, grounded phrases) of ``rows``; ``images``: image_id ->
    ``{"width", "height", "file_name"}`` (the build names each image, the input's file name when it
    had one); ``source``: the input's COCO image and category ids to keep."""
    image_ids = _numbering(sorted(images), dict(source.image_ids) if source else {})
    regions = [r for r in rows if r["kind"] == "region" and r.get("bbox") is not None]
    names = sorted({_category(r) for r in regions if r.get("region_type") != "ocr"})
    if any(r.get("region_type") == "ocr" for r in regions) and TEXT_CATEGORY not in names:
        names.append(TEXT_CATEGORY)
    # the input's categories keep their ids (all of them, used or not); ours that they lack follow
    theirs = {str(c["name"]).lower(): c for c in (source.categories if source else ())}
    kept = {str(c["name"]): int(c["id"]) for c in theirs.values()}
    categories = _numbering([*kept, *(n for n in names if n.lower() not in theirs)], kept)
    supers = {str(c["name"]): c.get("supercategory") for c in theirs.values()}
    annotations = []
    for r in regions:
        meta = images[r["image_id"]]
        x0, y0, x1, y1 = (float(v) for v in r["bbox"])
        category = _category(r)
        category = str(theirs[category.lower()]["name"]) if category.lower() in theirs else category
        ann: Row = {"id": len(annotations) + 1, "image_id": image_ids[r["image_id"]],
                    "category_id": categories[category], "bbox": _r([x0, y0, x1 - x0, y1 - y0]), "iscrowd": 0,
                    "fld_annotation_id": r["annotation_id"], "text": r.get("text"),
                    "score": 1.0 if r.get("score") is None else round(float(r["score"]), 4)}
        polygons = [p for p in (r.get("polygons") or []) if p is not None and len(p) >= 6]
        if r.get("mask_rle"):
            ann["segmentation"] = {"size": [meta["height"], meta["width"]], "counts": r["mask_rle"]}
            ann["area"] = rle_area(r["mask_rle"], meta["height"], meta["width"])
        else:
            if polygons:
                ann["segmentation"] = [_r(p) for p in polygons]
            ann["area"] = round((x1 - x0) * (y1 - y0), 2)
        if r.get("quad") is not None:
            ann["quad"] = _r(r["quad"])
        annotations.append(ann)
    captions, caption_ids = [], {}
    for r in (r for r in rows if r["kind"] == "caption"):
        caption_ids[r["annotation_id"]] = len(captions) + 1
        captions.append({"id": len(captions) + 1, "image_id": image_ids[r["image_id"]], "caption": r.get("text"),
                         "granularity": r.get("granularity"), "fld_annotation_id": r["annotation_id"]})
    phrases = [{"id": i + 1, "image_id": image_ids[r["image_id"]], "caption_id": caption_ids.get(r.get("parent_id")),
                "phrase": r.get("text"), "span": [r.get("span_start"), r.get("span_end")],
                "bbox": None if r.get("bbox") is None else _r([r["bbox"][0], r["bbox"][1], r["bbox"][2] - r["bbox"][0],
                                                               r["bbox"][3] - r["bbox"][1]]),
                "fld_annotation_id": r["annotation_id"]}
               for i, r in enumerate(r for r in rows if r["kind"] == "phrase")]
    document = {
        "info": {"description": "fld-engine release (FLD-5B-style curated annotations)", "version": "1"},
        "images": [{"id": image_ids[i], "file_name": images[i]["file_name"], "width": images[i]["width"],
                    "height": images[i]["height"], "fld_image_id": i, "fld_annotated": bool(images[i]["annotated"])}
                   for i in sorted(images, key=lambda i: image_ids[i])],
        "categories": [{"id": cid, "name": name,
                        "supercategory": supers.get(name) or ("text" if name == TEXT_CATEGORY else "object")}
                       for name, cid in sorted(categories.items(), key=lambda kv: kv[1])],
        "annotations": annotations, "captions": captions, "grounded_phrases": phrases,
    }
    return dumps(document)


def florence2_line(image: str, image_id: str, task: str, prompt: str, target: str, width: int, height: int) -> Row:
    """One Florence-2 fine-tuning line: ``image`` (a path relative to the JSONL file), ``prefix``
    (the task prompt), ``suffix`` (the target) and our extras. ``fld export`` writes the same."""
    return {"image": image, "prefix": prompt, "suffix": target, "image_id": image_id, "task": task,
            "width": width, "height": height}


def florence2_jsonl(rows: list[Row], images: Mapping[str, Mapping[str, Any]], eval_fraction: float,
                    seed: int) -> tuple[dict[str, bytes], dict[str, int]]:
    """Florence-2 examples as one JSON-lines file per split (``{"train": bytes, ...}``, the layout
    fine-tuning scripts read: ``image`` relative to the file, ``prefix`` the task prompt, ``suffix``
    the target, plus ``image_id``, ``task``, ``width``, ``height``) and their count per
    ``split/task``. ``image`` is ``../images/<file name>`` when the release holds the bytes,
    else the source shard and key (reference mode)."""
    from engine.dataset.curated import CURATED_COLUMNS
    from engine.dataset.splits import split_of
    from florence2.targets import image_targets

    by_image: dict[str, list[Row]] = collections.defaultdict(list)
    for row in rows:
        by_image[row["image_id"]].append({c: row.get(c) for c in CURATED_COLUMNS})
    lines: dict[str, list[bytes]] = collections.defaultdict(list)
    counts: collections.Counter = collections.Counter()
    for image_id in sorted(by_image):
        meta = images[image_id]
        split = split_of(image_id, eval_fraction, seed)
        image = f"../images/{meta['file_name']}" if meta["member"].startswith("webdataset/") else meta["member"]
        ordered = sorted(by_image[image_id], key=lambda r: r["annotation_id"])
        for task, prompt, target in image_targets(ordered, meta["width"], meta["height"]):
            lines[split].append(dumps(florence2_line(image, image_id, task, prompt, target, meta["width"],
                                                     meta["height"])))
            counts[f"{split}/{task}"] += 1
    return ({split: b"".join(line + b"\n" for line in lines[split]) for split in sorted(lines)},
            dict(sorted(counts.items())))


def tar_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``name`` with fixed metadata (mtime 0, root owner, mode 644) so tars are reproducible."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    archive.addfile(info, io.BytesIO(data))


def webdataset_sample(image_id: str, meta: Mapping[str, Any], rows: list[Row], data: bytes | None,
                      image_key: str) -> list[tuple[str, bytes]]:
    """The members of one WebDataset sample (key = image id): the image bytes as ingested under
    ``KEY.image_key`` whatever their format (when ``data``), and ``KEY.json`` with the image's
    file name, format, size, ``annotated``, source (reference mode) and curated rows."""
    doc = {"image_id": image_id, "file_name": meta["file_name"], "format": meta["format"], "width": meta["width"],
           "height": meta["height"], "annotated": bool(rows), "annotations": [json_row(r) for r in rows]}
    if data is None:
        doc["source"] = {"shard": meta["shard"], "key": meta["key"]}
    members = [(f"{image_id}.{image_key}", data)] if data is not None else []
    return members + [(f"{image_id}.json", dumps(doc))]
