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
- :func:`fused_views` (the ``view_fusion`` setting): weighted box fusion over the views instead.
  All boxes of the original and the ``V`` views, highest score first (ties: the original, then
  the views in order, then the earlier box), each not yet taken starts a *cluster*; every other
  view (the original counts as one) adds to it its untaken box of the same label with the
  highest IoU with the starting box, among those with IoU >= ``min_iou`` (ties: the higher
  score, then the earlier box); so a cluster holds at most one box per view. A cluster of ``n``
  boxes with scores ``s_i`` and boxes ``b_i``:

      box = sum_i s_i b_i / sum_i s_i   (the plain mean when every s_i is 0)
      score = sum_i s_i / (1 + V)

  the same score as above when the cluster holds an original box. A cluster of fewer than
  ``1 + min_confirmations`` boxes scores 0 when it holds an original box and is dropped when it
  does not; a kept cluster without an original box becomes a new box (the views found an object
  the original generation missed: test-time augmentation adds recall, not only confidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from storage.geometry import box_iou_matrix
from storage.schema import KIND_REGION

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
    return " ".join(str(text or "").split()).casefold()


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


@dataclass(frozen=True)
class FusedBox:
    """One cluster of :func:`fused_views`: its label (of the box that started it), fused box
    (pixels), score, the index of its original box (``None``: the views alone found it) and,
    per view, whether the view has a box in it."""

    label: str
    box: list[float]
    score: float
    original: int | None
    in_view: tuple[bool, ...]


def fused_views(original: Sequence[ScoredBox], views: Sequence[Sequence[ScoredBox]], min_iou: float,
                min_confirmations: int = 0) -> list[FusedBox]:
    """The clusters of the original's and the views' boxes (module docstring), ordered by their
    original box (clusters without one after, in the order they were started); ``views`` hold the
    boxes already mapped back with :func:`box_to_upright`."""
    everything = [(source, k, box) for source, boxes in enumerate([original, *views]) for k, box in enumerate(boxes)]
    if not everything:
        return []
    boxes = np.asarray([b for _, _, (_, b, _) in everything], dtype=np.float64).reshape(-1, 4)
    ious = box_iou_matrix(boxes, boxes)
    keys = [label_key(label) for _, _, (label, _, _) in everything]
    scores = [float(score or 0.0) for _, _, (_, _, score) in everything]
    order = sorted(range(len(everything)), key=lambda i: (-scores[i], everything[i][0], everything[i][1]))
    taken = [False] * len(everything)
    clusters: list[FusedBox] = []
    for seed in order:
        if taken[seed]:
            continue
        taken[seed] = True
        members = [seed]
        for source in range(1 + len(views)):
            if source == everything[seed][0]:
                continue
            candidates = [i for i, (src, _, _) in enumerate(everything) if src == source and not taken[i]
                          and keys[i] == keys[seed] and ious[seed, i] >= min_iou]
            if candidates:
                best = min(candidates, key=lambda i: (-ious[seed, i], -scores[i], everything[i][1]))
                taken[best] = True
                members.append(best)
        weights = np.asarray([scores[i] for i in members])
        member_boxes = boxes[members]
        box = (weights @ member_boxes / weights.sum()) if weights.sum() > 0 else member_boxes.mean(axis=0)
        sources = {everything[i][0]: everything[i][1] for i in members}
        enough = len(members) >= 1 + min_confirmations
        if not enough and 0 not in sources:
            continue
        clusters.append(FusedBox(label=everything[seed][2][0], box=[float(v) for v in box],
                                 score=float(weights.sum()) / (1 + len(views)) if enough else 0.0,
                                 original=sources.get(0), in_view=tuple(v + 1 in sources for v in range(len(views)))))
    return sorted(clusters, key=lambda c: (c.original is None, c.original if c.original is not None else 0))


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


def apply_views(original: list[dict], views: Sequence[Sequence[ScoredBox]], min_iou: float, min_confirmations: int,
                fuse: bool, region_type: str | None) -> tuple[list[dict], list[int]]:
    """What the ``views`` do to the box payloads of the original (in place): rescored
    (:func:`rescore_payloads`), or with ``fuse`` fused (:func:`fuse_payloads`, new payloads of
    ``region_type``). Returns ``(the new payloads, boxes confirmed per view)``; the annotator and
    the evaluation both call this, so a threshold calibrated on one fits the other."""
    if not fuse:
        return [], rescore_payloads(original, views, min_iou, min_confirmations)
    return fuse_payloads(original, views, min_iou, min_confirmations, {"kind": KIND_REGION, "region_type": region_type})


def fuse_payloads(original: list[dict], views: Sequence[Sequence[ScoredBox]], min_iou: float,
                  min_confirmations: int, template: dict) -> tuple[list[dict], list[int]]:
    """Weighted box fusion of the scored box payloads of the original view with the views' boxes
    (:func:`fused_views`): each original payload takes its cluster's box and score (in place),
    and each kept cluster without one becomes a new payload (``template`` plus ``text``, ``bbox``
    and ``score``). Returns ``(the new payloads, boxes each view added to a cluster holding
    another box)``."""
    scored = [p for p in original if p.get("bbox") is not None and p.get("score") is not None]
    clusters = fused_views([(p["text"], p["bbox"], p["score"]) for p in scored], views, min_iou, min_confirmations)
    added = []
    for cluster in clusters:
        if cluster.original is None:
            added.append({**template, "text": cluster.label, "bbox": cluster.box, "score": cluster.score})
        else:
            scored[cluster.original].update(bbox=cluster.box, score=cluster.score)
    confirmed = [sum(c.in_view[v] and (c.original is not None or sum(c.in_view) > 1) for c in clusters)
                 for v in range(len(views))]
    return added, confirmed
