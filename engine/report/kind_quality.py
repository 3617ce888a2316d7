"""Every FLD-5B kind of a round's curated set measured against ground truth (evaluation only).

Nothing here feeds a decision of the engine. The ground truth is the COCO file ``fld sample``
writes (:mod:`engine.demo.sample_data`): shape and word annotations with boxes, RLE masks and
``color``, each image's captions, and the ``vocabulary`` of shapes, colours and words (without
one, the categories and the annotations' colours and words). Images are matched to it as in
:mod:`engine.dataset.coco_eval` (sidecar ``coco_id``, else file name); rows of other images are
ignored. Facts are read by :mod:`engine.report.caption_facts`. Boxes are absolute pixels
``[x0, y0, x1, y1]`` of the upright image; a box *matches* the truth object (among those
allowed) it overlaps most when that IoU is >= 0.5.

Per caption granularity (``brief`` / ``detailed`` / ``more_detailed``), over the caption rows
of that granularity (micro averages):

* ``fact_recall``: facts the granularity is asked to state (``expected_facts``) that the
  caption states / those facts; ``fact_precision``: facts it states that are true of the scene
  / facts it states (None when no caption or no fact);
* ``phrase_precision``: ``phrase`` rows with a box (granularity: their parent caption's, else
  their own) whose box matches a truth object the phrase text can name (its shape, colour or
  word; a generic "shapes" / "words" any shape / word) / those rows; ``phrase_recall``: truth
  shapes matched by at least one right phrase row / every truth shape of the matched images.

For the round: ``region_descriptions`` (``region`` rows with ``granularity = 'brief'`` whose
parent is an object region, and object regions whose ``text`` is not their ``label``: the
region-text rule keeps the chosen description there): ``accuracy`` = those whose region's box matches a truth object and
whose text names exactly that object's colour and shape (a word: that word) / all of them;
``masks``: object region rows (or their child rows) with ``mask_rle`` whose box matches a truth
object, and the mean mask IoU with its mask (``mean_iou``; unmatched rows counted in ``rows``
only); ``coverage``: per kind, the share of matched images with at least one row of it
(``caption_*``: a caption of the granularity with text; ``region_phrase``: an object or OCR
region with a box and a label or text; ``region_brief``: a region description as above;
``phrase_*``: a grounded phrase of the granularity with a box). An absent kind reads 0 (counts,
coverage) or None (ratios), never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.dataset.coco_eval import coco_image_ids
from engine.dataset.locations import image_locations
from engine.report.caption_facts import Thing, Vocabulary, expected_facts, facts, named, true_facts
from storage.catalog import Catalog
from storage.geometry import box_iou_matrix
from storage.layout import DataRoot
from storage.masks import decode_rle

GRANULARITIES = ("brief", "detailed", "more_detailed")
IOU = 0.5
KINDS = tuple(f"caption_{g}" for g in GRANULARITIES) + ("region_phrase", "region_brief") + tuple(
    f"phrase_{g}" for g in GRANULARITIES)


@dataclass(frozen=True)
class TruthObject:
    """One ground-truth annotation: what it is, its box (x0 y0 x1 y1) and RLE mask counts."""

    thing: Thing
    box: tuple[float, float, float, float]
    rle: str | None


@dataclass(frozen=True)
class TruthImage:
    objects: list[TruthObject]
    width: int
    height: int


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def load_truth(truth: dict[str, Any]) -> tuple[dict[int, TruthImage], Vocabulary]:
    """Per COCO image id its objects and size, and the vocabulary texts are read with."""
    names = {c["id"]: c["name"] for c in truth["categories"]}
    objects: dict[int, list[TruthObject]] = {}
    for a in truth["annotations"]:
        x, y, w, h = a["bbox"]
        rle = (a.get("segmentation") or {}).get("counts") if isinstance(a.get("segmentation"), dict) else None
        thing = Thing(names[a["category_id"]], a.get("color"), a.get("text"))
        objects.setdefault(a["image_id"], []).append(TruthObject(thing, (x, y, x + w, y + h), rle))
    images = {i["id"]: TruthImage(objects.get(i["id"], []), int(i["width"]), int(i["height"])) for i in truth["images"]}
    known = truth.get("vocabulary") or {}
    things = [o.thing for image in images.values() for o in image.objects]
    vocabulary = Vocabulary(
        shapes=tuple(known.get("shapes") or sorted({t.category for t in things if t.category != "text"})),
        colors=tuple(known.get("colors") or sorted({t.color for t in things if t.category != "text" and t.color})),
        words=tuple(w.lower() for w in (known.get("words") or sorted({t.text for t in things if t.text}))))
    return images, vocabulary


def best_match(box: Any, objects: list[TruthObject], allowed: Any = None) -> TruthObject | None:
    """The truth object (among ``allowed`` ones, a predicate) ``box`` overlaps most at IoU >= 0.5."""
    candidates = [o for o in objects if allowed is None or allowed(o)]
    if box is None or not candidates:
        return None
    iou = box_iou_matrix(np.array([list(box)], float), np.array([o.box for o in candidates], float))[0]
    k = int(iou.argmax())
    return candidates[k] if iou[k] >= IOU else None


def _captions(rows: list[dict], images: dict[int, TruthImage], vocabulary: Vocabulary) -> dict[str, dict]:
    out = {}
    for g in GRANULARITIES:
        mine = [r for r in rows if r["kind"] == "caption" and r["granularity"] == g and (r["text"] or "").strip()]
        expected = stated = recalled = true = 0
        for r in mine:
            things = [o.thing for o in images[r["coco_id"]].objects]
            said, wanted = facts(r["text"], vocabulary), expected_facts(things, g)
            expected, recalled = expected + len(wanted), recalled + len(wanted & said)
            stated, true = stated + len(said), true + len(said & true_facts(things))
        out[g] = {"captions": len(mine), "fact_recall": _ratio(recalled, expected) if mine else None,
                  "fact_precision": _ratio(true, stated)}
    return out


def _grounding(rows: list[dict], images: dict[int, TruthImage], vocabulary: Vocabulary,
               granularity_of: dict[str, str]) -> dict[str, dict]:
    shapes = sum(o.thing.category != "text" for image in images.values() for o in image.objects)
    out = {}
    for g in GRANULARITIES:
        mine = [r for r in rows if r["kind"] == "phrase" and r["bbox"] is not None
                and granularity_of.get(r["parent_id"], r["granularity"]) == g]
        right, grounded = 0, set()
        for r in mine:
            name = named(r["text"] or "", vocabulary)
            hit = best_match(r["bbox"], images[r["coco_id"]].objects, lambda o: name.fits(o.thing))
            if hit is not None:
                right += 1
                if hit.thing.category != "text":
                    grounded.add((r["coco_id"], hit))
        out[g] = {"phrases": len(mine), "phrase_precision": _ratio(right, len(mine)),
                  "phrase_recall": _ratio(len(grounded), shapes)}
    return out


def described_regions(rows: list[dict], object_regions: dict[str, dict]) -> list[tuple[dict, str]]:
    """``(object region, its description)``: each child description row, and each object region whose
    ``text`` differs from its class ``label`` (the region-text rule's curated form)."""
    children = [(object_regions[r["parent_id"]], r["text"] or "") for r in rows if r["kind"] == "region"
                and r["granularity"] == "brief" and r["parent_id"] in object_regions]
    own = [(r, r["text"]) for r in object_regions.values()
           if r["label"] and r["text"] and r["text"].strip().lower() != r["label"].strip().lower()]
    return children + own


def _descriptions(rows: list[dict], images: dict[int, TruthImage], vocabulary: Vocabulary,
                  object_regions: dict[str, dict]) -> tuple[dict[str, Any], set[int]]:
    mine = described_regions(rows, object_regions)
    right = 0
    for region, text in mine:
        truth = best_match(region["bbox"], images[region["coco_id"]].objects)
        if truth is None:
            continue
        t = truth.thing
        wanted = {("word", (t.text or "").lower())} if t.category == "text" else {("object", t.color, t.category)}
        right += {f for f in facts(text, vocabulary) if f[0] != "count"} == wanted
    return {"descriptions": len(mine), "accuracy": _ratio(right, len(mine))}, {r["coco_id"] for r, _ in mine}


def _masks(rows: list[dict], images: dict[int, TruthImage], object_regions: dict[str, dict]) -> dict[str, Any]:
    mine = [r for r in rows if r["mask_rle"] and r["kind"] == "region" and r["granularity"] is None
            and (r["region_type"] == "object" or r["parent_id"] in object_regions)]
    ious = []
    for r in mine:
        image = images[r["coco_id"]]
        box = r["bbox"] if r["bbox"] is not None else object_regions.get(r["parent_id"], {}).get("bbox")
        truth = best_match(box, image.objects, lambda o: o.rle is not None)
        if truth is None:
            continue
        a = decode_rle(r["mask_rle"], image.height, image.width).astype(bool)
        b = decode_rle(truth.rle, image.height, image.width).astype(bool)
        union = int((a | b).sum())
        ious.append(int((a & b).sum()) / union if union else 0.0)
    return {"rows": len(mine), "matched": len(ious), "mean_iou": round(float(np.mean(ious)), 4) if ious else None}


def _coverage(rows: list[dict], granularity_of: dict[str, str], described: set[int], images: int) -> dict[str, float]:
    have: dict[str, set[int]] = {kind: set() for kind in KINDS}
    for r in rows:
        if r["kind"] == "caption" and r["granularity"] in GRANULARITIES and (r["text"] or "").strip():
            have[f"caption_{r['granularity']}"].add(r["coco_id"])
        elif (r["kind"] == "region" and r["region_type"] in ("object", "ocr") and r["granularity"] is None
              and r["bbox"] is not None and (r["label"] or r["text"] or "").strip()):
            have["region_phrase"].add(r["coco_id"])
        elif r["kind"] == "phrase" and r["bbox"] is not None:
            g = granularity_of.get(r["parent_id"], r["granularity"])
            if g in GRANULARITIES:
                have[f"phrase_{g}"].add(r["coco_id"])
    have["region_brief"] = described
    return {kind: round(len(found) / images, 4) if images else 0.0 for kind, found in have.items()}


def _rows(root: DataRoot, round_: int, ids: dict[str, int]) -> list[dict]:
    columns = ("annotation_id", "image_id", "kind", "granularity", "region_type", "text", "label", "bbox",
               "mask_rle", "parent_id")
    with Catalog.reading(root) as catalog:
        found = catalog.query(f"select {', '.join(columns)} from curated where curated_round = ? "
                              "order by image_id, annotation_id", [round_])
    rows = [dict(zip(columns, row)) for row in found]
    return [{**r, "coco_id": ids[r["image_id"]]} for r in rows if r["image_id"] in ids]


def kind_quality(root: DataRoot, round_: int, ground_truth: str | Path) -> dict[str, Any]:
    """The figures of the module docstring for round ``round_`` of ``root`` vs ``ground_truth``."""
    truth = json.loads(Path(ground_truth).read_text(encoding="utf-8"))
    images, vocabulary = load_truth(truth)
    ids = {k: v for k, v in coco_image_ids(truth, image_locations(root)).items() if v in images}
    rows = _rows(root, round_, ids)
    evaluated = {coco_id: images[coco_id] for coco_id in set(ids.values())}
    return {"round": round_, **rows_quality(rows, images, evaluated, vocabulary)}


def rows_quality(rows: list[dict], images: dict[int, TruthImage], evaluated: dict[int, TruthImage],
                 vocabulary: Vocabulary) -> dict[str, Any]:
    """The figures of the module docstring for ``rows`` (curated-row dicts with ``annotation_id``,
    ``kind``, ``granularity``, ``region_type``, ``text``, ``label``, ``bbox``, ``mask_rle``,
    ``parent_id`` and the ``coco_id`` of their image) over the ``evaluated`` images."""
    granularity_of = {r["annotation_id"]: r["granularity"] for r in rows if r["kind"] == "caption"}
    object_regions = {r["annotation_id"]: r for r in rows if r["kind"] == "region" and r["region_type"] == "object"
                      and r["granularity"] is None}
    descriptions, described = _descriptions(rows, images, vocabulary, object_regions)
    return {
        "images": len(evaluated),
        "captions": _captions(rows, images, vocabulary),
        "grounding": _grounding(rows, evaluated, vocabulary, granularity_of),
        "region_descriptions": descriptions,
        "masks": _masks(rows, images, object_regions),
        "coverage": _coverage(rows, granularity_of, described, len(evaluated)),
    }
