"""The compiled curation bookkeeping kernels against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from engine.curate.kernels import producer_bit_sets, record_outcome


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
