"""Florence-2 token facts in one place: location bins, geometry tokens, task prompts, targets.

Pure Python (no torch); used by the ``florence2`` annotator to build prompts, by the test
checkpoint builder to make the tokenizer, and by training to write target sequences.

Coordinates are absolute pixels of the upright image, origin top-left. Each axis is cut into
:data:`NUM_BINS` equal bins: ``bin = floor(x / (W / 1000))`` clamped to ``0..999`` and back
``x = (bin + 0.5) * W / 1000`` (the bin centre), exactly as transformers'
``Florence2PostProcessor.quantize`` / ``dequantize`` do (the processor then truncates to whole
pixels). Boxes are ``[x0, y0, x1, y1]``; OCR quads 8 values ``x, y`` clockwise from the
top-left corner; polygons flat ``[x0, y0, x1, y1, ...]`` lists.

Target grammar (what the processor's ``post_process_generation(text, task, image_size)`` parses
back to the same geometry, within one bin):

- OD / DENSE_REGION_CAPTION: as the released checkpoints emit them, each label once followed by
  the 4 location tokens of every box it names (``wheel<loc..>x4<loc..>x4car<loc..>x4``), no
  separator; the labels in alphabetical order (``car``, ``door``, ``wheel`` as in the released
  model card's example), boxes in the order given (callers pass reading order);
- OCR_WITH_REGION: ``text`` followed by 8 location tokens (the quad), repeated;
- CAPTION_TO_PHRASE_GROUNDING: ``phrase`` followed by 4 location tokens per box, repeated;
- REGION_TO_DESCRIPTION: prompt = the region's 4 location tokens, target = a short description
  of what is in it (plain text, as the released processor's ``pure_text`` parse reads it);
- REGION_TO_SEGMENTATION: as the released checkpoints emit it, bare location tokens: one mask's
  polygons joined by ``<sep>``, each polygon its ``x y`` location-token pairs (no ``<poly>``
  wrapper; the processor reads both).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

NUM_BINS = 1000
LOC_TOKENS: tuple[str, ...] = tuple(f"<loc_{i}>" for i in range(NUM_BINS))
POLY_START, POLY_END, POLY_SEP = "<poly>", "</poly>", "<sep>"
IMAGE_TOKEN = "<image>"
#: the tokens the original Florence-2 processor adds to the BART vocabulary, in its order
#: (1024 of them: BART's 50265 + 1024 = the 51289 text tokens of the released checkpoints)
EXTRA_TOKENS: tuple[str, ...] = (
    "<od>", "</od>", "<ocr>", "</ocr>", *LOC_TOKENS,
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
    "<seg>", "</seg>", POLY_SEP, "<region_cap>", "</region_cap>", "<region_to_desciption>",
    "</region_to_desciption>", "<proposal>", "</proposal>", POLY_START, POLY_END, "<and>",
)
#: any special token (BART's, Florence-2's, the image token): not allowed in free text
SPECIAL_TOKEN_RE = re.compile(
    r"<(?:loc_\d+|/?(?:s|pad|unk|mask|image|od|ocr|cap|ncap|dcap|grounding|seg|sep|region_cap|"
    r"region_to_desciption|proposal|poly|and))>"
)

#: grounded phrases the processor drops (pronouns, "the image", ...), as in the released config
BANNED_GROUNDING_PHRASES = (
    "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers",
    "they", "them", "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "its",
    "myself", "yourself", "himself", "herself", "itself", "ourselves", "yourselves", "themselves",
    "this", "that", "these", "those", "who", "whom", "whose", "which", "what", "all", "another",
    "any", "anybody", "anyone", "anything", "each", "everybody", "everyone", "everything", "few",
    "many", "nobody", "none", "several", "some", "somebody", "someone", "something", "each other",
    "one another", "the image", "image", "images", "the", "a", "an", "a group", "other objects",
    "lots", "a set",
)
#: the processor's post-processing rules, as transformers' conversion script writes them for
#: the released checkpoints (the keys must name every parse type it is asked for)
POST_PROCESSOR_CONFIG: dict[str, Any] = {
    "ocr": {"pattern": r"(.+?)" + r"<loc_(\d+)>" * 8, "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": list(BANNED_GROUNDING_PHRASES)},
    "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {},
    "polygons": {}, "bboxes": {}, "description_with_bboxes_or_polygons": {},
}


# ------------------------------------------------------------------------ coordinates
def quantize(value: float, size: float) -> int:
    """Location bin (0..999) of coordinate ``value`` (pixels) on an axis of ``size`` pixels."""
    if size <= 0:
        raise ValueError(f"axis size must be positive, got {size!r}")
    return min(NUM_BINS - 1, max(0, math.floor(value / (size / NUM_BINS))))


def dequantize(bin_: int, size: float) -> float:
    """Pixel coordinate of the centre of location bin ``bin_`` on an axis of ``size`` pixels."""
    if not 0 <= bin_ < NUM_BINS:
        raise ValueError(f"location bin must be in 0..{NUM_BINS - 1}, got {bin_!r}")
    return (bin_ + 0.5) * size / NUM_BINS


def point_tokens(xy: Sequence[float], width: float, height: float) -> str:
    """Location tokens of flat ``[x0, y0, x1, y1, ...]`` pixel coordinates (x on W, y on H)."""
    if len(xy) % 2:
        raise ValueError(f"coordinates come in x, y pairs; got {len(xy)} values")
    sizes = (width, height)
    return "".join(LOC_TOKENS[quantize(v, sizes[i % 2])] for i, v in enumerate(xy))


def box_tokens(bbox: Sequence[float], width: float, height: float) -> str:
    """Four location tokens of box ``[x0, y0, x1, y1]`` (pixels)."""
    if len(bbox) != 4:
        raise ValueError(f"a box has 4 values x0, y0, x1, y1; got {len(bbox)}")
    return point_tokens(bbox, width, height)


def quad_tokens(quad: Sequence[float], width: float, height: float) -> str:
    """Eight location tokens of an OCR quad (4 corners clockwise from top-left, pixels)."""
    if len(quad) != 8:
        raise ValueError(f"an OCR quad has 8 values; got {len(quad)}")
    return point_tokens(quad, width, height)


def polygon_tokens(polygons: Sequence[Sequence[float]], width: float, height: float) -> str:
    """One mask as polygon ``<sep>`` polygon ... (each >= 3 points), bare as the released models emit it."""
    if not polygons:
        raise ValueError("a mask needs at least one polygon")
    parts = []
    for polygon in polygons:
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"a polygon needs >= 3 x, y points; got {len(polygon)} values")
        parts.append(point_tokens(polygon, width, height))
    return POLY_SEP.join(parts)


# -------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TaskSpec:
    """One Florence-2 task: its prompt token and what its output becomes.

    ``kind``/``granularity``/``region_type`` are the annotation columns of the rows it makes;
    ``input`` is ``None``, ``"text"`` (a caption follows the token) or ``"region"`` (a box, as
    four location tokens, follows the token); ``parse_type`` is the post-processing type the
    transformers processor applies (``Florence2Processor.tasks_answer_post_processing_type``).
    """

    name: str
    kind: str
    parse_type: str
    granularity: str | None = None
    region_type: str | None = None
    input: str | None = None

    @property
    def token(self) -> str:
        """The task token, e.g. ``<CAPTION>``: what the processor turns into the prompt."""
        return f"<{self.name}>"


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("CAPTION", "caption", "pure_text", granularity="brief"),
        TaskSpec("DETAILED_CAPTION", "caption", "pure_text", granularity="detailed"),
        TaskSpec("MORE_DETAILED_CAPTION", "caption", "pure_text", granularity="more_detailed"),
        TaskSpec("OD", "region", "description_with_bboxes", region_type="object"),
        TaskSpec("DENSE_REGION_CAPTION", "region", "description_with_bboxes", region_type="object"),
        TaskSpec("REGION_TO_DESCRIPTION", "region", "pure_text", granularity="brief", region_type="object",
                 input="region"),
        TaskSpec("OCR_WITH_REGION", "region", "ocr", region_type="ocr"),
        TaskSpec("CAPTION_TO_PHRASE_GROUNDING", "phrase", "phrase_grounding", granularity="brief",
                 input="text"),
        TaskSpec("REGION_TO_SEGMENTATION", "region", "polygons", region_type="object", input="region"),
    )
}
#: the order tasks run in: grounding needs CAPTION's text, segmentation needs OD's boxes
TASK_ORDER: tuple[str, ...] = tuple(TASKS)
#: task -> the task whose output it takes as input
TASK_DEPENDS: dict[str, str] = {"CAPTION_TO_PHRASE_GROUNDING": "CAPTION", "REGION_TO_DESCRIPTION": "OD",
                                "REGION_TO_SEGMENTATION": "OD"}


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name`` (``"OD"`` or ``"<OD>"``); unknown names raise."""
    key = name.strip("<>") if isinstance(name, str) else name
    try:
        return TASKS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown Florence-2 task {name!r}; known: {', '.join(TASKS)}") from None


def task_names(key: str, tasks: Any) -> tuple[str, ...]:
    """The names of ``tasks`` (a list of task names, ``"OD"`` or ``"<OD>"``), in the order given,
    checked against :data:`TASKS`; a string, an item that is not a known task's name, or anything
    but a list raises ``ValueError`` naming the setting ``key`` and the known tasks."""
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, (list, tuple)):
        raise ValueError(f"{key} must be a list of task names, got {tasks!r}")
    if unknown := [t for t in tasks if not isinstance(t, str) or t.strip("<>") not in TASKS]:
        raise ValueError(f"{key} has unknown task(s) {', '.join(map(repr, unknown))}; known: {', '.join(TASKS)}")
    return tuple(task_spec(t).name for t in tasks)


def task_prompt(name: str, text: str | None = None, bbox: Sequence[float] | None = None,
                width: float = 0, height: float = 0) -> str:
    """The processor input for a task: its token, plus the caption or the region box tokens."""
    spec = task_spec(name)
    if spec.input is None:
        return spec.token
    if spec.input == "text":
        if not text:
            raise ValueError(f"task {spec.name} takes a text input")
        return spec.token + text
    if bbox is None:
        raise ValueError(f"task {spec.name} takes a region box")
    return spec.token + box_tokens(bbox, width, height)


def prompt_region(prompt: str) -> tuple[float, float, float, float] | None:
    """The box a region-input prompt (``<REGION_TO_DESCRIPTION><loc_a>..<loc_d>``) carries,
    normalised 0..1 (bin centres, ``(bin + 0.5) / 1000``); None without four location tokens."""
    bins = [(int(b) + 0.5) / NUM_BINS for b in _TARGET_LOC_RE.findall(prompt)]
    return (bins[0], bins[1], bins[2], bins[3]) if len(bins) == 4 else None


def prompt_caption(prompt: str) -> str | None:
    """The caption a text-input prompt (``<CAPTION_TO_PHRASE_GROUNDING>caption``) carries; None for
    a prompt of a task without a text input."""
    for spec in TASKS.values():
        if spec.input == "text" and prompt.startswith(spec.token):
            return prompt[len(spec.token):]
    return None


# ------------------------------------------------------------------------- targets
def _clean_text(text: str) -> str:
    """Text as it can appear before location tokens: stripped, with no '<' (ends a phrase)."""
    text = text.replace("<", " ").strip()
    if not text:
        raise ValueError("target texts must be non-empty")
    return text


#: how training writes boxes and masks: ``released`` as the released Florence-2 checkpoints emit
#: them (the default); ``per_box`` a label before every box and masks wrapped in ``<poly>``, for a
#: checkpoint that was trained so (the demo's); transformers' post-processor reads both
TARGET_FORMATS = ("released", "per_box")


def check_target_format(name: str) -> str:
    if name not in TARGET_FORMATS:
        raise ValueError(f"target_format must be one of {', '.join(TARGET_FORMATS)}, got {name!r}")
    return name


def regions_target(regions: Iterable[tuple[str, Sequence[float]]], width: float, height: float,
                   target_format: str = "released") -> str:
    """OD / DENSE_REGION_CAPTION target from ``(label, [x0, y0, x1, y1])`` pairs: each label once,
    followed by all its boxes (labels in alphabetical order, boxes in the given order); with
    ``per_box``, ``label<loc>x4`` per pair in the given order."""
    if check_target_format(target_format) == "per_box":
        return "".join(_clean_text(label) + box_tokens(box, width, height) for label, box in regions)
    grouped: dict[str, list[str]] = {}
    for label, box in regions:
        grouped.setdefault(_clean_text(label), []).append(box_tokens(box, width, height))
    return "".join(label + "".join(grouped[label]) for label in sorted(grouped))


def ocr_target(lines: Iterable[tuple[str, Sequence[float]]], width: float, height: float) -> str:
    """OCR_WITH_REGION target from ``(text, quad)`` pairs (quad: 8 values clockwise from top-left)."""
    return "".join(_clean_text(text) + quad_tokens(quad, width, height) for text, quad in lines)


def grounding_target(phrases: Iterable[tuple[str, Sequence[Sequence[float]]]], width: float,
                     height: float) -> str:
    """CAPTION_TO_PHRASE_GROUNDING target from ``(phrase, [box, ...])`` pairs."""
    return "".join(
        _clean_text(phrase) + "".join(box_tokens(box, width, height) for box in boxes)
        for phrase, boxes in phrases
    )


def segmentation_target(polygons: Sequence[Sequence[float]], width: float, height: float,
                        target_format: str = "released") -> str:
    """REGION_TO_SEGMENTATION target: the polygons of one mask (``per_box``: wrapped in ``<poly>``)."""
    tokens = polygon_tokens(polygons, width, height)
    return POLY_START + tokens + POLY_END if check_target_format(target_format) == "per_box" else tokens


def caption_target(text: str) -> str:
    """Caption target: the text itself, with special tokens refused."""
    if SPECIAL_TOKEN_RE.search(text):
        raise ValueError(f"caption contains special tokens: {text!r}")
    return text.strip()


_TARGET_REGION_RE = re.compile(r"([^<]+)((?:<loc_\d+>)+)")
_TARGET_LOC_RE = re.compile(r"<loc_(\d+)>")


def target_regions(target: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``(label, (x0, y0, x1, y1))`` of every box of an OD / DENSE_REGION_CAPTION target, either
    format (a label followed by 4k location tokens gives k boxes); coordinates normalised to 0..1
    (bin centres, ``(bin + 0.5) / 1000``)."""
    out = []
    for label, locs in _TARGET_REGION_RE.findall(target):
        bins = [(int(b) + 0.5) / NUM_BINS for b in _TARGET_LOC_RE.findall(locs)]
        for i in range(0, len(bins) - 3, 4):
            out.append((label.strip(), (bins[i], bins[i + 1], bins[i + 2], bins[i + 3])))
    return out
