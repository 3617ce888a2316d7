"""Label Studio's formats, both ways: curated rows as tasks with pre-annotations, and a person's results back.

Pure functions (no server, no files). Label Studio's JSON: a task is ``{"data": {...},
"predictions": [{"model_version", "result": [...]}]}``; each result item has an ``id`` (the
region), ``from_name``/``to_name`` (the control and the image of the labelling config),
``type`` and ``value``. Geometry in ``value`` is in percent of the image (0..100, origin
top-left): rectangles ``x, y, width, height``, polygons ``points`` ``[[x, y], ...]``; we
convert from and to absolute upright pixels with ``original_width``/``original_height``.

What a task shows (one image, its curated rows in review scope):

* object regions: a ``rectanglelabels`` region (control ``object``) whose id is the row's
  ``annotation_id``, and its mask's polygons as a ``polygonlabels`` region (control ``mask``,
  id ``<annotation_id>:mask``) when the row has polygons;
* OCR lines: a ``rectangle`` region (control ``ocr``) with a per-region ``textarea`` result
  (control ``ocr_text``, same id) holding the text;
* captions: a ``textarea`` result per caption (control ``caption_<granularity>``, id the row's).

``data`` carries ``fld_image_id``, ``fld_round`` and ``fld_shown`` (the ids shown), so an
import knows what a person removed even when the export lacks the predictions.

Reading a result back trusts nothing: every value read is checked (``engine.review.fields``)
before it is used, with its dotted field name in the error: numbers finite, boxes and polygon
points inside the image (within :data:`PERCENT_TOLERANCE`, then clipped), polygons of at most
:data:`MAX_POLYGON_POINTS` points, labels one of the review's, texts strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import quoteattr

from engine.review import fields
from storage.schema import GRANULARITIES

OBJECT, MASK, OCR, OCR_TEXT, CAPTION = "object", "mask", "ocr", "ocr_text", "caption_"
MASK_SUFFIX = ":mask"
#: pixels two coordinates may differ by and still be the same (Label Studio rounds percentages)
PIXEL_TOLERANCE = 0.5


def label_config(labels: Iterable[str], granularities: Sequence[str] = GRANULARITIES, masks: bool = True,
                 ocr: bool = True) -> str:
    """The labelling config (XML) that matches the tasks: the image, box labels (``labels``
    sorted), optional mask polygons and OCR boxes with their text, a text area per caption granularity."""
    names = sorted({label for label in labels if label})
    options = "".join(f"<Label value={quoteattr(name)}/>" for name in names)
    parts = ['<View>', '<Image name="image" value="$image" zoom="true" zoomControl="true"/>',
             f'<RectangleLabels name="{OBJECT}" toName="image">{options}</RectangleLabels>']
    if masks:
        parts.append(f'<PolygonLabels name="{MASK}" toName="image">{options}</PolygonLabels>')
    if ocr:
        parts += [f'<Rectangle name="{OCR}" toName="image"/>',
                  f'<TextArea name="{OCR_TEXT}" toName="image" perRegion="true" editable="true" '
                  'displayMode="region-list"/>']
    for granularity in granularities:
        parts += [f'<Header value={quoteattr(granularity.replace("_", " ") + " caption")}/>',
                  f'<TextArea name="{CAPTION}{granularity}" toName="image" editable="true" rows="3"/>']
    parts.append('</View>')
    return "\n".join(parts)


# ---------------------------------------------------------------------- rows -> task
def _percent_box(bbox: Sequence[float], width: int, height: int) -> dict[str, float]:
    x0, y0, x1, y1 = (float(v) for v in bbox)
    return {"x": 100 * x0 / width, "y": 100 * y0 / height, "width": 100 * (x1 - x0) / width,
            "height": 100 * (y1 - y0) / height, "rotation": 0}


def _item(region_id: str, control: str, kind: str, value: dict, width: int, height: int,
          score: float | None = None) -> dict[str, Any]:
    item = {"id": region_id, "from_name": control, "to_name": "image", "type": kind, "value": value,
            "original_width": width, "original_height": height, "image_rotation": 0}
    if score is not None:
        item["score"] = float(score)
    return item


def row_results(row: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    """The result items that show one curated row (see the module docstring); [] out of scope."""
    aid, score = row["annotation_id"], row.get("score")
    if row["kind"] == "caption" and row.get("granularity") and (row.get("text") or "").strip():
        return [_item(aid, CAPTION + row["granularity"], "textarea", {"text": [row["text"]]}, width, height, score)]
    if row["kind"] != "region" or row.get("bbox") is None:
        return []
    box = _percent_box(row["bbox"], width, height)
    if row.get("region_type") == "ocr":
        return [_item(aid, OCR, "rectangle", box, width, height, score),
                _item(aid, OCR_TEXT, "textarea", {**box, "text": [row.get("text") or ""]}, width, height)]
    label = row.get("label") or row.get("text") or ""
    out = [_item(aid, OBJECT, "rectanglelabels", {**box, "rectanglelabels": [label]}, width, height, score)]
    for polygon in row.get("polygons") or []:  # one region per mask: its first polygon (LS polygons are simple)
        points = [[100 * polygon[i] / width, 100 * polygon[i + 1] / height] for i in range(0, len(polygon) - 1, 2)]
        out.append(_item(aid + MASK_SUFFIX, MASK, "polygonlabels", {"points": points, "polygonlabels": [label]},
                         width, height))
        break
    return out


def task(image_id: str, image_url: str, round_: int, rows: list[dict[str, Any]], width: int, height: int,
         model_version: str) -> dict[str, Any]:
    """One Label Studio task: the image, the ids shown and the rows as one prediction."""
    result = [item for row in rows for item in row_results(row, width, height)]
    shown = sorted({item["id"] for item in result if not item["id"].endswith(MASK_SUFFIX)})
    return {"data": {"image": image_url, "fld_image_id": image_id, "fld_round": int(round_), "fld_shown": shown,
                     "fld_width": int(width), "fld_height": int(height)},
            "predictions": [{"model_version": model_version, "result": result}]}


# ------------------------------------------------------------------- result -> rows
#: percent of an image side a coordinate may lie past the image's edge (Label Studio's rounding)
#: and still be read, clipped to the edge; farther is refused
PERCENT_TOLERANCE = 0.5
#: degrees a box may be rotated and still be read as upright (a rotated box is refused)
ROTATION_TOLERANCE = 0.5
#: most points of one polygon a result may hold (a hand-drawn outline has tens): bounds the
#: work of rasterising it before it is done
MAX_POLYGON_POINTS = 10_000


@dataclass
class Region:
    """What a person's result says of one region id: box (pixels), label, text, polygon (pixels)."""

    kind: str  # object | ocr | caption
    box: list[float] | None = None
    label: str | None = None
    text: str | None = None
    granularity: str | None = None
    polygon: list[float] | None = None
    has_polygon_result: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _span(value: dict[str, Any], start: str, size: str, field_: str) -> tuple[float, float]:
    """``(start, end)`` in percent of the side, both clipped to 0..100, from ``value[start]`` and
    ``value[size]`` (finite, the start within the tolerance, the size >= 0, the end too)."""
    low = fields.percent(value.get(start), f"{field_}.{start}", 0.0, 100.0, PERCENT_TOLERANCE)
    raw = fields.number(value.get(start), f"{field_}.{start}")
    length = fields.number(value.get(size), f"{field_}.{size}")
    if length < 0:
        raise fields.FieldError(f"{field_}.{size}", f"must be >= 0, got {length:g}")
    if raw + length > 100.0 + PERCENT_TOLERANCE:
        raise fields.FieldError(f"{field_}.{size}", f"ends at {raw + length:g}% of the image, past its edge")
    return low, min(raw + length, 100.0)


def _pixels_box(value: dict[str, Any], width: int, height: int, field_: str) -> list[float]:
    """A rectangle's ``x, y, width, height`` (percent) as ``[x0, y0, x1, y1]`` pixels of the image,
    every value checked (finite, inside the image within the tolerance, upright) and clipped."""
    rotation = fields.number(value.get("rotation", 0), f"{field_}.rotation")
    if abs((rotation + 180.0) % 360.0 - 180.0) > ROTATION_TOLERANCE:
        raise fields.FieldError(f"{field_}.rotation", f"is {rotation:g} degrees: rotated boxes cannot be imported, "
                                "set the box upright in Label Studio")
    x0, x1 = _span(value, "x", "width", field_)
    y0, y1 = _span(value, "y", "height", field_)
    return [x0 * width / 100, y0 * height / 100, x1 * width / 100, y1 * height / 100]


def _pixels_polygon(points: Any, width: int, height: int, field_: str) -> list[float]:
    """Polygon ``points`` ``[[x, y], ...]`` (percent) as flat pixels ``[x0, y0, x1, y1, ...]``: 3 to
    :data:`MAX_POLYGON_POINTS` points, each coordinate finite and inside the image within the
    tolerance (clipped to it), checked before anything is drawn."""
    points = fields.items(points, field_, most=MAX_POLYGON_POINTS)
    if len(points) < 3:
        raise fields.FieldError(field_, f"a polygon needs at least 3 points, got {len(points)}")
    flat: list[float] = []
    for i, point in enumerate(points):
        pair = fields.items(point, f"{field_}[{i}]")
        if len(pair) != 2:
            raise fields.FieldError(f"{field_}[{i}]", f"must be one [x, y] pair, got {fields.describe(pair)}")
        flat.append(fields.percent(pair[0], f"{field_}[{i}][0]", 0.0, 100.0, PERCENT_TOLERANCE) * width / 100)
        flat.append(fields.percent(pair[1], f"{field_}[{i}][1]", 0.0, 100.0, PERCENT_TOLERANCE) * height / 100)
    return flat


def _label(value: dict[str, Any], key: str, field_: str, labels: frozenset[str] | None) -> str:
    """The one label of a region (``value[key]``, a list of one string), one of ``labels`` (None: any)."""
    names = fields.items(value.get(key), f"{field_}.{key}")
    if len(names) != 1:
        raise fields.FieldError(f"{field_}.{key}", f"must hold exactly one label, got {fields.describe(names)}")
    name = fields.text(names[0], f"{field_}.{key}[0]")
    if labels is not None and name not in labels:
        known = ", ".join(sorted(labels)[:30]) + (", ..." if len(labels) > 30 else "")
        raise fields.FieldError(f"{field_}.{key}[0]", f"{name[:60]!r} is not a label of this review (its labels: "
                                f"{known}); pick one of them in Label Studio")
    return name


def regions_of(result: list[Any], width: int, height: int, labels: frozenset[str] | None = None,
               field_: str = "result") -> dict[str, Region]:
    """Region id -> :class:`Region` from one annotation's result list (mask polygons joined to
    their object's id); items of unknown controls are ignored. ``width``/``height``: the image's
    upright pixels (percentages are of it); ``labels``: the labels of the review (None: any).
    Every value read is checked first: a bad one raises :class:`engine.review.fields.FieldError`
    naming it (``field_`` + ``[i].value.x``)."""
    regions: dict[str, Region] = {}
    for i, raw in enumerate(fields.items(result, field_)):
        where = f"{field_}[{i}]"
        item = fields.mapping(raw, where)
        control = fields.text(item.get("from_name"), f"{where}.from_name")
        if control not in (OBJECT, MASK, OCR, OCR_TEXT) and not control.startswith(CAPTION):
            continue
        rid = fields.text(item.get("id"), f"{where}.id")
        value = fields.mapping(item.get("value"), f"{where}.value")
        where = f"{where}.value"
        if control == OBJECT:
            region = regions.setdefault(rid, Region("object"))
            region.box = _pixels_box(value, width, height, where)
            region.label = _label(value, "rectanglelabels", where, labels)
        elif control == MASK:
            owner = rid[:-len(MASK_SUFFIX)] if rid.endswith(MASK_SUFFIX) else rid
            region = regions.setdefault(owner, Region("object"))
            region.polygon = _pixels_polygon(value.get("points"), width, height, f"{where}.points")
            region.has_polygon_result = True
            if value.get("polygonlabels") is not None:
                region.label = region.label or _label(value, "polygonlabels", where, labels)
        elif control == OCR:
            regions.setdefault(rid, Region("ocr")).box = _pixels_box(value, width, height, where)
        elif control == OCR_TEXT:
            region = regions.setdefault(rid, Region("ocr"))
            region.text = " ".join(fields.texts(value.get("text"), f"{where}.text")).strip()
            if region.box is None and "x" in value:
                region.box = _pixels_box(value, width, height, where)
        else:
            granularity = control[len(CAPTION):]
            if granularity not in GRANULARITIES:
                raise fields.FieldError(f"{field_}[{i}].from_name", f"{control[:60]!r} is not a caption of this "
                                        f"review (caption_{', caption_'.join(GRANULARITIES)})")
            text = " ".join(fields.texts(value.get("text"), f"{where}.text")).strip()
            regions[rid] = Region("caption", text=text, granularity=granularity)
    return regions


def same_box(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Two pixel boxes equal within :data:`PIXEL_TOLERANCE` (Label Studio's percent rounding)."""
    if a is None or b is None:
        return a is None and b is None
    return all(abs(float(x) - float(y)) <= PIXEL_TOLERANCE for x, y in zip(a, b))


def submitted_annotation(task_export: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation of an exported task that stands: the latest submitted one that was not
    cancelled (skipped), or None when people did not review the task. The task's ``annotations``
    (each an object; ``was_cancelled`` true/false, ``created_at``/``updated_at`` strings, ``id`` a
    whole number) are checked first (:class:`engine.review.fields.FieldError`)."""
    candidates = []
    for k, raw in enumerate(fields.items(task_export.get("annotations"), "annotations", optional=True)):
        where = f"annotations[{k}]"
        annotation = fields.mapping(raw, where)
        if fields.flag(annotation.get("was_cancelled"), f"{where}.was_cancelled"):
            continue
        key = "updated_at" if annotation.get("updated_at") is not None else "created_at"
        stamp = "" if annotation.get(key) is None else fields.text(annotation[key], f"{where}.{key}")
        number = 0 if annotation.get("id") is None else fields.whole(annotation["id"], f"{where}.id")
        candidates.append(((stamp, number), k, annotation))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[2]
