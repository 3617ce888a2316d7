"""Matching this round's rows to the previous round's: per new row, the previous row of the same
group it overlaps most (the merge's and fusion's common step)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from filters.nms import pairs_in_groups


def best_previous_match(codes: np.ndarray, n_prev: int, iou_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``codes``: a group code per row of the previous rows followed by the new rows; rows match
    only within a group. ``iou_of(p, q)``: the IoU of previous rows ``p`` with rows ``q`` (both
    positions in ``codes``). Returns, per new row, the previous row it overlaps most with IoU >=
    ``iou_threshold`` (the earliest on ties; -1: none) and that IoU (-1 when none)."""
    n_new = len(codes) - n_prev
    order = np.argsort(codes, kind="stable")
    best = np.full(n_new, -1, np.int64)
    best_iou = np.full(n_new, -1.0)
    for i, j in pairs_in_groups(codes[order]):
        a, b = order[i], order[j]
        cross = (a < n_prev) != (b < n_prev)
        p, q = np.where(a < n_prev, a, b)[cross], np.where(a < n_prev, b, a)[cross]
        iou = iou_of(p, q)
        hit = iou >= iou_threshold
        p, q, iou = p[hit], q[hit] - n_prev, iou[hit]
        sel = np.lexsort((p, -iou, q))  # per new row: best IoU, then the earliest previous row
        q, p, iou = q[sel], p[sel], iou[sel]
        first = np.r_[True, q[1:] != q[:-1]] if len(q) else np.zeros(0, bool)
        better = iou[first] > best_iou[q[first]]
        best[q[first][better]], best_iou[q[first][better]] = p[first][better], iou[first][better]
    return best, best_iou
