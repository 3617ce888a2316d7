"""Numba-compiled bookkeeping of curation (not rules): one rule's outcome recorded over the
raw rows, absorption lists (who holds every absorbed row), and distinct small values per
owner as bit sets (the producers of every survivor among them).

Compiled on first use and cached like ``filters.kernels``; every kernel releases the GIL.
Row arguments are int64 positions among the round's raw rows.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def absorption_lists(into: np.ndarray, survivors: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """Who holds every absorbed row at the end of curation. ``into[i]``: the row that absorbed
    row ``i`` (-1: none); chains (B -> A -> C) are followed to their last row, which holds
    them when it is one of ``survivors`` (ascending rows). Returns int64 ``owner`` per row
    (the holder's index in ``survivors``, -1), the list ``offsets`` per survivor (``m + 1``)
    and the absorbed ``rows`` in list order (each survivor's rows ascending)."""
    n, m = len(into), len(survivors)
    position = np.full(n, -1, np.int64)
    for k in range(m):
        position[survivors[k]] = k
    owner = np.full(n, -1, np.int64)
    counts = np.zeros(m + 1, np.int64)
    for i in range(n):
        r = into[i]
        if r < 0:
            continue
        steps = 0
        while into[r] >= 0 and steps < n:  # absorbers never absorb back: chains end
            r = into[r]
            steps += 1
        owner[i] = position[r]
        if owner[i] >= 0:
            counts[owner[i] + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:m].copy()
    rows = np.empty(offsets[m], np.int64)
    for i in range(n):
        if owner[i] >= 0:
            rows[fill[owner[i]]] = i
            fill[owner[i]] += 1
    return owner, offsets, rows


@numba.njit(cache=True, nogil=True)
def owner_bit_sets(owner: np.ndarray, bit: np.ndarray, m: int) -> tuple:  # pragma: no cover - compiled
    """Distinct small values per owner: ``bit[i]`` (0..63) joins the set of ``owner[i]``
    (0..m-1). Returns int32 list ``offsets`` (``m + 1``) and the ``values`` of every owner's
    set, ascending: a bit mask per owner, so no sort is needed."""
    masks = np.zeros(m, np.uint64)
    for i in range(len(owner)):
        masks[owner[i]] |= np.uint64(1) << np.uint64(bit[i])
    return _bit_set_lists(masks)


@numba.njit(cache=True, nogil=True)
def producer_bit_sets(survivors: np.ndarray, absorbed: np.ndarray, owner: np.ndarray, agrees: np.ndarray,
                      codes: np.ndarray, rank: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """The set of producers of every survivor: its own and those of the rows it absorbed
    where ``agrees``. ``survivors``: their raw rows; ``absorbed``: raw rows, each held by
    survivor ``owner[row]``; ``codes[row]``: the producer of a raw row (-1 none), whose bit
    is ``rank[code]`` (0..63). Returns :func:`owner_bit_sets`' ``(offsets, values)``."""
    masks = np.zeros(len(survivors), np.uint64)
    for k in range(len(survivors)):
        code = codes[survivors[k]]
        if code >= 0:
            masks[k] |= np.uint64(1) << np.uint64(rank[code])
    for j in range(len(absorbed)):
        row = absorbed[j]
        code = codes[row]
        if agrees[row] and code >= 0:
            masks[owner[row]] |= np.uint64(1) << np.uint64(rank[code])
    return _bit_set_lists(masks)


@numba.njit(cache=True, nogil=True)
def _bit_set_lists(masks: np.ndarray) -> tuple:  # pragma: no cover - compiled
    """int32 list ``offsets`` and ascending bit ``values`` of every 64-bit mask."""
    m = len(masks)
    offsets = np.zeros(m + 1, np.int32)
    for k in range(m):
        mask, count = masks[k], 0
        while mask:
            mask &= mask - np.uint64(1)
            count += 1
        offsets[k + 1] = offsets[k] + count
    values = np.empty(offsets[m], np.int32)
    for k in range(m):
        mask, at, value = masks[k], offsets[k], 0
        while mask:
            if mask & np.uint64(1):
                values[at] = value
                at += 1
            mask >>= np.uint64(1)
            value += 1
    return offsets, values


@numba.njit(cache=True, nogil=True)
def record_outcome(rows: np.ndarray, judged: np.ndarray, keep: np.ndarray, absorbed_by: np.ndarray, bit: np.int64,
                   rule: int, agrees: bool, judged_bits: np.ndarray, dropped_by: np.ndarray, into: np.ndarray,
                   agreeing: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """One rule's outcome over the rows at raw positions ``rows`` written into the per-raw-row
    arrays in one pass: ``judged_bits |= bit`` where ``judged``; where not ``keep``:
    ``dropped_by = rule`` and, when ``absorbed_by`` (local row, -1; empty = none given) names a
    row, ``into`` = its raw position and ``agreeing = agrees``. Returns the raw positions of
    the dropped rows, ascending as ``rows``."""
    dropped = 0
    for i in range(len(rows)):
        if judged[i]:
            judged_bits[rows[i]] |= bit
        if not keep[i]:
            dropped += 1
    out = np.empty(dropped, np.int64)
    if dropped == 0:
        return out
    given = len(absorbed_by) > 0
    at = 0
    for i in range(len(rows)):
        if keep[i]:
            continue
        g = rows[i]
        out[at] = g
        at += 1
        dropped_by[g] = rule
        if given and absorbed_by[i] >= 0:
            into[g] = rows[absorbed_by[i]]
            agreeing[g] = agrees
    return out
