"""Florence-2 training targets of one image's curated rows: ``(task, prompt, target)`` per task
the rows support (pure Python; absolute pixels of the upright image, boxes x0, y0, x1, y1;
location tokens and the target grammar in :mod:`florence2.format`):

- CAPTION / DETAILED_CAPTION / MORE_DETAILED_CAPTION: one example per caption row of the
  granularity (target = the caption);
- OD: every object region (no ``parent_id``) with its class label (``label`` column when
  curation kept one, else ``text``), boxes in reading order (y0, x0), grouped under their label
  as the released model emits them: ``label<loc>x4<loc>x4...`` (labels in alphabetical order);
- DENSE_REGION_CAPTION: object regions whose chosen ``text`` differs from their class label
  (a description), ``text<loc>x4``, grouped the same way;
- REGION_TO_DESCRIPTION: per object region with a description (a ``region`` row of granularity
  ``brief`` whose ``parent_id`` is the object region, or the region's own ``text`` when it differs
  from its ``label``, as curation keeps the region-text rule's choice), prompt = the object's box tokens, target =
  the description;
- OCR_WITH_REGION: ``ocr`` regions with text, ``text<loc>x8`` (the quad, or the box's corners);
- CAPTION_TO_PHRASE_GROUNDING: per caption with grounded phrases (``phrase`` rows whose
  ``parent_id`` is the caption), prompt ``<CAPTION_TO_PHRASE_GROUNDING>caption``, target
  ``phrase<loc>x4...`` in span order; phrases the processor bans (pronouns...) are left out;
- REGION_TO_SEGMENTATION: per object region with polygons, prompt = the region's box tokens,
  target = the mask's polygons as bare location tokens joined by ``<sep>`` (as the released
  model emits them).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable

from florence2 import format as ff

BANNED = frozenset(ff.BANNED_GROUNDING_PHRASES)
#: one curated row as a dict of its columns
Row = dict[str, Any]


# ------------------------------------------------------------------ per-task builders
def row_label(row: Row) -> str:
    """A region's class label: the ``label`` column curation kept, else its ``text``."""
    return (row.get("label") or row.get("text") or "").strip()


def _reading_order(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["bbox"][1], r["bbox"][0], r["bbox"][3], r["bbox"][2], row_label(r)))


def object_rows(rows: list[Row]) -> list[Row]:
    """The top-level object regions with a box (no ``parent_id``)."""
    return [r for r in rows if r["kind"] == "region" and r.get("region_type") == "object" and not r.get("parent_id")
            and r.get("bbox") is not None]


def _captions(granularity: str) -> Callable[..., list[tuple[str, str]]]:
    def build(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
        return [("", ff.caption_target(r["text"])) for r in rows
                if r["kind"] == "caption" and r.get("granularity") == granularity and (r.get("text") or "").strip()]
    return build


def _od(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    regions = [(row_label(r), r["bbox"]) for r in _reading_order(r for r in object_rows(rows) if row_label(r))]
    return [("", ff.regions_target(regions, width, height, fmt))] if regions else []


def _dense(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    described = [r for r in object_rows(rows) if r.get("label") and (r.get("text") or "").strip()
                 and r["text"].strip() != r["label"].strip()]
    regions = [(r["text"], r["bbox"]) for r in _reading_order(described)]
    return [("", ff.regions_target(regions, width, height, fmt))] if regions else []


def description_rows(rows: list[Row]) -> dict[str, Row]:
    """Object region id -> its description row (a ``region`` of granularity ``brief`` whose
    ``parent_id`` is the region; the first with text when there are several)."""
    out: dict[str, Row] = {}
    for r in rows:
        if r["kind"] == "region" and r.get("granularity") == "brief" and r.get("parent_id") and (r.get("text") or "").strip():
            out.setdefault(r["parent_id"], r)
    return out


def _descriptions(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    described = description_rows(rows)
    out = []
    for r in _reading_order(o for o in object_rows(rows) if o.get("annotation_id") in described):
        text = described[r["annotation_id"]]["text"].strip()
        if not ff.SPECIAL_TOKEN_RE.search(text):
            out.append((ff.task_prompt("REGION_TO_DESCRIPTION", bbox=r["bbox"], width=width, height=height),
                        ff.caption_target(text)))
    return out


def _quad(row: Row) -> list[float]:
    if row.get("quad") is not None:
        return list(row["quad"])
    x0, y0, x1, y1 = row["bbox"]
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _ocr(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    lines = [r for r in rows if r["kind"] == "region" and r.get("region_type") == "ocr" and (r.get("text") or "").strip()
             and (r.get("quad") is not None or r.get("bbox") is not None)]
    lines.sort(key=lambda r: (min(_quad(r)[1::2]), min(_quad(r)[0::2]), r["text"]))
    return [("", ff.ocr_target([(r["text"], _quad(r)) for r in lines], width, height))] if lines else []


def _grounding(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    children = collections.defaultdict(list)
    for r in rows:
        if r["kind"] == "phrase" and r.get("parent_id") and r.get("bbox") is not None and (r.get("text") or "").strip() \
                and r["text"].strip() not in BANNED:
            children[r["parent_id"]].append(r)
    out = []
    for caption in (r for r in rows if r["kind"] == "caption" and r["annotation_id"] in children):
        text = (caption.get("text") or "").strip()
        if not text or ff.SPECIAL_TOKEN_RE.search(text):
            continue
        grouped: dict[str, list] = {}
        order = sorted(children[caption["annotation_id"]],
                       key=lambda r: (r.get("span_start") or 0, r["bbox"][0], r["bbox"][1]))
        for r in order:  # one phrase, all its boxes: the processor gives each box the phrase
            grouped.setdefault(r["text"].strip(), []).append(r["bbox"])
        prompt = ff.task_prompt("CAPTION_TO_PHRASE_GROUNDING", text=text)
        out.append((prompt, ff.grounding_target(grouped.items(), width, height)))
    return out


def _segmentation(rows: list[Row], width: int, height: int, fmt: str = "released") -> list[tuple[str, str]]:
    out = []
    for r in _reading_order(o for o in object_rows(rows) if o.get("polygons")):
        polygons = [list(p) for p in r["polygons"] if p is not None and len(p) >= 6 and len(p) % 2 == 0]
        if polygons:
            prompt = ff.task_prompt("REGION_TO_SEGMENTATION", bbox=r["bbox"], width=width, height=height)
            out.append((prompt, ff.segmentation_target(polygons, width, height, fmt)))
    return out


#: task -> builder(rows of one image, width, height) -> [(prompt or "" for the bare token, target)]
BUILDERS: dict[str, Callable[..., list[tuple[str, str]]]] = {
    "CAPTION": _captions("brief"),
    "DETAILED_CAPTION": _captions("detailed"),
    "MORE_DETAILED_CAPTION": _captions("more_detailed"),
    "OD": _od,
    "DENSE_REGION_CAPTION": _dense,
    "REGION_TO_DESCRIPTION": _descriptions,
    "OCR_WITH_REGION": _ocr,
    "CAPTION_TO_PHRASE_GROUNDING": _grounding,
    "REGION_TO_SEGMENTATION": _segmentation,
}


def image_targets(rows: list[Row], width: int, height: int, tasks: Iterable[str] = ff.TASK_ORDER,
                  skipped: collections.Counter | None = None, target_format: str = "released"
                  ) -> list[tuple[str, str, str]]:
    """``(task, prompt, target)`` of one image's curated rows (pure); a row set a task cannot
    encode (e.g. a caption holding special tokens) is skipped and counted in ``skipped``.
    ``target_format``: :data:`florence2.format.TARGET_FORMATS`."""
    ff.check_target_format(target_format)
    out = []
    for task in tasks:
        try:
            pairs = BUILDERS[task](rows, width, height, target_format)
        except ValueError:
            if skipped is not None:
                skipped[task] += 1
            continue
        out.extend((task, prompt or ff.task_spec(task).token, target) for prompt, target in pairs if target)
    return out
