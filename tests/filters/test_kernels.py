"""The compiled filter kernels against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from filters.kernels import merge_sorted, stable_argsort


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_sorted_equals_a_stable_sort_of_both(dtype):
    rng = np.random.default_rng(5)
    for n, m in [(0, 0), (0, 5), (7, 0), (300, 200)]:
        a = np.sort(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 20, n)).astype(dtype))
        b = np.sort(np.where(rng.random(m) < 0.1, np.nan, rng.integers(0, 20, m)).astype(dtype))
        merged = merge_sorted(a, b)
        assert merged.dtype == dtype
        assert np.array_equal(merged, np.sort(np.concatenate([a, b]), kind="stable"), equal_nan=True)
