"""The curation step: decision accounting, agreement, merge across rounds, config, I/O."""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_round, curate_tables
from storage.decisions import DECISIONS_VIEW_SQL, expand_trails
from storage.layout import DataRoot
from storage.schema import CURATED, DECISION_TRAILS, DECISIONS, IMAGES, annotation_row, table_from_rows, utc_now
from tests.filters.spacy_docs import gold_docs
from tests.filters.tables import candidate, caption, images, phrase, region, table

IMAGES_OK = images(("a", 100, 80), ("b", 64, 64), ("c", 50, 50), ("d", 30, 30))


def _mixed_rows() -> list[dict]:
    texts = [doc.text for doc in gold_docs()]
    cap = caption("a", texts[1])  # a man holds a red umbrella
    dog = region("a", [10, 10, 50, 50], label="dog", score=0.9)
    return [
        dog,
        region("a", [11, 10, 51, 50], label="dog", score=0.8),                       # same-source duplicate
        region("a", [10, 11, 50, 51], label="dog", source="florence2", score=0.7),   # cross-source duplicate
        region("a", [10, 10, 50, 50], label="cat", score=0.6),                       # other class
        region("a", [0, 0, 2, 79], label="pole", score=0.9),                         # thin
        candidate("a", dog, "a brown dog", source="region_captioner"),
        candidate("a", dog, "a brown dog", source="region_text_matcher", score=0.2),
        cap,
        phrase("a", cap, 2, 5, [20, 20, 40, 60]),                                    # "man"
        phrase("a", cap, 17, 25, [50, 30, 70, 50], score=0.4),                       # low phrase score
        phrase("a", cap, 0, 1, [50, 30, 70, 50], text="it"),                         # differs from span
        caption("a", texts[4]),                                                      # 4 objects (list)
        region("b", [5, 5, 30, 30], score=0.1), region("b", [6, 6, 20, 20], score=0.2),  # all dropped image
        region("c", [5, 5, 30, 30], score=0.95),                                     # one-row image
        region("zzz", [5, 5, 30, 30], score=0.95), caption("zzz", texts[2]),         # unknown image
    ]


def _config(pipeline, **sections) -> CurationConfig:
    base = {"text": {"pipeline": str(pipeline), "max_objects": 3}, "phrase": {"min_score": 0.5}}
    return CurationConfig.from_dict({**base, **sections})


def curate_long(raw, previous, images_ok, config, round_):
    """curate_tables with its trails checked and expanded to the long form (one row per rule)."""
    curated, trails = curate_tables(raw, previous, images_ok, config, round_)
    assert trails.schema == DECISION_TRAILS
    assert trails["annotation_id"].to_pylist() == raw["annotation_id"].to_pylist()  # one trail per raw row
    decisions = expand_trails(trails)
    decision_trails = trails  # noqa: F841 (read by DuckDB below)
    view = duckdb.sql(DECISIONS_VIEW_SQL).arrow().read_all() if trails.num_rows else DECISIONS.empty_table()
    assert sorted(view.cast(DECISIONS).to_pylist(), key=str) == sorted(decisions.to_pylist(), key=str)
    return curated, decisions


def assert_accounting(raw: pa.Table, curated: pa.Table, decisions: pa.Table, rules, round_: int) -> None:
    raw_ids = raw["annotation_id"].to_pylist()
    rank = {rule: i for i, rule in enumerate(rules)}
    seen = defaultdict(list)
    for row in decisions.to_pylist():
        seen[row["annotation_id"]].append((rank[row["rule"]], row["kept"], row["reason"]))
        assert row["round"] == round_ and (row["reason"] is None) == row["kept"]
    assert set(seen) == set(raw_ids)
    dropped = set()
    for ann, entries in seen.items():
        ranks = [r for r, _, _ in entries]
        assert len(ranks) == len(set(ranks)), f"{ann} judged twice by one rule"
        assert ranks == sorted(ranks)
        drops = [r for r, kept, _ in entries if not kept]
        assert len(drops) <= 1 and (not drops or drops[0] == max(ranks)), "judged after being dropped"
        if drops:
            dropped.add(ann)
    new = {i for i, r in zip(curated["annotation_id"].to_pylist(), curated["round"].to_pylist()) if r == round_}
    assert not new & dropped
    assert len(new) + len(dropped) == len(raw_ids) and new | dropped == set(raw_ids)


def test_every_row_is_accounted_for(tiny_spacy_pipeline):
    rows = _mixed_rows()
    raw = table(rows)
    config = _config(tiny_spacy_pipeline)
    curated, decisions = curate_long(raw, None, IMAGES_OK, config, 0)
    assert curated.schema == CURATED and decisions.schema == DECISIONS
    assert_accounting(raw, curated, decisions, DEFAULT_RULES, 0)
    by_id = {r["annotation_id"]: r for r in curated.to_pylist()}
    dog = by_id[rows[0]["annotation_id"]]
    assert dog["text"] == "a brown dog" and dog["label"] == "dog"
    assert set(dog["absorbed_ids"]) == {rows[i]["annotation_id"] for i in (1, 2, 5, 6)}
    assert dog["seen_by"] == ["detector@detector-v1", "florence2@florence2-v1"] and dog["agreement"] == 2
    assert rows[3]["annotation_id"] in by_id and rows[8]["annotation_id"] in by_id
    assert {r["image_id"] for r in curated.to_pylist()} == {"a", "c"}
    drops = {r["annotation_id"]: r["rule"] for r in decisions.to_pylist() if not r["kept"]}
    assert drops[rows[4]["annotation_id"]] == "geometry"
    by = {r["annotation_id"]: r["absorbed_by"] for r in decisions.to_pylist() if not r["kept"]}
    assert by[rows[1]["annotation_id"]] == by[rows[2]["annotation_id"]] == dog["annotation_id"]  # NMS
    assert by[rows[4]["annotation_id"]] is None
    assert drops[rows[9]["annotation_id"]] == "phrase_confidence"
    assert drops[rows[10]["annotation_id"]] == "phrase_span"
    assert drops[rows[11]["annotation_id"]] == "text_complexity"
    assert drops[rows[15]["annotation_id"]] == drops[rows[16]["annotation_id"]] == "image"


def test_thresholds_really_come_from_config(tiny_spacy_pipeline):
    raw = table(_mixed_rows())
    base = curate_tables(raw, None, IMAGES_OK, _config(tiny_spacy_pipeline), 0)[0].num_rows
    loose = _config(tiny_spacy_pipeline, confidence={"default": 0.0}, geometry={"min_side": 1.0},
                    phrase={"min_score": 0.0})
    assert curate_tables(raw, None, IMAGES_OK, loose, 0)[0].num_rows > base
    no_cross = _config(tiny_spacy_pipeline, nms={"iou_across_sources": 1.0})
    assert curate_tables(raw, None, IMAGES_OK, no_cross, 0)[0].num_rows == base + 1


def test_empty_round_and_all_dropped():
    config = CurationConfig()
    curated, decisions = curate_long(table([]), None, IMAGES_OK, config, 3)
    assert curated.num_rows == 0 and decisions.num_rows == 0 and curated.schema == CURATED
    raw = table([region("b", [5, 5, 30, 30], score=0.1)])
    curated, decisions = curate_long(raw, None, IMAGES_OK, config, 0)
    assert curated.num_rows == 0 and decisions.filter(pa.compute.invert(decisions["kept"])).num_rows == 1
    previous, _ = curate_tables(table([region("c", [5, 5, 30, 30], score=0.9)]), None, IMAGES_OK, config, 0)
    carried, decisions = curate_long(table([]), previous, IMAGES_OK, config, 1)
    assert carried.to_pylist() == previous.to_pylist() and decisions.num_rows == 0


def test_merge_across_rounds_raises_agreement_instead_of_duplicating():
    config = CurationConfig(rules=tuple(r for r in DEFAULT_RULES if r != "text_complexity"))
    cap0 = caption("a", "a dog on grass", source="florence2", version="f0")
    dog0 = region("a", [10, 10, 50, 50], label="dog")
    round0 = [dog0, region("a", [60, 10, 90, 40], label="cat"), cap0, phrase("a", cap0, 2, 5, [10, 10, 50, 50])]
    previous, _ = curate_tables(table(round0), None, IMAGES_OK, config, 0)
    cap1 = caption("a", "A dog on grass ", source="florence2", version="f1", round_=1)
    round1 = [
        region("a", [11, 10, 50, 51], label="Dog", source="florence2", version="f1", round_=1),  # agrees: new model
        region("a", [10, 10, 50, 50], label="dog", round_=1, score=0.8),   # same detector checkpoint again
        region("a", [60, 50, 90, 79], label="dog", source="florence2", version="f1", round_=1),  # new box
        cap1, phrase("a", cap1, 2, 5, [10, 10, 50, 50], round_=1),          # caption and phrase agree too
    ]
    raw1 = table(round1)
    curated, decisions = curate_long(raw1, previous, IMAGES_OK, config, 1)
    assert_accounting(raw1, curated, decisions, (*config.rules, "merge"), 1)
    by_id = {r["annotation_id"]: r for r in curated.to_pylist()}
    assert curated.num_rows == previous.num_rows + 1  # only the new box was added
    dog = by_id[dog0["annotation_id"]]
    assert dog["agreement"] == 2 and dog["seen_by"] == ["detector@detector-v1", "florence2@f1"]
    assert {round1[0]["annotation_id"], round1[1]["annotation_id"]} <= set(dog["absorbed_ids"])
    assert by_id[cap0["annotation_id"]]["agreement"] == 2
    assert by_id[round1[2]["annotation_id"]]["round"] == 1
    merges = [r for r in decisions.to_pylist() if r["rule"] == "merge"]
    assert sorted(r["kept"] for r in merges) == [False] * 3 + [True]
    into = {r["absorbed_by"] for r in merges if not r["kept"]}  # each merged row names the previous row it went into
    assert into == {dog0["annotation_id"], cap0["annotation_id"], round0[3]["annotation_id"]}
    suppressed = [r for r in decisions.to_pylist() if r["rule"].startswith("nms") and not r["kept"]]
    assert [r["absorbed_by"] for r in suppressed] == [r["annotation_id"] for r in round1[:2]
                                                      if r["annotation_id"] != suppressed[0]["annotation_id"]]
    plain = {"rules": list(config.rules), "nms": {"calibration": "raw"}}  # florence2 (0.9) wins in round 1
    strict = CurationConfig.from_dict({**plain, "merge": {"iou_threshold": 0.99, "fuse": False}})  # IoU with dog0: 0.95
    assert curate_tables(raw1, previous, IMAGES_OK, strict, 1)[0].num_rows == previous.num_rows + 2
    strict = CurationConfig.from_dict({**plain, "merge": {"fuse_iou": 0.99}})  # the same through fusion
    assert curate_tables(raw1, previous, IMAGES_OK, strict, 1)[0].num_rows == previous.num_rows + 2
    off = CurationConfig.from_dict({**plain, "merge": {"enabled": False}})
    assert curate_tables(raw1, previous, IMAGES_OK, off, 1)[0].num_rows == previous.num_rows + 4


def test_config_from_dict_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match=r"curation\.nms\.iou_tresh"):
        CurationConfig.from_dict({"nms": {"iou_tresh": 0.4}})
    with pytest.raises(ValueError, match=r"curation\.colour"):
        CurationConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="no_such_rule"):
        CurationConfig.from_dict({"rules": ["image", "no_such_rule"]})
    with pytest.raises(ValueError, match="-2"):
        CurationConfig.from_dict({"confidence": {"default": 0.1}, "merge": {"iou_threshold": -2}})
    config = CurationConfig.from_dict({"confidence": {"per_source": {"ocr": 0.7}}, "phrase": {"blacklist": ["it"]}})
    assert config.confidence.threshold_of("ocr") == 0.7 and config.phrase.blacklist == ("it",)
    assert CurationConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def _write_round(root: DataRoot, round_: int, rows: list[dict]) -> None:
    by_source = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    for source, part in by_source.items():
        path = root.annotation_shard(round_, source, "000")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table(part), path)


@pytest.mark.parametrize("producers", [3, 70])  # up to 64 producers: bit sets; more: the sorted lists
def test_seen_by_lists_every_agreeing_producer_once(producers):
    rows = []
    for k in range(producers):
        for copy in range(2):  # two versions per source, the second a duplicate of the same checkpoint
            rows.append(region("a", [10, 10, 50 + copy, 50], source=f"s{k:02d}", score=0.5 + k / 200 + copy / 1000))
    rows.append(region("a", [60, 60, 90, 75], source="s00", score=0.4))  # a box nobody else saw
    rules = tuple(r for r in DEFAULT_RULES if r not in ("text_complexity",))
    curated, _ = curate_tables(table(rows), None, IMAGES_OK, CurationConfig(rules=rules), 0)
    by_box = {tuple(r["bbox"]): r for r in curated.to_pylist()}
    assert len(by_box) == 2
    shared = next(r for box, r in by_box.items() if box[0] == 10)
    assert shared["seen_by"] == sorted(f"s{k:02d}@s{k:02d}-v1" for k in range(producers))
    assert shared["agreement"] == producers and len(shared["absorbed_ids"]) == 2 * producers - 1
    assert by_box[(60, 60, 90, 75)]["seen_by"] == ["s00@s00-v1"]


def test_image_sizes_list_ok_images_and_a_repeated_id_is_looked_up_at_its_first_row(tmp_path):
    from engine.curate.parquet_io import read_image_sizes
    from filters.base import image_index

    root = DataRoot(tmp_path / "data").ensure()
    root.images.mkdir()
    assert read_image_sizes(root).num_rows == 0
    rows = [("a", 100, 80, "ok"), ("b", 10, 10, "error"), ("c", 50, 40, "ok"), ("a", 100, 80, "ok"),
            (None, 5, 5, "ok"), ("b", 30, 20, "ok"), ("c", 51, 41, "ok")]
    for shard, part in (("s0", rows[:4]), ("s1", rows[4:])):
        pq.write_table(table_from_rows([dict(image_id=i, shard_id=shard, shard="/x", key=str(k), width=w, height=h,
                                             status=st, ingested_at=utc_now()) for k, (i, w, h, st) in enumerate(part)],
                                       IMAGES), root.images_part(shard))
    sizes = read_image_sizes(root)
    assert sizes.to_pylist() == [{"image_id": i, "width": w, "height": h} for i, w, h, st in rows
                                 if st == "ok" and i is not None]
    found = image_index(pa.table({"image_id": ["c", "b", "a", "z"]}), sizes)
    assert [sizes["width"][int(k)].as_py() if k >= 0 else None for k in found] == [50, 30, 100, None]
    # the repeated "c" (51 x 41) is never used: curation sees the first row's size
    curated, _ = curate_tables(table([region("c", [45, 35, 51, 41], score=0.9)]), None, sizes,
                               CurationConfig(rules=("image", "geometry")), 0)
    assert curated["bbox"].to_pylist() == [[45, 35, 50, 40]]


def test_curate_round_reads_and_writes_the_data_root(tmp_path):
    root = DataRoot(tmp_path / "data").ensure()
    root.images.mkdir()
    image_rows = [dict(image_id=i, shard_id="s0", shard="/x", key=i, width=w, height=h, status="ok",
                       ingested_at=utc_now()) for i, w, h in [("a", 100, 80), ("c", 50, 50)]]
    image_rows.append(dict(image_id="b", shard_id="s0", shard="/x", key="b", status="error", ingested_at=utc_now()))
    pq.write_table(table_from_rows(image_rows, IMAGES), root.images_part("s0"))
    config = CurationConfig(rules=tuple(r for r in DEFAULT_RULES if r != "text_complexity"))
    _write_round(root, 0, [region("a", [10, 10, 50, 50]), region("a", [11, 10, 50, 50], source="florence2"),
                           region("b", [1, 1, 20, 20]), region("c", [1, 1, 2, 2])])
    s0 = curate_round(root, 0, config, rows_per_part=1)
    assert (s0["input_rows"], s0["kept_new_rows"], s0["dropped_rows"]) == (4, 1, 3)
    from engine.curate.parquet_io import (  # written with dictionary-encoded columns, read as CURATED
        read_curated,
        read_image_sizes,
        read_raw,
    )
    assert read_curated(root, 0).to_pylist() == curate_tables(
        read_raw(root, 0), None, read_image_sizes(root), config, 0)[0].to_pylist()
    assert read_curated(root, 0).schema == CURATED
    assert s0["dropped_by_rule"] == {"image": 1, "geometry": 1, "nms_cross": 1}
    assert s0["curated_parts"] == 1 and s0["decision_parts"] == s0["input_rows"]  # one trail per raw row
    _write_round(root, 1, [annotation_row(image_id="a", round_=1, source="florence2", source_version="f1",
                                          kind="region", region_type="object", text="dog", bbox=[10, 10, 50, 50],
                                          score=0.9)])
    s1 = curate_round(root, 1, config)
    assert (s1["carried_rows"], s1["curated_rows"], s1["dropped_by_rule"]) == (1, 1, {"merge": 1})
    again = curate_round(root, 1, config)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in s1.items() if k != "seconds"}
    with duckdb.connect() as con:
        agreement = con.sql(f"select agreement from read_parquet('{root.curated(1)}/part-*.parquet')").fetchall()
        judged = con.sql(f"select sum(len(string_split(rules, ','))) from read_parquet('{root.decisions(0)}/part-*.parquet')").fetchall()
    assert agreement == [(3,)] and judged == [(s0["decision_rows"],)]
    assert json.loads((root.curated(1) / "_summary.json").read_text())["curated_rows"] == 1
    assert len(list(root.decisions(0).glob("part-*.parquet"))) == s0["input_rows"]


def test_unknown_images_still_group_apart_without_the_image_rule():
    config = CurationConfig(rules=("confidence", "nms_source", "nms_cross"))
    rows = [region("x1", [10, 10, 50, 50], score=0.9), region("x2", [10, 10, 50, 50], score=0.8),
            region("x2", [11, 10, 50, 50], score=0.7)]  # x1, x2: not in IMAGES_OK
    curated, decisions = curate_long(table(rows), None, IMAGES_OK, config, 0)
    assert sorted(curated["annotation_id"].to_pylist()) == sorted(r["annotation_id"] for r in rows[:2])
    by_id = {r["annotation_id"]: r["image_id"] for r in curated.to_pylist()}  # unknown images keep their ids
    assert [by_id[r["annotation_id"]] for r in rows[:2]] == ["x1", "x2"]
    mixed, _ = curate_long(table([*rows, region("a", [5, 5, 30, 30], score=0.9)]), None, IMAGES_OK, config, 0)
    assert sorted(mixed["image_id"].to_pylist()) == ["a", "x1", "x2"]
    assert [r["rule"] for r in decisions.to_pylist() if not r["kept"]] == ["nms_source"]


def test_raw_shards_of_older_layouts_are_read_in_file_order(tmp_path):
    """A shard with ``bbox`` as a fixed-size list (written before boxes became variable
    lists; pyarrow cannot cast it) and one lacking the nullable ``quad`` column are read
    with the current shards, rows in file order."""
    from engine.curate.parquet_io import read_parquet_files
    from storage.schema import ANNOTATIONS

    rows = [region("img", [i, i, i + 10, i + 10], score=0.5 + i / 100) for i in range(6)]
    current = table(rows[:2])
    fixed = table(rows[2:4])
    fixed = fixed.set_column(fixed.schema.get_field_index("bbox"), "bbox",
                             fixed["bbox"].cast(pa.list_(pa.float32(), 4)))
    no_quad = table(rows[4:]).drop_columns(["quad"])
    files = []
    for name, t in [("a", current), ("b", no_quad), ("c", fixed)]:
        pq.write_table(t, tmp_path / f"{name}.parquet")
        files.append(str(tmp_path / f"{name}.parquet"))
    for chosen in (files[:2], files):  # pyarrow's scanner reads the first set; the fixed-size list needs DuckDB
        got = read_parquet_files(chosen, ANNOTATIONS)
        assert got.schema == ANNOTATIONS
        expected = [r["annotation_id"] for r in rows[:2] + rows[4:] + (rows[2:4] if len(chosen) == 3 else [])]
        assert got["annotation_id"].to_pylist() == expected
        assert got["quad"].null_count == got.num_rows
        boxes = {r["annotation_id"]: r["bbox"] for r in rows}
        assert got["bbox"].to_pylist() == [boxes[i] for i in expected]
        encoded = read_parquet_files(chosen, ANNOTATIONS, ("source", "kind"))  # as read_raw reads them
        assert pa.types.is_dictionary(encoded.schema.field("kind").type)
        assert encoded["kind"].to_pylist() == got["kind"].to_pylist() == ["region"] * len(expected)
        assert encoded["source"].to_pylist() == got["source"].to_pylist()
        assert encoded.drop_columns(["source", "kind"]).equals(got.drop_columns(["source", "kind"]))


def test_scattered_reasons_share_one_dictionary_whatever_form_the_parts_come_in():
    import numpy as np

    from engine.curate.working_table import scatter_reasons as _scatter_reasons

    one_text = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int32()), pa.array(["too small", "unused"]))
    plain = pa.array(["score below 0.3", "too small", "score below 0.3"])  # "too small" again, from another rule
    out = _scatter_reasons([(np.array([4, 1]), one_text), (np.array([0, 5, 2]), plain)], 7)
    assert pa.types.is_dictionary(out.type)
    assert out.to_pylist() == ["score below 0.3", "too small", "score below 0.3", None, "too small", "too small", None]
    assert len(set(out.dictionary.to_pylist())) == len(out.dictionary)  # one entry per distinct text
    assert _scatter_reasons([], 3).to_pylist() == [None, None, None]


@pytest.mark.parametrize("names", [5, 70])  # up to 64 names: bit sets; more: the sort path
def test_distinct_lists_hold_each_owners_values_once_sorted(names):
    import numpy as np

    from engine.curate.agreement import string_lists

    rng = np.random.default_rng(names)
    tags = [f"tag{k:03d}@v" for k in rng.permutation(names)]
    owner, codes, m = rng.integers(0, 40, 600), rng.integers(0, names, 600), 45  # owners 40..44 get nothing
    out = string_lists(owner, (codes, tags), m, distinct=True).to_pylist()
    expected = [sorted({tags[c] for o, c in zip(owner, codes) if o == k}) for k in range(m)]
    assert out == expected and out[44] == []


def test_conform_keeps_top_level_and_list_value_dictionaries_only_when_asked():
    from engine.curate.parquet_io import conform

    tags = pa.ListArray.from_arrays(pa.array([0, 1, 3]), pa.array(["a", "b", "a"]).dictionary_encode())
    schema = pa.schema([pa.field("seen_by", pa.list_(pa.string())), pa.field("kind", pa.string()),
                        pa.field("ids", pa.list_(pa.string()))])
    table_ = pa.table({"seen_by": tags, "kind": pa.array(["x", "y"]).dictionary_encode(),
                       "ids": pa.array([["p"], ["q", "r"]])})
    kept = conform(table_, schema, keep_dictionaries=True)
    assert pa.types.is_dictionary(kept.schema.field("seen_by").type.value_type)
    assert pa.types.is_dictionary(kept.schema.field("kind").type)
    assert kept.schema.field("ids").type == pa.list_(pa.string())
    decoded = conform(table_, schema)
    assert decoded.schema == schema and decoded.to_pylist() == kept.to_pylist() == [
        {"seen_by": ["a"], "kind": "x", "ids": ["p"]}, {"seen_by": ["b", "a"], "kind": "y", "ids": ["q", "r"]}]
