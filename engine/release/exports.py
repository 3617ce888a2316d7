"""The export formats of a release: COCO JSON, Florence-2 JSON lines, WebDataset samples.

All writers are pure functions of the release's sorted curated rows (dicts with the
``CURATED`` columns, geometry in absolute pixels of the upright image, boxes x0, y0, x1, y1)
and the images' sizes, and return bytes, so building the same round twice gives the same
bytes. JSON is written with sorted keys and coordinates rounded to 1/100 pixel.

COCO (``exports/coco.json``): ``images`` sorted by COCO id (``file_name`` = the image's file under
``images/``: the input COCO labels' name when it had one, else ``IMAGEID.ext``; ``fld_image_id``); ``categories``: the object labels
(``label``, else ``text``) sorted, then ``text`` for OCR regions; ``annotations``: every region
with a box, ``bbox`` as COCO ``[x, y, w, h]``, ``segmentation`` = the RLE mask
(``{"size": [h, w], "counts"}``) when there is one, else the polygons, and no ``segmentation``
key for a box alone; ``area`` = mask pixels when masked, else the box area; ``score`` = the
row's score (1.0 for a row without one: a label taken as given), and the region's ``text``,
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
                    "height": images[i]["height"], "fld_image_id": i}
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


def webdataset_sample(image_id: str, meta: Mapping[str, Any], rows: list[Row], data: bytes | None) -> list[tuple[str, bytes]]:
    """The members of one WebDataset sample (key = image id): the image bytes as ingested (when
    ``data``) and ``KEY.json`` with the image's size, source (reference mode) and curated rows."""
    doc = {"image_id": image_id, "width": meta["width"], "height": meta["height"],
           "annotations": [json_row(r) for r in rows]}
    if data is None:
        doc["source"] = {"shard": meta["shard"], "key": meta["key"]}
    members = [(f"{image_id}.{meta['extension']}", data)] if data is not None else []
    return members + [(f"{image_id}.json", dumps(doc))]


def _yaml_features(fields: Mapping[str, Any], indent: str) -> list[str]:
    """``datasets`` card YAML of a features dict (``hf_dataset.features()``)."""
    lines = []
    for name, feature in fields.items():
        lines.append(f"{indent}- name: {name}")
        lines += _yaml_feature(feature, indent + "  ")
    return lines


def _yaml_feature(feature: Mapping[str, Any], indent: str) -> list[str]:
    kind = feature.get("_type")
    if kind == "Image":
        return [f"{indent}dtype: image"]
    if kind == "Value":
        return [f"{indent}dtype: {feature['dtype']}"]
    if kind == "List":
        inner = feature["feature"]
        if inner.get("_type") == "Value":
            return [f"{indent}list: {inner['dtype']}"]
        return [f"{indent}list:"] + _yaml_features(inner, indent + "  ")
    return [f"{indent}struct:"] + _yaml_features(feature, indent + "  ")


def card_yaml(manifest: Mapping[str, Any]) -> str:
    """The card's YAML header: configs (``default``: the per-image ``hf/`` files when the release
    holds the images, else the annotation rows; ``annotations``: the rows), ``dataset_info``
    (features and split sizes of ``default``) and the license."""
    from engine.release.hf_dataset import features

    hf = {rel: n for rel, n in manifest["row_counts"].items() if rel.startswith("hf/")}
    splits = sorted({rel[3:].split("-", 1)[0] for rel in hf})
    lines = ["license: other", "configs:"]
    if hf:
        lines += ["- config_name: default", "  data_files:"]
        lines += [line for split in splits for line in (f"  - split: {split}", f"    path: hf/{split}-*.parquet")]
        lines += ["- config_name: annotations", "  data_files:", "  - split: train", "    path: data/*.parquet"]
        lines += ["dataset_info:", "  config_name: default", "  features:"] + _yaml_features(features(), "  ")
        lines += ["  splits:"] + [line for split in splits for line in (
            f"  - name: {split}", f"    num_examples: {sum(n for rel, n in hf.items() if rel.startswith(f'hf/{split}-'))}")]
    else:
        lines += ["- config_name: default", "  data_files:", "  - split: train", "    path: data/*.parquet"]
    return "\n".join(lines)


def card_markdown(round_: int, manifest: Mapping[str, Any], stats: Mapping[str, Any], stats_markdown: str) -> str:
    """The release's dataset card (``README.md``, Hugging Face style YAML header): what it holds,
    the Table 2 / Table 3 statistics beside FLD-5B, drops per rule, sources and settings."""
    rows = "\n".join(f"| `{rel}` | {n} |" for rel, n in manifest["row_counts"].items())
    kinds = "\n".join(f"| {kind} | {n} |" for kind, n in manifest["rows_by_kind"].items())
    drops = "\n".join(f"| {d['rule']} | {d['reason']} | {d['count']} |" for d in stats["drops"]) or "| - | - | 0 |"
    models = "\n".join(f"| {m['round']} | `{m['version']}` | {m['promoted']} | {m['reason']} |"
                       for m in manifest["model_checkpoints"]) or "| - | - | - | - |"
    annotators = "\n".join(f"- `{a}`" for a in manifest["annotators"])
    settings = json.dumps(manifest["filter_settings"], indent=1, sort_keys=True, allow_nan=False)
    return f"""---
{card_yaml(manifest)}
---
# fld-engine dataset release (round {round_})

FLD-5B-style annotations (as in Florence-2) curated by fld-engine: captions (text
annotations), regions with text (region-text pairs) and grounded phrases (text-phrase-region
triplets) of {manifest['images']} images, from the curated set of round {round_} (rows first
produced in rounds {', '.join(str(r) for r in manifest['source_rounds'])}). Geometry is in
absolute pixels of the upright image; boxes are x0, y0, x1, y1; OCR quads clockwise from the
top-left; masks are COCO compressed RLE.

## Files

| file | rows (coco.json: region annotations; webdataset: samples) |
|---|---|
{rows}

Images: `images/` (each image's bytes as ingested), `hf/` (one row per image with its annotations
nested: `load_dataset(THIS_FOLDER)`), and `webdataset/EXT-*.tar` (mode `{manifest['image_mode']}`),
one sample per image keyed by its sha256: the image bytes and a JSON with its rows; one tar series
per image format, so `load_dataset("webdataset", data_files="webdataset/jpg-*.tar")` reads a
series and the `webdataset` package reads them all. Exports: `exports/coco.json`
(COCO instances, every one with a `score`; {manifest.get('coco_segmentations', 0)} of them have a
`segmentation` (an RLE mask or polygons), the others a box only; the input COCO labels' image ids,
file names and category ids are kept when the round had them; plus `captions` and
`grounded_phrases`; its `file_name`s are the files in `images/`) and
`florence2/{{train,validation}}.jsonl` (`image` relative to the file, `prefix` = task prompt,
`suffix` = target). `manifest.json` holds every file's
sha256; `fld release verify` checks them.

| kind | rows |
|---|---|
{kinds}

## Statistics (FLD-5B: Florence-2 paper, Tables 2 and 3)

Tokens are word tokens: runs of letters and digits, split at whitespace and punctuation.

{stats_markdown}
## Curation drops (round {round_})

| rule | reason | rows |
|---|---|---|
{drops}

## Sources

Annotators (`source@version`):
{annotators}

| model round | version | promoted | reason |
|---|---|---|---|
{models}

Filter settings (the round's curation config):

```json
{settings}
```

## Loading

```python
import duckdb; duckdb.sql("select kind, count(*) from 'data/*.parquet' group by kind")
from datasets import load_dataset; load_dataset("parquet", data_files="data/*.parquet")
from pycocotools.coco import COCO; COCO("exports/coco.json")
```
"""
