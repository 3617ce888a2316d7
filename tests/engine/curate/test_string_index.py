"""engine.curate.string_index: exact string lookup against pyarrow's index_in."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.curate.string_index import _buffers, _hash, _probe, index_in


def reference(column, values):
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.fill_null(pc.index_in(column, value_set=values), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def random_strings(rng, n, alphabet="ab✓xyz", max_len=20, null_fraction=0.0):
    out = ["".join(rng.choice(list(alphabet), size=rng.integers(0, max_len))) for _ in range(n)]
    return [None if rng.random() < null_fraction else s for s in out]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("workers", [1, 2])
def test_index_in_matches_arrow_on_random_strings(seed, workers, monkeypatch):
    import engine.curate.string_index as module

    monkeypatch.setattr(module, "PARALLEL_MIN_ROWS", 10)  # small inputs still take the threaded path
    rng = np.random.default_rng(seed)
    values = pa.array(random_strings(rng, 300, max_len=6) + ["", "long " * 40], pa.string())  # repeats, empty, > 16 bytes
    base = random_strings(rng, 900, max_len=8, null_fraction=0.1) + ["long " * 40, "long " * 39]
    rows = [s for s in base for _ in range(rng.integers(1, 4))]  # runs of equal rows, as in annotator shards
    column = pa.chunked_array([pa.array(rows[:700]), pa.array(rows[700:1500]), pa.array(rows[1500:])])
    found = index_in(column, values, workers=workers)
    assert found.dtype == np.int64
    assert (found == reference(column, values)).all()
    assert (found >= 0).sum() > 100 and (found == -1).sum() > 100  # both outcomes are exercised


def test_index_in_slices_large_strings_dictionaries_and_empty_inputs():
    values = pa.chunked_array([pa.array(["x", "y"]), pa.array(["z", None, "y"])])
    column = pa.array(["q", "y", None, "z", "x", "y"], pa.large_string()).slice(1)
    assert index_in(column, values).tolist() == [1, -1, 2, 0, 1]
    encoded = pa.array(["z", "w", None, "z"]).dictionary_encode()
    assert index_in(encoded, values).tolist() == [2, -1, -1, 2]
    assert index_in(pa.array([], pa.string()), values).tolist() == []
    assert index_in(pa.array(["x", None]), pa.array([], pa.string())).tolist() == [-1, -1]


def test_a_hash_collision_is_resolved_by_comparing_bytes():
    """Two slots carry the row's hash; the first one holds another string: the probe must
    compare the bytes, go on and find the second."""
    values = pa.array(["other", "wanted"])
    value_offsets, value_data, _ = (np.array(b) for b in _buffers(values))
    row_offsets, row_data, row_valid = _buffers(pa.array(["wanted", "missing"]))
    h = np.uint64(_hash(row_data, 0, 6))
    hashes = np.array([h, h, 0, 0], np.uint64)
    slots = np.array([0, 1, -1, -1], np.int64)
    start = int(h & np.uint64(3))
    hashes, slots = np.roll(hashes, start), np.roll(slots, start)  # the chain starts at the row's home slot
    out = np.empty(2, np.int64)
    _probe(row_offsets, row_data, row_valid, hashes, slots, value_offsets, value_data, out)
    assert out.tolist() == [1, -1]


@pytest.mark.parametrize("length", [7, 8, 21, 64])
def test_strings_differing_in_one_byte_anywhere_are_told_apart(length):
    """Neighbouring rows equal but for one byte, at every position (word-at-a-time and tail
    bytes): the run check and the candidate comparison must both see the difference."""
    base = "x" * length
    variants = [base[:k] + "y" + base[k + 1:] for k in range(length)]
    rows = [s for variant in variants for s in (base, variant)]
    values = pa.array([base, *variants])
    assert index_in(pa.array(rows), values, workers=1).tolist() == [i for k in range(length) for i in (0, k + 1)]
