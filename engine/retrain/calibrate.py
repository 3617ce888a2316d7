"""The score threshold of a new model, calibrated without ground truth.

After training, the model's ``<OD>`` boxes on the held-out (validation) images are matched to
the curated validation labels (same normalised label, IoU >= ``training.calibration_iou``,
each label used once, best IoU first). Sorted by their per-box score (``annotators.florence2``:
each box scored from its own tokens), the threshold is the lowest score ``t`` at which the
boxes scoring >= ``t`` reach ``training.calibration_precision`` against those labels. It is
stored with the model's metrics (``score_threshold``) and the next curation applies it to the
rows that checkpoint produced (``engine.curate.calibration``). When no cut reaches the
target (labels that swap ~10% of classes cap the precision any model can show against them),
the result says so (``calibration_reached = false``) and the threshold is the cut of the highest
precision among those keeping at least ``training.calibration_min_boxes`` boxes (ties: the lower
score), so an unreachable target cannot shut a better model out. A cut counts as reaching a
target only when it keeps at least that many boxes (2 right of 2 is no evidence of 90%
precision: such a threshold lets almost nothing in, and the new-box threshold is not placed on
so few either); with fewer boxes than that (or
``calibration_min_boxes = 0``) it is above every score seen (no box of that model is trusted). The same
curve at ``training.new_box_precision`` gives ``new_box_threshold``, the stricter score a box
needs to become a new curated row where no curated box is (no other source confirms it); when
no cut reaches it, ``training.new_box_fallback_precision`` (> 0) lets the most precise cut of at
least ``calibration_min_boxes`` boxes stand in if that cut reaches this lower precision (the
labels' own class noise can cap what a right box can show against them). The
curated labels are the engine's own data; ground truth is never read here.

``training.calibration_scope = "labelled"`` counts only the boxes that overlap some curated
label (any label, at the same IoU): with incomplete labels (existing labels that miss objects)
every box on a missed object would count as an error, which hides how precision grows with the
score; in that scope precision measures label and box accuracy where the labels looked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from storage.geometry import box_iou_matrix

Pair = tuple[str, list[float]]  # (label, x0 y0 x1 y1 in pixels)


def _norm(label: str | None) -> str:
    return " ".join((label or "").lower().split())


def labelled(predicted: list[Pair], reference: list[Pair], iou: float) -> np.ndarray:
    """Bool per prediction: it overlaps some reference box, of any label, with IoU >= ``iou``
    (where the labels looked: a prediction elsewhere may be an object they miss)."""
    if not predicted or not reference:
        return np.zeros(len(predicted), bool)
    ious = box_iou_matrix(np.asarray([b for _, b in predicted], float), np.asarray([b for _, b in reference], float))
    return ious.max(axis=1) >= iou


def hits(predicted: list[Pair], reference: list[Pair], iou: float) -> np.ndarray:
    """Bool per prediction: it matches a distinct reference of the same normalised label with
    IoU >= ``iou`` (greedy, best IoU first)."""
    out = np.zeros(len(predicted), bool)
    if not predicted or not reference:
        return out
    ious = box_iou_matrix(np.asarray([b for _, b in predicted], float), np.asarray([b for _, b in reference], float))
    same = np.array([[_norm(a) == _norm(b) for b, _ in reference] for a, _ in predicted])
    ious = np.where(same & (ious >= iou), ious, -1.0)
    while ious.size and ious.max() >= 0:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        out[i], ious[i, :], ious[:, j] = True, -1.0, -1.0
    return out


def _cuts(scores: Any, hit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(score of each cut, precision of the predictions scoring >= it, how many they are)``,
    one entry per distinct score, highest first (a cut falls only after the last of equal scores)."""
    scores, hit = np.asarray(scores, float), np.asarray(hit, bool)
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hit[order]
    kept = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)
    return s[last_of_tie], (np.cumsum(h) / kept)[last_of_tie], kept[last_of_tie]


def threshold_at_precision(scores: np.ndarray, hit: np.ndarray, target: float, min_boxes: int = 1) -> float | None:
    """The lowest score ``t`` such that the predictions scoring >= ``t`` (at least ``min_boxes``
    of them: two right boxes out of two are no evidence of a precision) have precision >=
    ``target`` (ties kept together), or None when no cut does."""
    cut, precision, kept = _cuts(scores, hit)
    ok = np.flatnonzero((precision >= target) & (kept >= min_boxes))
    return float(cut[ok[-1]]) if len(ok) else None


def best_cut(scores: np.ndarray, hit: np.ndarray, min_boxes: int) -> float | None:
    """The cut ``t`` (a score) whose predictions scoring >= ``t`` have the highest precision
    among cuts keeping at least ``min_boxes`` of them (ties kept together; equal precision: the
    lower ``t``), or None when ``min_boxes`` is 0 or more than there are."""
    if min_boxes <= 0 or len(scores) < min_boxes:
        return None
    cut, precision, kept = _cuts(scores, hit)
    ok = np.flatnonzero(kept >= min_boxes)
    best = ok[precision[ok] == precision[ok].max()]
    return float(cut[best[-1]])


def calibration(scores: list[float], hit: list[bool], references: int, target: float,
                new_box_target: float | None = None, min_boxes: int = 0,
                new_box_fallback: float = 0.0) -> dict[str, Any]:
    """The metrics stored with a model: ``score_threshold`` and what it gives on the held-out
    labels (precision, recall and boxes kept at the threshold), and with ``new_box_target``
    the stricter ``new_box_threshold`` a box needs to be added where no curated box is. With
    that target unreachable no new box is trusted (the threshold is above every score), unless
    ``new_box_fallback`` > 0 and the most precise cut keeping ``min_boxes`` (:func:`best_cut`)
    reaches that lower precision: then that cut is the threshold (``new_box_reached`` false).
    ``min_boxes``: the fallback of an unreachable ``target`` (:func:`best_cut`, module docstring)."""
    scores_a, hit_a = np.asarray(scores, float), np.asarray(hit, bool)
    above_all = float(np.nextafter(float(scores_a.max()) if len(scores_a) else 0.0, np.inf))
    out: dict[str, Any] = {"calibration_boxes": len(scores_a)}
    if new_box_target is not None:
        strict = threshold_at_precision(scores_a, hit_a, new_box_target, max(1, min_boxes))
        out["new_box_reached"] = strict is not None
        if strict is None and new_box_fallback > 0:
            cut = best_cut(scores_a, hit_a, min_boxes)
            if cut is not None and hit_a[scores_a >= cut].mean() >= new_box_fallback:
                strict = cut
        out["new_box_threshold"] = above_all if strict is None else strict
    threshold = threshold_at_precision(scores_a, hit_a, target, max(1, min_boxes))
    reached = threshold is not None
    if threshold is None:
        threshold = best_cut(scores_a, hit_a, min_boxes)
        if threshold is None:
            return {**out, "score_threshold": above_all, "calibration_reached": False}
    kept = scores_a >= threshold
    return {**out, "score_threshold": threshold, "calibration_reached": reached,
            "calibration_precision": round(float(hit_a[kept].mean()), 4),
            "calibration_recall": round(float(hit_a[kept].sum() / references), 4) if references else 0.0}
