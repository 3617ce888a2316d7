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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import quoteattr

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


def _pixels_box(value: dict[str, Any], width: int, height: int) -> list[float]:
    x0, y0 = float(value["x"]) * width / 100, float(value["y"]) * height / 100
    x1, y1 = x0 + float(value["width"]) * width / 100, y0 + float(value["height"]) * height / 100
    return [_clip(x0, width), _clip(y0, height), _clip(x1, width), _clip(y1, height)]


def _clip(value: float, high: int) -> float:
    return min(max(value, 0.0), float(high))


def regions_of(result: list[dict[str, Any]], width: int, height: int) -> dict[str, Region]:
    """Region id -> :class:`Region` from one annotation's result list (mask polygons joined to
    their object's id); items of unknown controls are ignored."""
    regions: dict[str, Region] = {}
    for item in result:
        control, value, rid = item.get("from_name", ""), item.get("value") or {}, str(item.get("id", ""))
        w, h = int(item.get("original_width") or width), int(item.get("original_height") or height)
        if control == OBJECT and "x" in value:
            region = regions.setdefault(rid, Region("object"))
            region.box = _pixels_box(value, w, h)
            region.label = (value.get("rectanglelabels") or [region.label])[0]
        elif control == MASK and value.get("points"):
            owner = rid[:-len(MASK_SUFFIX)] if rid.endswith(MASK_SUFFIX) else rid
            region = regions.setdefault(owner, Region("object"))
            region.polygon = [c for x, y in value["points"] for c in (float(x) * w / 100, float(y) * h / 100)]
            region.has_polygon_result = True
            region.label = region.label or (value.get("polygonlabels") or [None])[0]
        elif control == OCR and "x" in value:
            regions.setdefault(rid, Region("ocr")).box = _pixels_box(value, w, h)
        elif control == OCR_TEXT:
            region = regions.setdefault(rid, Region("ocr"))
            region.text = " ".join(value.get("text") or []).strip()
            if region.box is None and "x" in value:
                region.box = _pixels_box(value, w, h)
        elif control.startswith(CAPTION):
            text = " ".join(value.get("text") or []).strip()
            regions[rid] = Region("caption", text=text, granularity=control[len(CAPTION):])
    return regions


def same_box(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Two pixel boxes equal within :data:`PIXEL_TOLERANCE` (Label Studio's percent rounding)."""
    if a is None or b is None:
        return a is None and b is None
    return all(abs(float(x) - float(y)) <= PIXEL_TOLERANCE for x, y in zip(a, b))


def submitted_annotation(task_export: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation of an exported task that stands: the latest submitted one that was not
    cancelled (skipped), or None when people did not review the task."""
    candidates = [a for a in task_export.get("annotations") or [] if not a.get("was_cancelled")]
    if not candidates:
        return None
    return max(candidates, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
