"""Florence-2's parsed answers as annotation payloads (pure; no model).

``output_payloads`` maps what ``Florence2Processor.post_process_generation`` parsed for one
generation to dicts of annotation columns: absolute pixels of the upright image, boxes
x0, y0, x1, y1 clipped to the image, OCR quads as 8 numbers; one score per parsed item when
given (``ANSWER_ITEMS`` says how many items an answer has).
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Callable, Sequence

from florence2.format import SPECIAL_TOKEN_RE, TaskSpec, task_spec
from storage.geometry import clamp_points, clip_box
from storage.masks import polygons_to_rle, rle_area
from storage.schema import KIND_PHRASE, KIND_REGION

Payload = dict[str, Any]
Scores = Sequence[float | None] | None


def _with_score(payload: Payload, score: float | None) -> Payload:
    if score is not None:
        payload["score"] = score
    return payload


def _caption(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None, scores: Scores) -> list[Payload]:
    text = answer.replace("<pad>", "").strip() if isinstance(answer, str) else ""
    if not text or SPECIAL_TOKEN_RE.search(text):
        return []
    payload = {"kind": spec.kind, "granularity": spec.granularity, "text": text}
    if spec.kind == KIND_REGION:  # REGION_TO_DESCRIPTION: the prompted region's description (its box set by the caller)
        payload["region_type"] = spec.region_type
    return [_with_score(payload, scores[0] if scores else None)]


def _regions(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None, scores: Scores) -> list[Payload]:
    out = []
    for box, label, score in zip(answer.get("bboxes", []), answer.get("labels", []), scores or repeat(None)):
        bbox = clip_box(box, width, height)
        if bbox is not None and label.strip():
            out.append(_with_score({"kind": KIND_REGION, "region_type": spec.region_type, "text": label.strip(),
                                    "bbox": bbox}, score))
    return out


def _ocr(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None, scores: Scores) -> list[Payload]:
    out = []
    for quad, text, score in zip(answer.get("quad_boxes", []), answer.get("labels", []), scores or repeat(None)):
        if len(quad) != 8 or not text.strip() or SPECIAL_TOKEN_RE.search(text):
            continue
        quad = clamp_points(quad, width, height)
        bbox = clip_box([min(quad[0::2]), min(quad[1::2]), max(quad[0::2]), max(quad[1::2])], width, height)
        if bbox is not None:
            out.append(_with_score({"kind": KIND_REGION, "region_type": spec.region_type, "text": text.strip(),
                                    "quad": quad, "bbox": bbox}, score))
    return out


def _phrases(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None, scores: Scores) -> list[Payload]:
    out = []
    for box, phrase, score in zip(answer.get("bboxes", []), answer.get("labels", []), scores or repeat(None)):
        phrase, bbox = phrase.strip(), clip_box(box, width, height)
        start = caption.find(phrase) if caption and phrase else -1
        if start < 0 and caption and phrase:
            start = caption.lower().find(phrase.lower())
        if bbox is not None and start >= 0:
            end = start + len(phrase)
            out.append(_with_score({"kind": KIND_PHRASE, "granularity": spec.granularity, "text": caption[start:end],
                                    "span_start": start, "span_end": end, "bbox": bbox}, score))
    return out


def _polygons(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None, scores: Scores) -> list[Payload]:
    polygons = [clamp_points(p, width, height) for inst in answer.get("polygons", []) for p in inst]
    polygons = [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not polygons:
        return []
    rle = polygons_to_rle(polygons, height, width)
    return [{"polygons": polygons, "mask_rle": rle}] if rle_area(rle, height, width) > 0 else []


PAYLOAD_MAPPERS: dict[str, Callable[[TaskSpec, Any, int, int, str | None, Scores], list[Payload]]] = {
    "pure_text": _caption, "description_with_bboxes": _regions, "ocr": _ocr,
    "phrase_grounding": _phrases, "polygons": _polygons,
}
#: parse type -> the number of items of a parsed answer that get one score each
ANSWER_ITEMS: dict[str, Callable[[Any], int]] = {
    "pure_text": lambda answer: 1, "description_with_bboxes": lambda answer: len(answer.get("bboxes", [])),
    "ocr": lambda answer: len(answer.get("quad_boxes", [])),
    "phrase_grounding": lambda answer: len(answer.get("bboxes", [])),
}


def output_payloads(task: str, answer: Any, width: int, height: int, caption: str | None = None,
                    scores: Scores = None) -> list[Payload]:
    """Row payloads of one parsed generation (``post_process_generation(...)[<TASK>]``).

    Pure: ``answer`` is what the processor parsed for an image of ``width`` x ``height`` px;
    ``caption`` is the grounded caption (CAPTION_TO_PHRASE_GROUNDING); ``scores``, when given,
    holds one score per parsed item in the answer's order (one for a caption; see
    ``ANSWER_ITEMS``) and each payload made of an item carries it as ``score``. Returns dicts of
    annotation columns (``kind`` included; for REGION_TO_SEGMENTATION only ``polygons`` and
    ``mask_rle``, to be put on the prompted region's row; for REGION_TO_DESCRIPTION a ``region``
    of granularity ``brief`` without a box, the prompted region's child); empty when nothing is usable.
    """
    spec = task_spec(task)
    return PAYLOAD_MAPPERS[spec.parse_type](spec, answer, width, height, caption, scores)
