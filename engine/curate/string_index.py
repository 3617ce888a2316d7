"""Exact lookup of long strings (64-character image ids, annotation ids) in a set of values:
``index_in(column, values)`` gives, per row, the position of its string in ``values``.

Arrow's ``index_in`` re-hashes every row byte by byte and compares through its memo table; here
compiled kernels hash 16 bytes per step (two independent 64-bit lanes fed by unaligned word
loads, murmur3's finaliser), build an open-addressing table of the values' positions once and
probe it, comparing the bytes of every candidate (a word at a time), so the answer is exact
whatever the hashes collide on. Rows are hashed
and probed in chunks on one thread per core (the kernels release the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from storage.arrow_masks import valid_mask

PARALLEL_MIN_ROWS = 100_000  # below this, threads cost more than they save
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


@intrinsic
def _word(typingctx, data, at):  # pragma: no cover - compiled
    """The 8 bytes ``data[at:at + 8]`` of a uint8 array as one little-endian uint64: a single
    unaligned load (x86 and arm64 allow them), where assembling the bytes costs 8 loads."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)

    return types.uint64(data, types.intp), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _finalise(h: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    h ^= h >> np.uint64(33)
    h *= _M1
    h ^= h >> np.uint64(33)
    h *= _M2
    return h ^ (h >> np.uint64(33))


@numba.njit(cache=True, nogil=True, inline="always")
def _hash(data: np.ndarray, lo: int, hi: int) -> np.uint64:  # pragma: no cover - compiled
    """64-bit hash of the bytes ``data[lo:hi]``."""
    a = np.uint64(hi - lo)
    b = np.uint64(0x9E3779B97F4A7C15)
    k = lo
    while k + 16 <= hi:
        a = (a ^ _word(data, k)) * _M1
        b = (b ^ _word(data, k + 8)) * _M2
        a ^= a >> np.uint64(29)
        b ^= b >> np.uint64(31)
        k += 16
    while k < hi:
        a = (a ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
        k += 1
    return _finalise(a ^ _finalise(b))


@numba.njit(cache=True, nogil=True, inline="always")
def _same(data: np.ndarray, lo: int, hi: int, other: np.ndarray, olo: int, ohi: int) -> bool:  # pragma: no cover
    if hi - lo != ohi - olo:
        return False
    k = 0
    while k + 8 <= hi - lo:  # a word at a time, then the last bytes
        if _word(data, lo + k) != _word(other, olo + k):
            return False
        k += 8
    while k < hi - lo:
        if data[lo + k] != other[olo + k]:
            return False
        k += 1
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _find_slot(hashes: np.ndarray, slots: np.ndarray, h: np.uint64, data: np.ndarray, lo: int, hi: int,
               value_offsets: np.ndarray, value_data: np.ndarray) -> int:  # pragma: no cover - compiled
    """The slot holding the bytes ``data[lo:hi]`` (hash ``h``), or the empty slot where its
    probe sequence ends: every slot of equal hash on the way has its bytes compared."""
    mask = np.uint64(len(slots) - 1)
    s = h & mask
    while slots[s] >= 0:
        j = slots[s]
        if hashes[s] == h and _same(data, lo, hi, value_data, value_offsets[j], value_offsets[j + 1]):
            break
        s = (s + np.uint64(1)) & mask
    return s


@numba.njit(cache=True, nogil=True)
def _build(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, bits: int) -> tuple:  # pragma: no cover
    """Open-addressing table (``2**bits`` slots: hash, position or -1) of the valid strings;
    a repeated string keeps its first position."""
    hashes = np.zeros(1 << bits, np.uint64)
    slots = np.full(1 << bits, -1, np.int64)
    for j in range(len(offsets) - 1):
        if not valid[j]:
            continue
        h = _hash(data, offsets[j], offsets[j + 1])
        s = _find_slot(hashes, slots, h, data, offsets[j], offsets[j + 1], offsets, data)
        if slots[s] < 0:
            hashes[s] = h
            slots[s] = j
    return hashes, slots


BLOCK_ROWS = 512  # rows probed per block: their candidates' bytes are loaded together, then compared


@numba.njit(cache=True, nogil=True)
def _probe(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, hashes: np.ndarray, slots: np.ndarray,
           value_offsets: np.ndarray, value_data: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover
    """``out[i]``: the position of row ``i``'s string in the values, or -1.

    Block by block: hash the rows, find each one's first slot of equal hash, touch those
    values' bytes (independent loads the CPU overlaps), then compare; a row whose candidate
    differs probes on, comparing every slot of equal hash. Random loads one after another
    cost ~300 ns each here, so the passes are split to keep many in flight. A row equal to
    the row before it (annotator shards hold each image's rows together) copies its answer."""
    mask = np.uint64(len(slots) - 1)
    n = len(offsets) - 1
    row_hash = np.empty(BLOCK_ROWS, np.uint64)
    repeat = np.zeros(BLOCK_ROWS, np.bool_)
    total = np.uint8(0)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        for i in range(start, stop):
            repeat[i - start] = (i > 0 and valid[i] and valid[i - 1]
                                 and _same(data, offsets[i], offsets[i + 1], data, offsets[i - 1], offsets[i]))
            if valid[i] and not repeat[i - start]:
                row_hash[i - start] = _hash(data, offsets[i], offsets[i + 1])
        for i in range(start, stop):
            out[i] = -1
            if repeat[i - start] or not valid[i]:
                continue
            h = row_hash[i - start]
            s = h & mask
            while slots[s] >= 0:
                if hashes[s] == h:
                    out[i] = slots[s]
                    break
                s = (s + np.uint64(1)) & mask
        touched = np.uint8(0)
        for i in range(start, stop):
            j = out[i]
            if j >= 0 and value_offsets[j + 1] > value_offsets[j]:
                touched ^= value_data[value_offsets[j]] ^ value_data[value_offsets[j + 1] - 1]
        for i in range(start, stop):
            lo, hi = offsets[i], offsets[i + 1]
            j = out[i]
            if repeat[i - start]:
                out[i] = out[i - 1]
            elif j >= 0 and not _same(data, lo, hi, value_data, value_offsets[j], value_offsets[j + 1]):
                # a hash collision: probe on with byte comparisons (an empty slot holds -1)
                out[i] = slots[_find_slot(hashes, slots, row_hash[i - start], data, lo, hi, value_offsets, value_data)]
        total ^= touched
    return total  # returned so the touching loads are not optimised away


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, bytes, valid mask) of a string or large_string array, honouring its slice."""
    array = array.cast(pa.large_string()) if pa.types.is_string_view(array.type) else array
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, width, len(array) + 1, array.offset * np.dtype(width).itemsize)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets, data, valid_mask(array)


def _plain_chunks(column: pa.Array | pa.ChunkedArray, rows_per_chunk: int) -> list[pa.Array]:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = []
    for chunk in chunks:
        out += [chunk.slice(k, rows_per_chunk) for k in range(0, len(chunk), rows_per_chunk)]
    return out


def index_in(column: pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray,
             workers: int | None = None) -> np.ndarray:
    """Int64 position in ``values`` of each row's string (its first occurrence), -1 where the
    string is absent or null (``pyarrow.compute.index_in`` with nulls filled by -1). Both are
    string-like; a dictionary-encoded ``column`` is looked up once per dictionary entry."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_dictionary(column.type):
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        found = np.r_[index_in(column.dictionary, values, workers), -1]
        return found[pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)]
    n = len(column)
    if n == 0 or len(values) == 0:
        return np.full(n, -1, np.int64)
    # copied into numpy memory, which asks the kernel for huge pages: the probes' random
    # loads then rarely miss the TLB (Arrow's buffers use 4 KiB pages)
    value_offsets, value_data, value_valid = (np.array(b) for b in _buffers(values))
    hashes, slots = _build(value_offsets, value_data, value_valid, max(4, int(2 * len(values) - 1).bit_length()))
    workers = (os.cpu_count() or 1) if workers is None else workers
    parallel = workers > 1 and n >= PARALLEL_MIN_ROWS
    chunks = _plain_chunks(column, -(-n // workers) if parallel else n)

    def probe(chunk: pa.Array) -> np.ndarray:
        out = np.empty(len(chunk), np.int64)
        _probe(*_buffers(chunk), hashes, slots, value_offsets, value_data, out)
        return out

    if parallel:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(probe, chunks))
    else:
        parts = [probe(chunk) for chunk in chunks]
    return np.concatenate(parts) if parts else np.full(0, -1, np.int64)
