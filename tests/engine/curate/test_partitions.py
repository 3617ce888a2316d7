"""Curation in image partitions: the same curated set and trails for any partition count."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_tables
from engine.curate.rules import _stages, image_partitions
from tests.filters.spacy_docs import gold_docs
from tests.filters.tables import candidate, caption, images, phrase, region, table

SOURCES = ("detector", "florence2", "ocr_boxes")


def _round_rows(rng: np.random.Generator, n_images: int, round_: int) -> list[dict]:
    """Objects seen by several sources with jittered boxes. The detector's scores drift with
    the image (high on the first images, low on the last), so a per-source rank computed over
    one partition's rows differs from the rank over all rows and flips cross-source NMS."""
    texts = [doc.text for doc in gold_docs()]
    rows = []
    for k in range(n_images):
        image = f"img{k:03d}"
        for obj in range(3):
            box = rng.uniform(5, 60, 2)
            box = np.r_[box, box + rng.uniform(15, 35, 2)]
            label = ("dog", "cat", "car")[obj]
            for source in rng.permutation(SOURCES)[: rng.integers(1, 4)]:
                score = (1 - k / n_images) * 0.5 + rng.uniform(0, 0.5) if source == "detector" else rng.uniform(0.3, 1)
                rows.append(region(image, box + rng.normal(0, 1.5, 4), label=label, source=str(source),
                                   score=float(score), round_=round_))
        first = rows[-1]
        rows.append(region(image, first["bbox"], label=first["text"], source=first["source"],
                           score=first["score"] * 0.9, round_=round_))  # a same-source duplicate
        cap = caption(image, texts[k % len(texts)], round_=round_)
        rows += [cap, phrase(image, cap, 0, 1, [5, 5, 40, 40], round_=round_)]
        if round_ == 0:
            rows += [candidate(image, rows[-5], "a brown thing", source="region_captioner"),
                     candidate(image, rows[-5], "a brown thing", source="region_text_matcher", score=0.3)]
    rows.append(region("unknown", [5, 5, 30, 30], score=0.9, round_=round_))
    rows.append(region("unknown", [6, 5, 30, 30], score=0.8, round_=round_))
    return rows


def _plain(trails: pa.Table) -> list[dict]:
    return trails.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_dictionary(f.type) else f
                                  for f in trails.schema])).to_pylist()


WITHOUT_IMAGE_RULE = tuple(r for r in DEFAULT_RULES if r not in ("image", "text_complexity"))


@pytest.mark.parametrize("rules", [DEFAULT_RULES, WITHOUT_IMAGE_RULE])
def test_partition_count_does_not_change_the_result(tiny_spacy_pipeline, rules):
    rng = np.random.default_rng(7)
    n_images = 24
    sizes = images(*((f"img{k:03d}", 100, 100) for k in range(n_images)))
    config = CurationConfig.from_dict({"rules": list(rules), "text": {"pipeline": str(tiny_spacy_pipeline)}})
    raw0, raw1 = table(_round_rows(rng, n_images, 0)), table(_round_rows(rng, n_images, 1))
    one = curate_tables(raw0, None, sizes, config, 0, partitions=1)
    previous = one[0]
    one_next = curate_tables(raw1, previous, sizes, config, 1, partitions=1)
    assert 0 < one[0].num_rows < raw0.num_rows
    for count in (2, 3, 7):
        many = curate_tables(raw0, None, sizes, config, 0, partitions=count)
        assert many[0].to_pylist() == one[0].to_pylist()
        assert _plain(many[1]) == _plain(one[1])
        many_next = curate_tables(raw1, previous, sizes, config, 1, partitions=count)
        assert many_next[0].to_pylist() == one_next[0].to_pylist()
        assert _plain(many_next[1]) == _plain(one_next[1])


def test_image_partitions_hold_whole_images_balanced_by_rows():
    rng = np.random.default_rng(3)
    index = rng.integers(-4, 500, 20_000)
    index[index < 0] = -1 - rng.integers(0, 3, (index < 0).sum())  # unknown images: distinct negative codes
    parts = image_partitions(index, 4)
    assert len(parts) == 4
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(index)))
    for rows in parts:
        assert np.all(np.diff(rows) > 0)
        assert abs(len(rows) - len(index) / 4) < 0.05 * len(index)
    owner = np.zeros(len(index), np.int64)
    for k, rows in enumerate(parts):
        owner[rows] = k
    for image in np.unique(np.maximum(index, -1)):
        assert len(np.unique(owner[np.maximum(index, -1) == image])) == 1  # unknown images stay together
    assert [len(p) for p in image_partitions(index, 1)] == [len(index)]
    assert [len(p) for p in image_partitions(np.zeros(10, np.int64), 3)] == [10]  # one image: one partition


def test_stages_start_at_rules_with_a_prepare_hook():
    stages = _stages(DEFAULT_RULES)
    assert [rule for stage in stages for _, rule in stage] == list(DEFAULT_RULES)
    assert [stage[0][1] for stage in stages[1:]] == ["nms_cross"]
    assert [r for stage in stages for r, _ in stage] == list(range(len(DEFAULT_RULES)))


def test_take_table_equals_arrow_take_with_all_null_columns():
    from concurrent.futures import ThreadPoolExecutor

    from engine.curate.rules import take_table

    table = pa.table({"a": pa.chunked_array([[1, 2], [3, None]]), "b": pa.nulls(4, pa.list_(pa.float32())),
                      "c": pa.array([None] * 4, pa.string()).dictionary_encode()})
    with ThreadPoolExecutor(2) as pool:
        for rows in (np.array([3, 0, 2]), np.array([3, 0, 0, 2, 1, 1])):  # fewer rows (a slice), more (new nulls)
            for p in (None, pool):
                assert take_table(table, rows, p).equals(table.take(pa.array(rows)))
        for bad in (np.array([0, 4]), np.array([-1, 2])):  # Arrow checks no bounds here: take_table must
            with pytest.raises(IndexError, match="outside"):
                take_table(table, bad, pool)
    with pytest.raises(TypeError, match="integer"):
        take_table(table, np.array([0.0]), None)


def test_a_prepare_hook_needs_a_combine_hook():
    from filters.base import register_filter
    from filters.nms import NmsConfig

    with pytest.raises(ValueError, match="both a prepare and a combine"):
        register_filter("half_hooked", section="nms", settings=NmsConfig, prepare=lambda table, config, ctx: None)
