"""filters.base helpers give the same answers on plain and dictionary-encoded columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filters.base import dictionary, equals, group_codes, is_in, reason_from_codes, valid
from storage.arrow_masks import with_nulls


def _both(values):
    plain = pa.chunked_array([pa.array(values[:3], pa.string()), pa.array(values[3:], pa.string())])
    encoded = pa.chunked_array([pa.array(values[:3], pa.string()).dictionary_encode(),
                                pa.array(values[3:], pa.string()).dictionary_encode()])
    return plain, encoded.take(pa.array(np.arange(len(values))))  # a take keeps dictionary entries no row uses


VALUES = ["region", None, "caption", "phrase", "region", None, "Region"]


@pytest.mark.parametrize("wanted", [["region"], ["region", "phrase"], [], ["absent"]])
def test_is_in_and_equals_agree_on_plain_and_dictionary_columns(wanted):
    plain, encoded = _both(VALUES)
    expected = [v in wanted for v in VALUES]  # null is never in the set
    assert is_in(plain, wanted).tolist() == expected == is_in(encoded, wanted).tolist()
    if len(wanted) == 1:
        assert equals(plain, wanted[0]).tolist() == expected == equals(encoded, wanted[0]).tolist()


def test_dictionary_codes_group_the_same_rows_either_way():
    plain, encoded = _both(VALUES)
    (a, names_a), (b, names_b) = dictionary(plain), dictionary(encoded)
    assert [names_a[c] if c >= 0 else None for c in a] == VALUES == [names_b[c] if c >= 0 else None for c in b]
    x, y = group_codes(plain), group_codes(encoded)  # the same partition of the rows (numbering may differ)
    assert (np.equal.outer(x, x) == np.equal.outer(y, y)).all() and len(set(x.tolist())) == 5


def test_reason_from_codes():
    out = reason_from_codes(np.array([0, 2, 1, 0, 2], np.int8), {1: "one", 2: "two ✓"})
    assert pa.types.is_dictionary(out.type) and out.to_pylist() == [None, "two ✓", "one", None, "two ✓"]
    assert reason_from_codes(np.zeros(3, np.int8), {1: "x"}).null_count == 3
    with pytest.raises(ValueError, match="without a text"):
        reason_from_codes(np.array([3]), {1: "x"})


@pytest.mark.parametrize("offset", [0, 3, 8, 13])
def test_valid_reads_the_bitmaps_of_sliced_chunks(offset):
    rng = np.random.default_rng(offset)
    values = [None if rng.random() < 0.4 else float(i) for i in range(61)]
    chunks = [pa.array(values, pa.float32()).slice(offset, 37), pa.nulls(5, pa.float32()),
              pa.array([1.0, 2.0], pa.float32())]
    assert valid(pa.chunked_array(chunks)).tolist() == [v is not None for c in chunks for v in c.to_pylist()]
    encoded = pa.array(values, pa.float32()).dictionary_encode().slice(offset)
    assert valid(encoded).tolist() == [v is not None for v in values[offset:]]
    boxes = pa.array([[1.0, 2.0, 3.0, 4.0], None, None] * 9, pa.list_(pa.float32())).slice(offset % 7)
    assert valid(boxes).tolist() == [v is not None for v in boxes.to_pylist()]
    assert valid(pa.chunked_array([], pa.float32())).tolist() == []


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1003])
def test_with_nulls_equals_pyarrows_masked_conversion(dtype, n):
    rng = np.random.default_rng(n)
    values = rng.integers(-50, 50, n).astype(dtype) if np.dtype(dtype).kind != "u" else rng.integers(0, 50, n).astype(dtype)
    for null in (rng.random(n) < 0.3, np.zeros(n, bool), np.ones(n, bool)):
        out = with_nulls(values, null)
        expected = pa.array(values, mask=null)
        assert out.equals(expected) and out.null_count == int(null.sum()) and out.type == expected.type
        out.validate(full=True)
    strided = np.arange(2 * n, dtype=dtype)[::2]  # not contiguous: copied, not misread
    assert with_nulls(strided, np.zeros(n, bool)).to_pylist() == strided.tolist()


def test_with_nulls_refuses_what_it_cannot_wrap():
    with pytest.raises(ValueError, match="numeric"):
        with_nulls(np.array([True, False]), np.array([False, True]))
    with pytest.raises(ValueError, match="shape"):
        with_nulls(np.arange(3), np.zeros(2, bool))
