"""nms_cross's rank reference built out of core (filters.rank_files) against the in-memory one."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from filters import rank_files
from filters.nms import NmsConfig, calibrate, merge_references, score_reference
from filters.rank_files import combine_key_files, read_ranks, write_keys

RANK = NmsConfig(calibration="rank")


def _partitions(seed: int, parts: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``parts`` partitions of (scores, sources) with ties, NaN, -0.0, a null source and scores
    that are float32 in some partitions and float64 in others."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(parts):
        scores = rng.integers(0, 12, n) / 8 - 0.25  # ties, 0.0 among them
        scores[rng.integers(0, n, 5)] = np.nan
        scores[rng.integers(0, n, 3)] = -0.0
        if p % 2:
            scores[rng.integers(0, n, 4)] = 0.1  # not a float32: this partition's keys are float64
        sources = rng.choice(np.array(["a", "b", None], object), n, p=[0.5, 0.4, 0.1])
        out.append((scores, sources))
    return out


@pytest.fixture(params=["out of core", "in memory"])
def way(request, monkeypatch):
    """Both ways combine_key_files ranks: DuckDB, or (a small round) the reference in memory."""
    monkeypatch.setattr(rank_files, "IN_MEMORY_KEYS", 0 if request.param == "out of core" else 10**9)
    return request.param


@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_made_out_of_core_equal_the_in_memory_reference_bit_for_bit(seed, tmp_path, way):
    partitions = _partitions(seed, parts=4, n=300)
    in_memory = merge_references([score_reference(s, pa.array(src, pa.string())) for s, src in partitions])
    paths = []
    for index, (scores, sources) in enumerate(partitions):
        half = len(scores) // 2  # two thread parts per partition, as prepare_rule_parts returns them
        parts = [score_reference(scores[:half], pa.array(sources[:half], pa.string())),
                 score_reference(scores[half:], pa.array(sources[half:], pa.string()))]
        paths.append(tmp_path / "parts" / f"part-{index}.parquet")
        write_keys(parts, index, paths[-1])
    combine_key_files(paths, tmp_path / "state", tmp_path / "scratch")
    for index, (scores, sources) in enumerate(partitions):
        lookup = read_ranks(tmp_path / "state", index)
        got = calibrate(scores, pa.array(sources, pa.string()), RANK, lookup)
        want = calibrate(scores, pa.array(sources, pa.string()), RANK, in_memory)
        assert got.tobytes() == want.tobytes()
        if way == "out of core":  # a partition holds its own rows' scores only, not the round's reference
            assert sum(len(keys) for keys, _ in lookup.ranks.values()) == len(scores)


def test_a_partition_that_judged_nothing_has_an_empty_share_and_a_missing_score_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_files, "IN_MEMORY_KEYS", 0)
    scores = np.array([0.5, 0.25, 0.5])
    sources = pa.array(["a", "a", "b"])
    write_keys([score_reference(scores, sources)], 0, tmp_path / "p0.parquet")
    write_keys([None], 1, tmp_path / "p1.parquet")
    combine_key_files([tmp_path / "p0.parquet", tmp_path / "p1.parquet"], tmp_path / "state", tmp_path / "scratch")
    assert read_ranks(tmp_path / "state", 1).ranks == {}
    lookup = read_ranks(tmp_path / "state", 0)
    assert calibrate(scores, sources, RANK, lookup).tolist() == [0.75, 0.25, 0.5]
    with pytest.raises(RuntimeError, match="misses 1 scores"):
        calibrate(np.array([0.3]), pa.array(["a"]), RANK, lookup)
