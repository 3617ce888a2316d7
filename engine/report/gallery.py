"""The dashboard's gallery: sample images of a round's curated set with their annotations drawn.

Each image is an inline SVG whose ``viewBox`` is the upright image in absolute pixels
(``0 0 width height``): the picture is an embedded base64 JPEG thumbnail (longer side at most
``thumb_side`` pixels) stretched over that frame, so every overlay is drawn in the annotation's
own coordinates: object boxes (``rect.box``), OCR quads (``polygon.quad``, clockwise from the
top-left), masks (``path.mask`` from the ``polygons`` column, else traced from ``mask_rle``) and
grounded phrases (dashed ``rect.phrase`` with the phrase). Besides the curated (kept) rows, the
rows the round's curation dropped on the image are drawn too (:mod:`engine.report.gallery_rows`),
class ``dropped``, dashed in red, hidden until the filters ask for them; a geometry that cannot
be drawn (not finite) is left out of the picture, never out of the rows table. Every mark carries
``data-row`` = its annotation id, the filters' ``data-*`` attributes
(:mod:`engine.report.gallery_filter`) and a ``<title>`` tooltip (source, label, score; for a
dropped row the rule and reason). A click on an image shows its rows (a ``<template>`` per
image, a drop reason per dropped row) in the rows panel, and a click on a mark highlights that
mark's row. An image is named by its key (its file's path in its folder or its tar member, up to
the first dot), with its shard and image id in the name's tooltip.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import PurePath
from typing import Any, Callable

from engine.dataset.locations import ImageLocation, image_locations, read_images
from engine.report.charts import esc
from engine.report.gallery_filter import data_attributes, filter_bar
from engine.report.gallery_rows import ImageRows, gallery_rows
from storage.catalog import Catalog
from storage.decode import decode_rgb
from storage.masks import decode_rle, mask_to_polygons

TABLE_COLUMNS = ("annotation_id", "kind", "type", "source", "text", "label", "score", "agreement", "seen_by", "bbox",
                 "status", "why dropped")
COLORS = {"object": "#00e5ff", "ocr": "#ffd400", "mask": "#ff4fd8", "phrase": "#7CFC00", "dropped": "#ff3b30"}
DROPPED_DASH = "3 3"
WHY_CELL = '<td class="why">'
#: rows drawn per image and status unless told otherwise
DEFAULT_ROW_CAP = 200
Row = dict[str, Any]


def _type(row: Row) -> str:
    return row.get("granularity") or row.get("region_type") or ""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _kept(row: Row) -> bool:
    return row.get("drop_rule") is None


def _why(row: Row) -> str:
    return "" if _kept(row) else f"{row['drop_rule']}: {row.get('drop_reason') or ''}"


def _finite(values: Any) -> bool:
    return values is not None and all(v is not None and math.isfinite(v) for v in values)


def _title(row: Row) -> str:
    score = row.get("score")
    parts = [row.get("source") or "", (row.get("label") or row.get("text") or "")[:80],
             "" if score is None else f"score {score:.3g}"]
    why = "" if _kept(row) else f"; dropped by {_why(row)}"
    return f"<title>{esc(' · '.join(p for p in parts if p) + why)}</title>"


def _mark(row: Row, cls: str = "mark") -> str:
    """The attributes of a mark of ``row`` (a ``g.mark`` or a ``path.mask``): class, id, filter data."""
    cls = cls if _kept(row) else f"{cls} dropped"
    return f'class="{cls}" data-row="{esc(row["annotation_id"])}"{data_attributes(row, _kept(row))}'


def _color(row: Row, kind: str) -> str:
    return COLORS[kind] if _kept(row) else COLORS["dropped"]


def _dash(row: Row, dash: str = "") -> str:
    dash = dash if _kept(row) else DROPPED_DASH
    return f' stroke-dasharray="{dash}"' if dash else ""


def _label_text(row: Row, x: float, y: float, size: float, color: str) -> str:
    text = (row.get("text") or row.get("label") or "")[:40]
    return (f'<text x="{x:.1f}" y="{max(y - size * 0.25, size):.1f}" font-size="{size:.1f}" fill="{color}" '
            f'stroke="#000" stroke-width="{size / 8:.2f}" paint-order="stroke">{esc(text)}</text>') if text else ""


def _rect(row: Row, cls: str, kind: str, size: float, dash: str = "") -> str:
    if not _finite(row.get("bbox")):
        return ""
    x0, y0, x1, y1 = row["bbox"]
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    color = _color(row, kind)
    return (f'<g {_mark(row)}>{_title(row)}<rect class="{cls}" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
            f'height="{y1 - y0:.1f}" fill="none" stroke="{color}" stroke-width="2" vector-effect="non-scaling-stroke"'
            f'{_dash(row, dash)}/>{_label_text(row, x0, y0, size, color)}</g>')


def _mask_paths(row: Row, width: int, height: int) -> list[list[float]]:
    if row.get("polygons"):
        return [list(p) for p in row["polygons"] if p is not None and len(p) >= 6 and _finite(p)]
    if row.get("mask_rle"):
        try:
            return mask_to_polygons(decode_rle(row["mask_rle"], height, width), tolerance=1.0)
        except (ValueError, TypeError, UnicodeEncodeError):  # a dropped row's mask may be malformed
            return []
    return []


def _draw_object(row: Row, width: int, height: int, size: float) -> str:
    parts = []
    polygons = _mask_paths(row, width, height)
    if polygons:
        d = " ".join("M" + " L".join(f"{p[i]:.1f},{p[i + 1]:.1f}" for i in range(0, len(p) - 1, 2)) + " Z"
                     for p in polygons)
        color = _color(row, "mask")
        parts.append(f'<path {_mark(row, "mask")} d="{d}" fill="{color}" fill-opacity="0.35" '
                     f'stroke="{color}" vector-effect="non-scaling-stroke"{_dash(row)}>{_title(row)}</path>')
    parts.append(_rect(row, "box", "object", size))
    return "".join(parts)


def _draw_ocr(row: Row, width: int, height: int, size: float) -> str:
    quad = row.get("quad")
    if quad is None or not _finite(quad):
        return _rect(row, "quad", "ocr", size)
    points = " ".join(f"{quad[i]:.1f},{quad[i + 1]:.1f}" for i in range(0, 8, 2))
    color = _color(row, "ocr")
    return (f'<g {_mark(row)}>{_title(row)}<polygon class="quad" points="{points}" fill="none" stroke="{color}" '
            f'stroke-width="2" vector-effect="non-scaling-stroke"{_dash(row)}/>'
            f'{_label_text(row, min(quad[0::2]), min(quad[1::2]), size, color)}</g>')


def _draw_phrase(row: Row, width: int, height: int, size: float) -> str:
    return _rect(row, "phrase", "phrase", size, dash="6 3")


#: overlay kind of a row -> drawing function(row, width, height, font size) -> SVG markup
DRAW: dict[str, Callable[[Row, int, int, float], str]] = {
    "object": _draw_object, "ocr": _draw_ocr, "phrase": _draw_phrase,
}


def overlay_kind(row: Row) -> str:
    return (row.get("region_type") or "object") if row["kind"] == "region" else row["kind"]


def sample_images(catalog: Catalog, round_: int, limit: int) -> list[str]:
    """Up to ``limit`` image ids of the round's curated set, those with the most kinds of
    annotation first (then by id), so the gallery shows every overlay there is."""
    rows = catalog.query(
        "select image_id from curated where curated_round = ? group by image_id "
        "order by count(distinct kind || coalesce(region_type, '')) desc, count(*) desc, image_id limit ?",
        [int(round_), int(limit)])
    return [r[0] for r in rows]


def _rows_table(rows: list[Row]) -> str:
    head = "".join(f"<th>{c}</th>" for c in TABLE_COLUMNS)
    body = []
    for row in rows:
        kept = _kept(row)
        values = {**row, "type": _type(row), "text": (row.get("text") or "")[:300],
                  "status": "kept" if kept else "dropped", "why dropped": _why(row)}
        cells = "".join((WHY_CELL if c == "why dropped" else "<td>") + f"{esc(_fmt(values.get(c)))}</td>"
                        for c in TABLE_COLUMNS)
        body.append(f'<tr class="{"kept" if kept else "dropped"}" data-row="{esc(row["annotation_id"])}"'
                    f'{data_attributes(row, kept)} title="{esc(_why(row))}">{cells}</tr>')
    return f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _thumbnail(data: bytes, side: int) -> str:
    image = decode_rgb(data)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _name(location: ImageLocation) -> str:
    """The image's name as its user knows it: its key (the file's path in its folder, or its
    member in a tar, up to the first dot), with its shard and image id in the tooltip."""
    tooltip = f"{PurePath(location.shard).name}/{location.key}, image id {location.image_id}"
    return f'<b class="name" title="{esc(tooltip)}">{esc(location.key)}</b>'


def _count_note(image: ImageRows) -> str:
    note = (f'<span class="shown">{len(image.kept)} of {len(image.kept) + len(image.dropped)}</span> rows shown '
            f'({image.kept_total} kept, {image.dropped_total} dropped')
    if image.capped:
        note += f"; {len(image.kept)} kept and {len(image.dropped)} dropped drawn, the rest over the cap"
    return f'<small class="count">{note})</small>'


def _figure(location: ImageLocation, picture: str, image: ImageRows) -> str:
    width, height = location.width, location.height
    rows = image.kept + image.dropped
    size = max(width, height) / 22
    marks = "".join(DRAW[overlay_kind(r)](r, width, height, size) for r in rows if overlay_kind(r) in DRAW)
    caption = next((r["text"] for r in image.kept if r["kind"] == "caption" and r.get("text")), "")
    return (f'<figure class="thumb" data-image-id="{esc(location.image_id)}" data-rows="{len(image.kept)}" '
            f'data-dropped="{len(image.dropped)}" tabindex="0"><svg class="overlay" viewBox="0 0 {width} {height}" '
            f'width="{256 * width / max(width, height):.0f}" height="{256 * height / max(width, height):.0f}">'
            f'<image href="data:image/jpeg;base64,{picture}" x="0" y="0" width="{width}" height="{height}" '
            f'preserveAspectRatio="none"/>{marks}</svg><figcaption>{_name(location)} {esc(caption[:160])} '
            f'{_count_note(image)}</figcaption><template class="rows">{_rows_table(rows)}</template></figure>')


def gallery_html(catalog: Catalog, round_: int, limit: int = 12, thumb_side: int = 384,
                 max_rows: int = DEFAULT_ROW_CAP) -> str:
    """The gallery section's inner HTML (filters, figures, the rows panel): ``limit`` images,
    at most ``max_rows`` kept and ``max_rows`` dropped rows drawn on each. Images whose bytes
    cannot be read back (a moved shard) are left out with a note instead of failing the page."""
    ids = sample_images(catalog, round_, limit)
    if not ids:
        return '<p class="empty">no curated images in this round</p>'
    by_image = gallery_rows(catalog, round_, ids, max_rows)
    locations = image_locations(catalog, ids)
    pictures: dict[str, str] = {}
    notes = []
    try:
        for location, data in read_images(locations):
            pictures[location.image_id] = _thumbnail(data, thumb_side)
    except Exception as exc:  # a moved shard must not cost the whole dashboard
        notes.append(f'<p class="empty">some images could not be read: {esc(exc)}</p>')
    shown = [i for i in ids if i in pictures]
    figures = "".join(_figure(locations[i], pictures[i], by_image[i]) for i in shown)
    drawn = [r for i in shown for r in by_image[i].kept + by_image[i].dropped]
    bar = filter_bar(drawn, sum(len(by_image[i].kept) for i in shown), sum(len(by_image[i].dropped) for i in shown),
                     any(by_image[i].capped for i in shown), max_rows)
    return ("".join(notes) + bar + f'<div class="gallery">{figures}</div>'
            '<h3>rows of the selected image</h3><div id="rows-panel"><p class="empty">click an image</p></div>')
