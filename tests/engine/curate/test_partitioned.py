"""A round curated in partitions (here, on Beam's direct runner, on Dask) equals the round
curated in one process: the same curated rows, decision trails and summary counts, whatever
the previous round's parts were written by; a killed run resumes and switches once."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.curate.parquet_io import read_curated, read_parquet_files
from engine.curate.partition_plan import make_plan
from engine.curate.partitioned import curate_partitioned, run_task
from engine.curate.round_curation import curate_configured
from filters import rank_files
from filters.base import _REGISTRY, filter_spec
from storage.layout import DataRoot
from storage.schema import DECISION_TRAILS
from tests.engine.curate.partition_root import write_extra, write_round0, write_round1
from tests.filters.tables import region

PARTITION_ROWS = 10  # one unit of shards each: 4 or 5 partitions


def _config(pipeline: Path, **changes) -> CurationConfig:
    config = CurationConfig.from_dict({"text": {"pipeline": str(pipeline), "max_objects": 3},
                                       "phrase": {"min_score": 0.5}})
    return dataclasses.replace(config, **changes)


def _copy(root: DataRoot, to: Path) -> DataRoot:
    shutil.copytree(root.path, to)
    return DataRoot(to)


def _rows(table: pa.Table) -> list[dict]:
    plain = table.cast(pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                  for f in table.schema]))
    return sorted(plain.to_pylist(), key=repr)


def _trails(root: DataRoot, round_: int) -> list[dict]:
    return _rows(read_parquet_files(sorted(str(p) for p in root.decisions(round_).glob("part-*.parquet")),
                                    DECISION_TRAILS))


def assert_same_round(one: DataRoot, other: DataRoot, round_: int) -> None:
    """The same curated rows, trails (row numbers too) and summary counts; nothing staged left."""
    assert _rows(read_curated(one, round_)) == _rows(read_curated(other, round_))
    assert _trails(one, round_) == _trails(other, round_)
    summaries = [json.loads((r.curated(round_) / "_summary.json").read_text()) for r in (one, other)]
    same = [{k: v for k, v in s.items() if k not in ("seconds", "curated_parts", "decision_parts")} for s in summaries]
    assert same[0] == same[1] and same[0]["input_rows"] > 0
    for root in (one, other):
        assert not root.curation_work(round_).exists() and not list(root.path.rglob("*.tmp"))


@pytest.fixture(scope="module")
def rounds(tmp_path_factory, tiny_spacy_pipeline) -> dict:
    """Round 0 curated in one process (``whole``) and in partitions (``parts``), round 1's
    annotations and review written in both."""
    tmp = tmp_path_factory.mktemp("partitioned")
    config = _config(tiny_spacy_pipeline)
    whole = DataRoot(tmp / "whole")
    write_round0(whole)
    parts = _copy(whole, tmp / "parts")
    curate_round(whole, 0, config)
    curate_partitioned(parts, 0, dataclasses.replace(config, partition_rows=PARTITION_ROWS))
    for root in (whole, parts):
        write_round1(root)
    return {"whole": whole, "parts": parts, "config": config}


def test_round_curated_in_partitions_equals_the_round_curated_whole(rounds, tmp_path):
    assert_same_round(rounds["whole"], rounds["parts"], 0)
    config = rounds["config"]
    summary = json.loads((rounds["parts"].curated(0) / "_summary.json").read_text())
    assert summary["dropped_by_rule"]["nms_cross"] and summary["dropped_by_rule"]["image"]  # the rules had work
    one = _copy(rounds["whole"], tmp_path / "one-partition")
    assert curate_partitioned(one, 0, dataclasses.replace(config, partition_rows=10**9))["curated_parts"] == 1
    assert_same_round(rounds["whole"], one, 0)
    for previous in ("whole", "parts"):  # the previous set written in one piece (read by image) or in partitions
        alone, split = _copy(rounds[previous], tmp_path / f"{previous}-1"), _copy(rounds[previous], tmp_path / f"{previous}-2")
        curate_round(alone, 1, config)
        summary = curate_partitioned(split, 1, dataclasses.replace(config, partition_rows=PARTITION_ROWS))
        assert summary["carried_rows_replaced_by_review"] > 0 and summary["dropped_by_rule"]["merge"] > 0
        assert summary["dropped_by_rule"]["human_review"] > 0
        assert_same_round(alone, split, 1)


def test_scores_ranked_out_of_core_curate_as_the_whole_round(rounds, tmp_path, monkeypatch):
    """nms_cross's ranks made by DuckDB, each partition reading its share (filters.rank_files),
    as a round above IN_MEMORY_KEYS is: the same curated rows and decisions as in one process."""
    monkeypatch.setattr(rank_files, "IN_MEMORY_KEYS", 0)
    ranked = _copy(rounds["whole"], tmp_path / "ranked-out-of-core")
    shares = []

    def read(folder: Path, index: int) -> rank_files.RankLookup:
        share = rank_files.read_ranks(folder, index)
        shares.append((index, type(share)))
        return share

    spec = filter_spec("nms_cross")
    monkeypatch.setitem(_REGISTRY, "nms_cross",
                        dataclasses.replace(spec, state_files=dataclasses.replace(spec.state_files, read=read)))
    summary = curate_partitioned(ranked, 0, dataclasses.replace(rounds["config"], partition_rows=PARTITION_ROWS))
    assert summary["dropped_by_rule"]["nms_cross"] > 0
    assert len(shares) >= 4 and {kind for _, kind in shares} == {rank_files.RankLookup}  # one share per partition
    assert_same_round(rounds["whole"], ranked, 0)


def test_known_label_rules_see_the_whole_previous_set_in_every_partition(tmp_path, tiny_spacy_pipeline):
    """``relabel_known_only`` and ``new_box_known_labels_only`` judge by the labels of the whole
    previous curated set, not by a partition's share of it: "horse" is curated on one image of
    shard s4 only, and a new "horse" box on shard s0's image is added, a "zebra" one is not."""
    config = _config(tiny_spacy_pipeline)
    config = dataclasses.replace(config, merge=dataclasses.replace(config.merge, relabel_known_only=True,
                                                                  new_box_known_labels_only=True))
    alone = DataRoot(tmp_path / "alone")
    write_round0(alone)
    write_extra(alone, 0, [region("e0", [50, 40, 80, 70], label="horse", source="extra", score=0.9)], "s4")
    curate_round(alone, 0, config)
    write_round1(alone)
    horse = region("a0", [55, 45, 85, 75], label="horse", source="extra", score=0.9, round_=1)
    zebra = region("a0", [2, 50, 20, 78], label="zebra", source="extra", score=0.9, round_=1)
    write_extra(alone, 1, [horse, zebra], "s0")
    split = _copy(alone, tmp_path / "split")
    curate_round(alone, 1, config)
    curate_partitioned(split, 1, dataclasses.replace(config, partition_rows=PARTITION_ROWS))
    assert_same_round(alone, split, 1)
    ids = set(read_curated(split, 1)["annotation_id"].to_pylist())
    assert horse["annotation_id"] in ids and zebra["annotation_id"] not in ids


def test_partitions_hold_whole_images_and_read_the_previous_set_by_shard(rounds, tmp_path):
    parts = _copy(rounds["parts"], tmp_path / "parts")
    plan = make_plan(parts, 1, PARTITION_ROWS, "test", tmp_path / "work")
    assert len(plan.partitions) >= 4 and sum(p.rows for p in plan.partitions) > 0
    unit_of = {key: u for u, key in enumerate(plan.unit_keys)}
    assert "s2" not in unit_of and "s4" in unit_of  # s2 shares an image with s1: one unit, written as s1
    holding = [p for p in plan.partitions if unit_of["s1"] in p.units]
    assert len(holding) == 1 and holding[0].image_parts == ("images/part-s1.parquet", "images/part-s2.parquet")
    groups = list(zip(plan.previous_unit, plan.previous_groups))
    assert all(u >= 0 for units, rows in groups for u, n in zip(units, rows) if n)  # no previous row routed one by one
    routed = [plan.raw_files[i] for i, u in enumerate(plan.raw_unit) if u < 0]
    assert routed == ["annotations/round=1/source=human/shard=review-rev1.parquet"]
    whole = make_plan(rounds["whole"], 1, PARTITION_ROWS, "test", tmp_path / "work-whole")
    assert all(u < 0 for units in whole.previous_unit for u in units)  # written in one piece: routed by image
    every = [(i, g) for p in plan.partitions for i, groups, _ in p.previous for g in groups]
    assert len(every) == len(set(every)) == sum(n > 0 for g in plan.previous_groups for n in g)  # each row group once


def test_a_killed_run_resumes_where_it_stopped_and_switches_once(rounds, tmp_path):
    config = dataclasses.replace(rounds["config"], partition_rows=PARTITION_ROWS)
    alone, split = _copy(rounds["parts"], tmp_path / "alone"), _copy(rounds["parts"], tmp_path / "split")
    curate_round(alone, 1, config)
    curate_round(split, 1, config)  # an earlier complete curation of the round, in one piece
    before = sorted(p.name for p in split.curated(1).iterdir())
    asked: list[tuple[str, list[int]]] = []

    def killed(**after: int):
        """Runs each task's first ``after[task]`` pending partitions (all when not given), then
        dies as a killed run would; a task with nothing pending to leave undone dies after it too."""
        def run(task: str, pending: list[int]) -> None:
            asked.append((task, list(pending)))
            count = after.get(task.split(":")[0], len(pending))
            for index in pending[:count]:
                run_task(split, 1, config.to_dict(), 1_000_000, task, index)
            if count < len(pending) or task.split(":")[0] in after:
                raise KeyboardInterrupt("killed")
        return run

    with pytest.raises(KeyboardInterrupt):
        curate_partitioned(split, 1, config, runner=killed(prepare=2))
    assert [task for task, _ in asked] == ["prepare:nms_cross"] and len(asked[0][1]) >= 4
    assert sorted(p.name for p in split.curated(1).iterdir()) == before  # the earlier set stands, summary too
    with pytest.raises(KeyboardInterrupt):
        curate_partitioned(split, 1, config, runner=killed(curate=1))
    assert asked[1] == ("prepare:nms_cross", asked[0][1][2:])  # only what the killed run had not prepared
    assert asked[2] == ("curate", asked[0][1])
    with pytest.raises(KeyboardInterrupt):
        curate_partitioned(split, 1, config, runner=killed(curate=10**6))  # every partition done, then killed
    assert asked[3] == ("curate", asked[0][1][1:])  # the prepared state and the finished partition were kept
    assert sorted(p.name for p in split.curated(1).iterdir()) == before
    staged = sorted((split.curation_work(1) / "curated").glob("part-*.parquet"))
    (split.curated(1) / "_summary.json").unlink()  # a switch killed after its first rename
    staged[0].rename(split.curated(1) / staged[0].name)
    asked.clear()
    curate_partitioned(split, 1, config, runner=killed())
    assert asked == [("curate", [])]  # nothing left to run: only the switch
    assert not (split.curated(1) / "part-00000.parquet").exists()  # the earlier set's parts are gone
    assert_same_round(alone, split, 1)


@pytest.mark.parametrize("runner", ["direct", "dask"])
def test_partitions_run_side_by_side_on_beam(rounds, tmp_path, runner):
    alone, split = _copy(rounds["parts"], tmp_path / "alone"), _copy(rounds["parts"], tmp_path / "split")
    config = rounds["config"]
    curate_round(alone, 1, config)
    beam = dataclasses.replace(config, partition_rows=PARTITION_ROWS, partition_runner=runner)
    if runner == "direct":
        curate_configured(split, 1, beam)
    else:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            curate_configured(split, 1, beam, workers=2, options=[f"--dask_client_address={cluster.scheduler_address}"])
    assert_same_round(alone, split, 1)


@pytest.mark.parametrize("value,message", [(-1, "curation.partition_rows must be a whole number >= 0, got -1"),
                                           ('"many"', "curation.partition_rows must be a whole number"),
                                           ("2.5", "curation.partition_rows must be a whole number")])
def test_a_wrong_partition_setting_is_one_line_naming_its_key(tmp_path, value, message, capsys):
    from engine.cli import main
    from storage.catalog import Catalog

    root = DataRoot(tmp_path / "root")
    write_round0(root)
    with Catalog(root):
        pass
    toml = tmp_path / "fld.toml"
    toml.write_text(f"[curation]\npartition_rows = {value}\n")
    assert main(["curate", "--root", str(root.path), "--round", "0", "--config", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    toml.write_text('[curation]\npartition_runner = "sparks"\n')
    assert main(["curate", "--root", str(root.path), "--round", "0", "--config", str(toml)]) == 2
    assert "curation.partition_runner 'sparks' is unknown" in capsys.readouterr().err


def test_fld_curate_partitions_as_asked(rounds, tmp_path, capsys):
    from engine.cli import main
    from storage.catalog import Catalog

    alone, split = _copy(rounds["parts"], tmp_path / "alone"), _copy(rounds["parts"], tmp_path / "split")
    pipeline = rounds["config"].text.pipeline
    toml = tmp_path / "fld.toml"
    toml.write_text(f'[curation]\nphrase = {{ min_score = 0.5 }}\ntext = {{ pipeline = "{pipeline}", max_objects = 3 }}\n'
                    f"partition_rows = {PARTITION_ROWS}\n")
    curate_round(alone, 1, rounds["config"])
    with Catalog(split):
        pass
    assert main(["curate", "--root", str(split.path), "--round", "1", "--config", str(toml)]) == 0
    assert json.loads(capsys.readouterr().out)["curated_parts"] >= 4  # one part per partition at least
    assert_same_round(alone, split, 1)
    assert main(["curate", "--root", str(split.path), "--round", "1", "--config", str(toml), "--partition-rows", "-3"]) == 2
    assert "--partition-rows must be a whole number >= 0, got -3" in capsys.readouterr().err


def test_the_round_step_curates_in_partitions_with_the_runner_section(rounds, tmp_path):
    from engine.config import EngineConfig
    from engine.rounds.context import RoundContext
    from engine.rounds.steps import curate_step
    from storage.catalog import Catalog

    alone, split = _copy(rounds["parts"], tmp_path / "alone"), _copy(rounds["parts"], tmp_path / "split")
    curate_round(alone, 1, rounds["config"])
    with Catalog(split):
        pass
    config = EngineConfig(curation=dataclasses.replace(rounds["config"], partition_rows=PARTITION_ROWS,
                                                       partition_runner="direct-multiprocess"))
    summary = curate_step(RoundContext(split, 1, config, progress=False))
    assert summary["curated_parts"] >= 4
    assert_same_round(alone, split, 1)


def test_a_round_of_more_rows_than_partition_rows_is_curated_in_partitions_by_default(rounds, tmp_path):
    from engine.curate.config import DEFAULT_PARTITION_ROWS
    from engine.curate.parquet_io import read_raw
    from engine.curate.round_curation import round_rows

    root = _copy(rounds["parts"], tmp_path / "root")
    rows = round_rows(root, 1)
    assert rows == read_raw(root, 1).num_rows + read_curated(root, 0).num_rows  # raw + previous, from footers
    assert CurationConfig().partition_rows == DEFAULT_PARTITION_ROWS > rows
    config = rounds["config"]
    for limit, parts in ((rows, 1), (0, 1), (rows - 1, 2)):  # at most the limit, or 0: one process (one part)
        fresh = _copy(rounds["parts"], tmp_path / f"limit-{limit}")
        summary = curate_configured(fresh, 1, dataclasses.replace(config, partition_rows=limit))
        assert (summary["curated_parts"] >= 2) == (parts == 2), (limit, summary["curated_parts"])
