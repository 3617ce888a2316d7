"""The compiled curation kernels against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from filters.kernels import merge_sorted, producer_bit_sets, record_outcome, stable_argsort


@pytest.mark.parametrize("low, high", [(0, 3), (-50, 50), (0, 70_000), (-(2**40), 2**40), (0, 2**62)])
def test_stable_argsort_equals_numpy_stable_argsort(low, high):
    keys = np.random.default_rng(high % 97).integers(low, high, 5_000)
    assert stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()


@pytest.mark.parametrize("n", [50, 3_000, 200_000])
def test_stable_argsort_of_wide_keys_with_crowded_buckets(n):
    """Keys wider than 16 bits take the top-digit path: rows crowd into a few high-bit buckets
    (merge-sorted) beside sparse ones (insertion-sorted), with many ties."""
    rng = np.random.default_rng(n)
    crowded = (rng.integers(0, 3, n) << 24) + rng.integers(0, 40, n)  # 3 buckets, 40 values each
    spread = rng.integers(0, 2**25, n) // 4 * 4  # sparse buckets with ties
    for keys in (crowded, spread, np.r_[crowded[: n // 2], spread[: n // 2]]):
        assert stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()


def test_stable_argsort_edge_cases():
    assert stable_argsort(np.zeros(0, np.int64)).tolist() == []
    assert stable_argsort(np.full(7, 5)).tolist() == list(range(7))  # equal keys keep input order
    assert stable_argsort(np.array([3, 1, 2], np.int32)).tolist() == [1, 2, 0]


@pytest.mark.parametrize("with_absorbers", [True, False])
def test_record_outcome_matches_the_numpy_bookkeeping(with_absorbers):
    rng = np.random.default_rng(4)
    n, rule = 500, 3
    rows = np.sort(rng.choice(n, 200, replace=False))
    judged = rng.random(200) < 0.7
    keep = ~(judged & (rng.random(200) < 0.5))
    absorbed_by = np.where(~keep & (rng.random(200) < 0.6), rng.integers(0, 200, 200), -1) if with_absorbers \
        else np.zeros(0, np.int64)
    state = [np.full(n, 1, np.int64), np.full(n, -1, np.int16), np.full(n, -1, np.int64), np.zeros(n, bool)]
    expected = [a.copy() for a in state]
    expected[0][rows[judged]] |= 1 << rule
    expected[1][rows[~keep]] = rule
    if with_absorbers:
        hit = ~keep & (absorbed_by >= 0)
        expected[2][rows[hit]] = rows[absorbed_by[hit]]
        expected[3][rows[hit]] = True
    dropped = record_outcome(rows, judged, keep, absorbed_by, np.int64(1 << rule), rule, True, *state)
    assert dropped.tolist() == rows[~keep].tolist()
    for got, want in zip(state, expected):
        assert got.tolist() == want.tolist()


def test_producer_bit_sets_equal_the_sets_built_from_concatenated_owners():
    rng = np.random.default_rng(9)
    n, names = 400, 7
    codes = rng.integers(-1, names, n)  # -1: a row without a producer joins no set
    rank = rng.permutation(names)
    survivors = np.sort(rng.choice(n, 60, replace=False))
    absorbed = np.setdiff1d(np.arange(n), survivors)[rng.random(n - 60) < 0.7]
    owner = np.full(n, -1, np.int64)
    owner[absorbed] = rng.integers(0, 60, len(absorbed))
    agrees = rng.random(n) < 0.5
    offsets, values = producer_bit_sets(survivors, absorbed, owner, agrees, codes, rank)
    expected = [set() for _ in survivors]
    for k, row in enumerate(survivors):
        if codes[row] >= 0:
            expected[k].add(rank[codes[row]])
    for row in absorbed:
        if agrees[row] and codes[row] >= 0:
            expected[owner[row]].add(rank[codes[row]])
    assert [values[offsets[k]:offsets[k + 1]].tolist() for k in range(60)] == [sorted(e) for e in expected]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_sorted_equals_a_stable_sort_of_both(dtype):
    rng = np.random.default_rng(5)
    for n, m in [(0, 0), (0, 5), (7, 0), (300, 200)]:
        a = np.sort(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 20, n)).astype(dtype))
        b = np.sort(np.where(rng.random(m) < 0.1, np.nan, rng.integers(0, 20, m)).astype(dtype))
        merged = merge_sorted(a, b)
        assert merged.dtype == dtype
        assert np.array_equal(merged, np.sort(np.concatenate([a, b]), kind="stable"), equal_nan=True)
