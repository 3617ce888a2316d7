"""The dashboard's gallery: sample images of a round's curated set with their annotations drawn.

Each image is an inline SVG whose ``viewBox`` is the upright image in absolute pixels
(``0 0 width height``): the picture is an embedded base64 JPEG thumbnail (longer side at most
``thumb_side`` pixels) stretched over that frame, so every overlay is drawn in the annotation's
own coordinates: object boxes (``rect.box``), OCR quads (``polygon.quad``, clockwise from the
top-left), masks (``path.mask`` from the ``polygons`` column, else traced from ``mask_rle``) and
grounded phrases (dashed ``rect.phrase`` with the phrase). Every mark carries ``data-row`` =
its annotation id; a click on an image shows its rows (a ``<template>`` per image) in the rows
panel, and a click on a mark highlights that mark's row. An image is named by its key (its
file's path in its folder or its tar member, up to the first dot), with its shard and image
id in the name's tooltip.
"""

from __future__ import annotations

import base64
import io
from pathlib import PurePath
from typing import Any, Callable

from engine.dataset.locations import ImageLocation, image_locations, read_images
from engine.report.charts import esc
from storage.catalog import Catalog
from storage.decode import decode_rgb
from storage.masks import decode_rle, mask_to_polygons

ROW_COLUMNS = ("annotation_id", "image_id", "kind", "granularity", "region_type", "source", "text", "label", "bbox",
               "quad", "polygons", "mask_rle", "parent_id", "score", "agreement", "seen_by")
TABLE_COLUMNS = ("annotation_id", "kind", "type", "source", "text", "label", "score", "agreement", "seen_by", "bbox")
COLORS = {"object": "#00e5ff", "ocr": "#ffd400", "mask": "#ff4fd8", "phrase": "#7CFC00"}
Row = dict[str, Any]

GALLERY_SCRIPT = """
document.querySelectorAll('figure.thumb').forEach(function (figure) {
  figure.addEventListener('click', function (event) {
    var panel = document.getElementById('rows-panel');
    panel.innerHTML = '';
    panel.appendChild(figure.querySelector('template.rows').content.cloneNode(true));
    panel.dataset.imageId = figure.dataset.imageId;
    document.querySelectorAll('figure.thumb.selected').forEach(function (f) { f.classList.remove('selected'); });
    figure.classList.add('selected');
    var mark = event.target.closest('[data-row]');
    if (mark) {
      var row = panel.querySelector('tr[data-row="' + mark.dataset.row + '"]');
      if (row) { row.classList.add('hit'); row.scrollIntoView({block: 'nearest'}); }
    }
  });
});
"""


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


def _label_text(row: Row, x: float, y: float, size: float, color: str) -> str:
    text = (row.get("text") or row.get("label") or "")[:40]
    return (f'<text x="{x:.1f}" y="{max(y - size * 0.25, size):.1f}" font-size="{size:.1f}" fill="{color}" '
            f'stroke="#000" stroke-width="{size / 8:.2f}" paint-order="stroke">{esc(text)}</text>') if text else ""


def _rect(row: Row, cls: str, color: str, size: float, dash: str = "") -> str:
    x0, y0, x1, y1 = row["bbox"]
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<g class="mark" data-row="{esc(row["annotation_id"])}"><rect class="{cls}" x="{x0:.1f}" y="{y0:.1f}" '
            f'width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="none" stroke="{color}" stroke-width="2" '
            f'vector-effect="non-scaling-stroke"{style}/>{_label_text(row, x0, y0, size, color)}</g>')


def _mask_paths(row: Row, width: int, height: int) -> list[list[float]]:
    if row.get("polygons"):
        return [list(p) for p in row["polygons"] if p is not None and len(p) >= 6]
    if row.get("mask_rle"):
        return mask_to_polygons(decode_rle(row["mask_rle"], height, width), tolerance=1.0)
    return []


def _draw_object(row: Row, width: int, height: int, size: float) -> str:
    parts = []
    polygons = _mask_paths(row, width, height)
    if polygons:
        d = " ".join("M" + " L".join(f"{p[i]:.1f},{p[i + 1]:.1f}" for i in range(0, len(p) - 1, 2)) + " Z"
                     for p in polygons)
        parts.append(f'<path class="mask" data-row="{esc(row["annotation_id"])}" d="{d}" fill="{COLORS["mask"]}" '
                     f'fill-opacity="0.35" stroke="{COLORS["mask"]}" vector-effect="non-scaling-stroke"/>')
    if row.get("bbox") is not None:
        parts.append(_rect(row, "box", COLORS["object"], size))
    return "".join(parts)


def _draw_ocr(row: Row, width: int, height: int, size: float) -> str:
    quad = row.get("quad")
    if quad is None:
        return _rect(row, "quad", COLORS["ocr"], size) if row.get("bbox") is not None else ""
    points = " ".join(f"{quad[i]:.1f},{quad[i + 1]:.1f}" for i in range(0, 8, 2))
    return (f'<g class="mark" data-row="{esc(row["annotation_id"])}"><polygon class="quad" points="{points}" '
            f'fill="none" stroke="{COLORS["ocr"]}" stroke-width="2" vector-effect="non-scaling-stroke"/>'
            f'{_label_text(row, min(quad[0::2]), min(quad[1::2]), size, COLORS["ocr"])}</g>')


def _draw_phrase(row: Row, width: int, height: int, size: float) -> str:
    return _rect(row, "phrase", COLORS["phrase"], size, dash="6 3") if row.get("bbox") is not None else ""


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
        values = {**row, "type": _type(row), "text": (row.get("text") or "")[:300]}
        body.append(f'<tr data-row="{esc(row["annotation_id"])}">'
                    + "".join(f"<td>{esc(_fmt(values.get(c)))}</td>" for c in TABLE_COLUMNS) + "</tr>")
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


def gallery_html(catalog: Catalog, round_: int, limit: int = 12, thumb_side: int = 384) -> str:
    """The gallery section's inner HTML (figures + the rows panel). Images whose bytes cannot be
    read back (a moved shard) are left out with a note instead of failing the page."""
    ids = sample_images(catalog, round_, limit)
    if not ids:
        return '<p class="empty">no curated images in this round</p>'
    placeholders = ", ".join("?" for _ in ids)
    table = catalog.con.sql(
        f"select {', '.join(ROW_COLUMNS)} from curated where curated_round = ? and image_id in ({placeholders}) "
        "order by image_id, kind, region_type, annotation_id", params=[int(round_), *ids]).to_arrow_table()
    by_image: dict[str, list[Row]] = {}
    for row in table.to_pylist():
        by_image.setdefault(row["image_id"], []).append(row)
    locations = image_locations(catalog, ids)
    pictures: dict[str, str] = {}
    notes = []
    try:
        for location, data in read_images(locations):
            pictures[location.image_id] = _thumbnail(data, thumb_side)
    except Exception as exc:  # a moved shard must not cost the whole dashboard
        notes.append(f'<p class="empty">some images could not be read: {esc(exc)}</p>')
    figures = []
    for image_id in ids:
        if image_id not in pictures:
            continue
        width, height = locations[image_id].width, locations[image_id].height
        rows = by_image.get(image_id, [])
        size = max(width, height) / 22
        marks = "".join(DRAW[overlay_kind(r)](r, width, height, size) for r in rows if overlay_kind(r) in DRAW)
        caption = next((r["text"] for r in rows if r["kind"] == "caption" and r.get("text")), "")
        figures.append(
            f'<figure class="thumb" data-image-id="{esc(image_id)}" data-rows="{len(rows)}" tabindex="0">'
            f'<svg class="overlay" viewBox="0 0 {width} {height}" width="{256 * width / max(width, height):.0f}" '
            f'height="{256 * height / max(width, height):.0f}"><image href="data:image/jpeg;base64,'
            f'{pictures[image_id]}" x="0" y="0" width="{width}" height="{height}" preserveAspectRatio="none"/>'
            f'{marks}</svg><figcaption>{_name(locations[image_id])} {esc(caption[:160])} <small>{len(rows)} rows'
            f'</small></figcaption><template class="rows">{_rows_table(rows)}</template></figure>')
    return ("".join(notes) + f'<div class="gallery">{"".join(figures)}</div>'
            '<h3>rows of the selected image</h3><div id="rows-panel"><p class="empty">click an image</p></div>')
