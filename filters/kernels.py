"""Numba-compiled loops of the built-in filters, for work that numpy does only with quadratic
memory, repeated sorts or a dozen temporaries per row: a stable radix argsort of integer
keys, greedy NMS inside sorted groups, the geometry rule's box checks in one pass, and
percentile ranks against a sorted reference and the merge of two references.

Compiled on first use (about 12 s for all of them) and cached beside this file in
``__pycache__`` (numba's user-wide cache, ``NUMBA_CACHE_DIR``, where that folder is
read-only). Every kernel releases the GIL (``nogil``), so callers split independent work
over threads. Boxes are ``(n, 4)`` float64 ``[x0, y0, x1, y1]`` in pixels.
"""

from __future__ import annotations

import numba
import numpy as np

RADIX_BITS = 8  # 256 buckets: the counts stay in L1 (wider digits measured no faster here)


@numba.njit(cache=True, nogil=True)
def _radix_argsort(keys: np.ndarray, bits: int) -> np.ndarray:  # pragma: no cover - compiled
    """LSD radix argsort of non-negative int64 ``keys`` below ``2**bits``; the keys travel with
    the positions, so every pass reads sequentially."""
    n = len(keys)
    order, key = np.arange(n), keys.copy()
    order_out, key_out = np.empty(n, np.int64), np.empty(n, np.int64)
    buckets = 1 << RADIX_BITS
    mask = buckets - 1
    shift = 0
    while shift < bits:
        counts = np.zeros(buckets, np.int64)
        for i in range(n):
            counts[(key[i] >> shift) & mask] += 1
        total = 0
        for b in range(buckets):
            total, counts[b] = total + counts[b], total
        for i in range(n):
            digit = (key[i] >> shift) & mask
            at = counts[digit]
            order_out[at], key_out[at] = order[i], key[i]
            counts[digit] = at + 1
        order, order_out = order_out, order
        key, key_out = key_out, key
        shift += RADIX_BITS
    return order


SMALL_BUCKET = 32  # a top-digit bucket up to this size is insertion-sorted, a larger one merge-sorted


@numba.njit(cache=True, nogil=True)
def _merge_sort_bucket(order: np.ndarray, key: np.ndarray, lo: int, hi: int) -> None:  # pragma: no cover
    local = np.argsort(key[lo:hi], kind="mergesort")
    order[lo:hi] = order[lo:hi][local]
    key[lo:hi] = key[lo:hi][local]


@numba.njit(cache=True, nogil=True)
def _top_digit_argsort(keys: np.ndarray, bits: int, top: int) -> np.ndarray:  # pragma: no cover - compiled
    """Stable argsort of non-negative int64 ``keys`` below ``2**bits``: one counting sort by
    the ``top`` high bits (buckets about as many as rows, so most hold a few keys), then each
    bucket sorted by the whole key, stably (insertion sort, or merge sort when large)."""
    n = len(keys)
    shift = bits - top
    buckets = 1 << top
    starts = np.zeros(buckets + 1, np.int64)
    for i in range(n):
        starts[(keys[i] >> shift) + 1] += 1
    for b in range(buckets):
        starts[b + 1] += starts[b]
    fill = starts[:buckets].copy()
    order = np.empty(n, np.int64)
    key = np.empty(n, np.int64)
    for i in range(n):
        d = keys[i] >> shift
        at = fill[d]
        order[at], key[at] = i, keys[i]
        fill[d] = at + 1
    for b in range(buckets):
        lo, hi = starts[b], starts[b + 1]
        if hi - lo > SMALL_BUCKET:
            _merge_sort_bucket(order, key, lo, hi)
            continue
        for j in range(lo + 1, hi):
            k, o = key[j], order[j]
            t = j - 1
            while t >= lo and key[t] > k:
                key[t + 1], order[t + 1] = key[t], order[t]
                t -= 1
            key[t + 1], order[t + 1] = k, o
    return order


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for integer keys: an LSD radix sort for keys up to
    16 bits wide (one or two linear passes), else one counting sort by the high bits (at
    most 18: the counts stay in L2) and small sorts inside the buckets: 2 to 3x faster than
    the LSD passes on the 20 to 30-bit (image, source, label) group codes of NMS."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    low = int(keys.min())
    shifted = keys.astype(np.int64) - low
    bits = max(1, int(shifted.max()).bit_length())
    if bits <= 16:
        return _radix_argsort(shifted, bits)
    return _top_digit_argsort(shifted, bits, min(bits, 18, max(8, len(keys).bit_length() - 2)))


@numba.njit(cache=True, nogil=True, inline="always")
def _iou(boxes: np.ndarray, a: int, b: int) -> float:  # pragma: no cover - compiled
    """IoU of boxes ``a`` and ``b``; 0 when either has a NaN, inverted sides count as 0
    (``storage.geometry.pairwise_iou`` semantics)."""
    ax0, ay0, ax1, ay1 = boxes[a, 0], boxes[a, 1], boxes[a, 2], boxes[a, 3]
    bx0, by0, bx1, by1 = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3]
    if np.isnan(ax0 + ay0 + ax1 + ay1 + bx0 + by0 + bx1 + by1):
        return 0.0
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    union = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0) + max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0) - inter
    return inter / union if union > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _stronger(scores: np.ndarray, keys: np.ndarray, a: int, b: int) -> bool:  # pragma: no cover - compiled
    return scores[a] > scores[b] or (scores[a] == scores[b] and keys[a] < keys[b])


@numba.njit(cache=True, nogil=True)
def sort_groups_by_score(order: np.ndarray, starts: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                         tied: np.ndarray, first: int, last: int) -> None:  # pragma: no cover - compiled
    """Sort each group ``order[starts[g]:starts[g + 1]]``, ``first <= g < last``, in place by
    score descending, then ``keys`` ascending, and set ``tied[row]`` for the rows that share
    their score with another row of their group (only their keys decide their order)."""
    for g in range(first, last):
        lo, hi = starts[g], starts[g + 1]
        if hi - lo <= 32:  # insertion sort: groups are mostly a handful of boxes
            for x in range(lo + 1, hi):
                row = order[x]
                y = x - 1
                while y >= lo and _stronger(scores, keys, row, order[y]):
                    order[y + 1] = order[y]
                    y -= 1
                order[y + 1] = row
        else:
            members = order[lo:hi].copy()
            by_key = members[np.argsort(keys[members], kind="mergesort")]
            order[lo:hi] = by_key[np.argsort(-scores[by_key], kind="mergesort")]
        for x in range(lo + 1, hi):
            if scores[order[x]] == scores[order[x - 1]]:
                tied[order[x]] = True
                tied[order[x - 1]] = True


@numba.njit(cache=True, nogil=True)
def greedy_in_groups(order: np.ndarray, starts: np.ndarray, boxes: np.ndarray, threshold: float,
                     keep: np.ndarray, suppressor: np.ndarray, first: int, last: int) -> None:  # pragma: no cover
    """Greedy NMS in each group ``first <= g < last`` whose rows ``order[starts[g]:starts[g+1]]``
    are sorted strongest first: a row is suppressed by the first kept row before it with IoU
    strictly above ``threshold`` (``keep``/``suppressor`` are written for the group's rows)."""
    for g in range(first, last):
        lo, hi = starts[g], starts[g + 1]
        for x in range(lo, hi):
            row = order[x]
            keep[row] = True
            suppressor[row] = -1
        for x in range(lo, hi):
            row = order[x]
            if not keep[row]:
                continue
            for y in range(x + 1, hi):
                other = order[y]
                if keep[other] and _iou(boxes, row, other) > threshold:
                    keep[other] = False
                    suppressor[other] = row


#: outcome codes of :func:`check_boxes`, highest priority first (0 = kept)
BOX_NON_FINITE, BOX_INVERTED, BOX_OUTSIDE, BOX_THIN, BOX_SMALL, BOX_ELONGATED = range(1, 7)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def check_boxes(boxes: np.ndarray, has_box: np.ndarray, width: np.ndarray, height: np.ndarray, clip: bool,
                min_side: float, min_area: float, max_aspect_ratio: float, min_inside_fraction: float,
                code: np.ndarray, changed: np.ndarray) -> None:  # pragma: no cover - compiled
    """The geometry rule's box checks in one pass: ``code[i]`` is the first failing check of
    row ``i`` (``BOX_*``, 0 when it passes or has no box); with ``clip`` the boxes reaching
    outside ``[0, width[i]] x [0, height[i]]`` are clipped in place and ``changed[i]`` set.
    Sizes are measured after clipping; the inside fraction is clipped / unclipped area."""
    for i in range(len(boxes)):
        code[i] = 0
        changed[i] = False
        if not has_box[i]:
            continue
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if not (np.isfinite(x0) and np.isfinite(y0) and np.isfinite(x1) and np.isfinite(y1)):
            code[i] = BOX_NON_FINITE
            continue
        if not (x1 > x0 and y1 > y0):
            code[i] = BOX_INVERTED
            continue
        before = (x1 - x0) * (y1 - y0)
        w_lim, h_lim = width[i], height[i]
        if clip and (x0 < 0 or x1 < 0 or x0 > w_lim or x1 > w_lim or y0 < 0 or y1 < 0 or y0 > h_lim or y1 > h_lim):
            x0, x1 = min(max(x0, 0.0), w_lim), min(max(x1, 0.0), w_lim)
            y0, y1 = min(max(y0, 0.0), h_lim), min(max(y1, 0.0), h_lim)
            boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3] = x0, y0, x1, y1
            changed[i] = True
        w, h = x1 - x0, y1 - y0
        area = max(w, 0.0) * max(h, 0.0)
        if not area / before >= min_inside_fraction:
            code[i] = BOX_OUTSIDE
        elif not min(w, h) >= min_side:
            code[i] = BOX_THIN
        elif not area >= min_area:
            code[i] = BOX_SMALL
        elif not max(w / h, h / w) <= max_aspect_ratio:
            code[i] = BOX_ELONGATED


@numba.njit(cache=True, nogil=True)
def ranks_against(reference: np.ndarray, keys: np.ndarray, order: np.ndarray,
                  out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Percentile ranks of ``keys`` among ``reference`` (sorted ascending, NaN last):
    ``out[i] = (a + b) / (2 m)`` where ``a`` reference values are below ``keys[i]`` and ``b``
    at or below it (NaN keys tie with the reference's NaNs, above every number). ``order``
    lists the keys ascending (NaN last): one merge pass over both, no binary searches."""
    m = len(reference)
    a = 0
    b = 0
    for k in range(len(order)):
        q = keys[order[k]]
        if q != q:  # NaN
            while a < m and reference[a] == reference[a]:
                a += 1
            b = m
        else:
            while a < m and reference[a] < q:
                a += 1
            b = max(a, b)
            while b < m and reference[b] <= q:
                b += 1
        out[order[k]] = (a + b) / (2.0 * m)


@numba.njit(cache=True, nogil=True)
def merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Two ascending float arrays (NaN last) merged into one ascending array (NaN last), in one
    pass; on ties ``a``'s values come first (a stable sort of ``a`` then ``b``)."""
    out = np.empty(len(a) + len(b), a.dtype)
    i, j, k = 0, 0, 0
    while i < len(a) and j < len(b):
        x, y = a[i], b[j]
        if y < x or (x != x and y == y):  # b's value first only when strictly smaller (NaN above all)
            out[k] = y
            j += 1
        else:
            out[k] = x
            i += 1
        k += 1
    while i < len(a):
        out[k] = a[i]
        i += 1
        k += 1
    while j < len(b):
        out[k] = b[j]
        j += 1
        k += 1
    return out
