"""The split: a deterministic function of (seed, image id) with the asked share in validation."""

from __future__ import annotations

from engine.dataset.splits import split_of


def test_split_is_a_deterministic_function_of_image_and_seed():
    ids = [f"{i:064x}" for i in range(4000)]
    first = [split_of(i, 0.2, seed=7) for i in ids]
    assert first == [split_of(i, 0.2, seed=7) for i in ids]
    assert 0.17 < first.count("validation") / len(ids) < 0.23
    other = [split_of(i, 0.2, seed=8) for i in ids]
    assert other != first and all(split_of(i, 0.0) == "train" for i in ids[:50])
