"""View consistency of Florence-2 boxes (test-time augmentation): transformed views of an image,
their boxes mapped back to the upright image, and each original box's score averaged over views.

Pure (PIL and numpy): the ``florence2`` annotator generates on every view of :data:`VIEWS` that
its ``views`` setting names, batched with the original images, and calls these functions.

Units: boxes are ``[x0, y0, x1, y1]`` in pixels of the upright image (``W`` x ``H``; a view of a
flip has the same size), scores are probabilities in ``[0, 1]``.

- :func:`view_image`: ``hflip`` mirrors the image left-right, ``vflip`` top-bottom;
- :func:`box_to_upright`: a box found on a view, in the upright image's pixels:
  ``hflip``: ``[W - x1, y0, W - x0, y1]``; ``vflip``: ``[x0, H - y1, x1, H - y0]`` (each flip is its
  own inverse, so the same map takes an upright box onto the view);
- :func:`consistency_scores`: for each box ``b`` of the original view with score ``s_0``, over the
  ``V`` transformed views,

      score(b) = (s_0 + sum_v s_v(m_v(b))) / (1 + V)

  where ``m_v(b)`` is the box of view ``v`` (mapped back) with the same label (white space folded,
  case-insensitive) and the highest IoU with ``b``, among those with IoU >= ``min_iou`` (ties: the
  higher score, then the earlier box), and ``s_v(m_v(b))`` its own score; ``0`` when view ``v`` has
  no such box. Matching is per original box (two original boxes may match one view box); boxes
  that only a transformed view found are dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from annotators.text_utils import fold_spaces
from storage.geometry import box_iou_matrix

#: view name -> the PIL transpose that makes it from the upright image
VIEWS: dict[str, Image.Transpose] = {"hflip": Image.Transpose.FLIP_LEFT_RIGHT, "vflip": Image.Transpose.FLIP_TOP_BOTTOM}
#: the tasks whose boxes are rescored by view consistency (OCR text would read mirrored; grounding
#: is conditioned on a caption whose "left"/"right" a flip contradicts)
VIEW_TASKS: tuple[str, ...] = ("OD", "DENSE_REGION_CAPTION")
#: (label, box, score) of one box: what consistency is computed over
ScoredBox = tuple[str, Sequence[float], float]


def check_views(value: object) -> tuple[str, ...]:
    """The ``views`` setting as a tuple in :data:`VIEWS` order; raises ``ValueError`` when it is a
    string, names an unknown view or repeats one."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"views must be a list of view names ({', '.join(VIEWS)}), got {value!r}")
    unknown = [v for v in value if v not in VIEWS]
    if unknown or len(set(value)) != len(value):
        raise ValueError(f"views must be distinct names among {', '.join(VIEWS)}, got {list(value)!r}")
    return tuple(v for v in VIEWS if v in value)


def view_image(image: Image.Image, view: str) -> Image.Image:
    """The ``view`` of the upright ``image`` (same size)."""
    return image.transpose(VIEWS[view])


def box_to_upright(box: Sequence[float], view: str, width: int, height: int) -> list[float]:
    """A box found on ``view`` of a ``width`` x ``height`` image, in the upright image's pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if view == "hflip":
        return [width - x1, y0, width - x0, y1]
    if view == "vflip":
        return [x0, height - y1, x1, height - y0]
    raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")


def label_key(text: str) -> str:
    """The label two boxes must share to confirm each other: white space folded, case-folded."""
    return fold_spaces(text).casefold()


def best_matches(original: Sequence[ScoredBox], view: Sequence[ScoredBox], min_iou: float) -> list[int | None]:
    """Per original box, the index of its match ``m_v`` in ``view`` (module docstring); ``None``: none."""
    if not original or not view:
        return [None] * len(original)
    ious = box_iou_matrix(np.asarray([b for _, b, _ in original], dtype=np.float64).reshape(-1, 4),
                          np.asarray([b for _, b, _ in view], dtype=np.float64).reshape(-1, 4))
    keys = [label_key(label) for label, _, _ in view]
    out: list[int | None] = []
    for i, (label, _, _) in enumerate(original):
        key = label_key(label)
        candidates = [j for j, k in enumerate(keys) if k == key and ious[i, j] >= min_iou]
        out.append(min(candidates, key=lambda j: (-ious[i, j], -view[j][2], j)) if candidates else None)
    return out


def consistency_scores(original: Sequence[ScoredBox], views: Sequence[Sequence[ScoredBox]],
                       min_iou: float, min_confirmations: int = 0) -> tuple[list[float], list[int]]:
    """``(score(b) for every original box, boxes confirmed per view)``; ``views`` hold the boxes of
    each transformed view already mapped back with :func:`box_to_upright`. A box fewer than
    ``min_confirmations`` views confirm scores 0."""
    totals = [float(score) for _, _, score in original]
    count = [0] * len(original)
    confirmed = []
    for view in views:
        matches = best_matches(original, view, min_iou)
        for i, j in enumerate(matches):
            if j is not None:
                totals[i] += float(view[j][2])
                count[i] += 1
        confirmed.append(sum(j is not None for j in matches))
    return [total / (1 + len(views)) if n >= min_confirmations else 0.0 for total, n in zip(totals, count)], confirmed


def upright_scored_boxes(payloads: Sequence[dict], view: str, width: int, height: int,
                         default_score: float | None = 0.0) -> list[ScoredBox]:
    """The boxes of payloads parsed on ``view``, mapped back to the upright image with their
    score (``default_score`` where a payload has none; a null score counts 0)."""
    return [(p["text"], box_to_upright(p["bbox"], view, width, height), p.get("score", default_score) or 0.0)
            for p in payloads if p.get("bbox") is not None]


def rescore_payloads(original: Sequence[dict], views: Sequence[Sequence[ScoredBox]], min_iou: float,
                     min_confirmations: int = 0) -> list[int]:
    """Set the ``score`` of every scored box payload of the original view to its view-consistency
    score (:func:`consistency_scores`; in place); returns the boxes confirmed per view."""
    scored = [p for p in original if p.get("bbox") is not None and p.get("score") is not None]
    scores, confirmed = consistency_scores([(p["text"], p["bbox"], p["score"]) for p in scored], views, min_iou,
                                           min_confirmations)
    for payload, score in zip(scored, scores):
        payload["score"] = score
    return confirmed
