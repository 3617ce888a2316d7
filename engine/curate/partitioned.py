"""A round curated in partitions of whole image shards, with the result of the in-process
curation (``engine.curate.curation.curate_round``) and peak memory bounded by a partition.

Every rule decides per image and the merge matches rows of the same image, so each partition
(``engine.curate.partition_plan``) runs through the pure ``curate_tables`` on its own. What
is computed across images is computed first, over the whole round:

* the calibrated thresholds: which checkpoints produced the round's rows (a DuckDB
  ``distinct`` over two columns), looked up in the models table;
* the reviews that bind the round (small: people's verdicts);
* the state of every rule with a ``combine`` hook (``nms_cross``'s rank reference: each
  source's scores among the rows alive when it runs): one pass per such rule runs the rules
  before it over every partition and keeps only its ``prepare`` part (4 bytes a judged row).
  A rule with ``state_files`` (``nms_cross``: :mod:`filters.rank_files`) writes each part to
  a file and builds the state out of core, one share per partition, so neither the driver
  nor a partition ever holds a state that grows with the round; for any other, ``combine``
  joins the parts in the driver and every partition is given the joined state.

Partitions run one after another here (``partition_runner = "local"``) or side by side as a
Beam pipeline (``engine.curate.partition_pipeline``); each writes its parts, then a marker,
under ``.engine/curation/round=R/`` (``DataRoot.curation_work``), atomically and under fixed
names, so a retried or re-run partition rewrites the same files and a killed run resumes
with the partitions it has not finished (its plan is kept while the inputs, config and
thresholds are unchanged; otherwise it starts over). Last, the driver moves the parts into
``curated/round=R/`` and ``decisions/round=R/`` (each by an atomic rename; the round's
``_summary.json`` is removed first and written last, so it is present only beside a complete
set), removes the parts of any earlier run, writes the summary (the same keys as the
in-process one, counts summed over the partitions) and removes the working folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import duckdb

from engine.curate.calibration import NEW_BOX_KEY, applied, recorded_thresholds
from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round, curate_tables, hooked_rules, prepare_rule_parts
from engine.curate.fusion import file_label_vocabulary
from engine.curate.partition_io import global_trails, read_partition, write_curated, write_trails
from engine.curate.partition_plan import Plan, make_plan
from engine.curate.review_state import review_state
from engine.curate.summary import SUMMED_KEYS, round_summary, summary_counts
from filters.base import StateFiles, filter_spec
from storage.atomic import remove_path, write_bytes_atomic, write_text_atomic
from storage.layout import DataRoot

#: the version of the working folder's layout (a plan of another version is made again)
WORK_VERSION = 1
GLOBALS_FILE = "globals.pkl"
CURATE = "curate"

#: ``run(task, pending)``: runs ``run_task`` for each pending partition (here or on Beam)
Runner = Callable[[str, list[int]], None]


def curate_partitioned(root: DataRoot, round_: int, config: CurationConfig, rows_per_part: int = 1_000_000,
                       runner: Runner | None = None) -> dict[str, Any]:
    """Curate round ``round_`` in partitions of about ``config.partition_rows`` rows (see the
    module docstring); ``runner`` runs a task's pending partitions (default: here, one after
    another). Returns the round's summary."""
    started = time.perf_counter()
    work = root.curation_work(round_)
    producing = _producers(root, round_)
    recorded = recorded_thresholds(root)
    calibrated, new_box = applied(recorded, producing), applied(recorded, producing, NEW_BOX_KEY)
    reviews = review_state(root, round_)
    fingerprint = _fingerprint(root, round_, config, rows_per_part, calibrated, new_box)
    plan = Plan.load(work)
    if plan is None or plan.fingerprint != fingerprint:
        remove_path(work, ignore_errors=True)
        work.mkdir(parents=True)
        plan = make_plan(root, round_, config.partition_rows, fingerprint, work)
        vocabulary = (file_label_vocabulary([root.path / f for f in plan.previous_files])
                      if config.merge.uses_label_vocabulary else None)
        write_bytes_atomic(pickle.dumps({"calibrated": calibrated, "new_box": new_box, "reviews": reviews,
                                         "vocabulary": vocabulary}), work / GLOBALS_FILE)
        plan.save(work)  # last: a plan on disk is complete
    if not plan.partitions:  # nothing to curate nor carry: the in-process curation writes the empty round
        return curate_round(root, round_, config, rows_per_part)
    run = runner or (lambda task, pending: [run_task(root, round_, config.to_dict(used_only=True), rows_per_part, task, p)
                                            for p in pending])
    every = range(len(plan.partitions))
    for rule in _hooked(config, reviews, plan):
        files = filter_spec(rule).state_files
        if not _state_file(work, rule, files).exists():
            run(_prepare_task(rule), [p for p in every if not _part_file(work, rule, p, files).exists()])
            if files is not None:  # out of core: each partition later reads its own share
                files.combine([_part_file(work, rule, p, files) for p in every], _state_file(work, rule, files),
                              work / "scratch")
                continue
            parts = [part for p in every for part in pickle.loads(_part_file(work, rule, p).read_bytes())]
            write_bytes_atomic(pickle.dumps(filter_spec(rule).combine(parts)), _state_file(work, rule))
            del parts
    run(CURATE, [p for p in every if not _done_file(work, p).exists()])
    done = [json.loads(_done_file(work, p).read_text()) for p in every]
    counts = {key: _sum([d["counts"][key] for d in done]) for key in SUMMED_KEYS}
    summary = round_summary(round_, counts, reviews, calibrated, new_box)
    summary["decision_parts"], summary["curated_parts"] = _switch(root, round_, work, done)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    write_text_atomic(json.dumps(summary, indent=2), root.curated(round_) / "_summary.json")
    remove_path(work, ignore_errors=True)
    return summary


def run_task(root: DataRoot | str, round_: int, config: dict[str, Any], rows_per_part: int, task: str,
             index: int) -> None:
    """Run ``task`` (:data:`CURATE`, or a hooked rule's prepare pass) over partition ``index``
    of the round's saved plan, writing its outputs under the working folder (idempotent)."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
    curation = CurationConfig.from_dict(config)
    work = root.curation_work(round_)
    plan = Plan.load(work)
    if plan is None:
        raise RuntimeError(f"no curation plan in {work}; the round's curation was restarted or finished")
    saved = pickle.loads((work / GLOBALS_FILE).read_bytes())
    hooked = _hooked(curation, saved["reviews"], plan)
    until = hooked.index(task.removeprefix("prepare:")) if task != CURATE else len(hooked)
    given = {rule: _given_state(work, rule, index) for rule in hooked[:until]}
    data = read_partition(root, plan, plan.partitions[index], work)
    if task != CURATE:
        rule = hooked[until]
        parts = prepare_rule_parts(data.raw, data.previous, data.images, curation, rule,
                                   saved["calibrated"], saved["reviews"], given)
        files = filter_spec(rule).state_files
        if files is not None:
            files.write(parts, index, _part_file(work, rule, index, files))
        else:
            write_bytes_atomic(pickle.dumps(parts), _part_file(work, rule, index))
        return
    curated, trails = curate_tables(data.raw, data.previous, data.images, curation, round_, decoded=False,
                                    calibrated=saved["calibrated"], new_box_thresholds=saved["new_box"],
                                    reviews=saved["reviews"], prepared=given, label_vocabulary=saved["vocabulary"])
    counts = summary_counts(data.raw.num_rows, data.previous.num_rows if data.previous is not None else 0,
                            curated.num_rows, trails)
    names = {"curated": write_curated(work / "curated", index, curated, data, plan, rows_per_part),
             "decisions": write_trails(work / "decisions", index,
                                       global_trails(trails, data, int(plan.raw_offsets[-1])), rows_per_part)}
    write_text_atomic(json.dumps({"counts": counts, **names}), _done_file(work, index))  # last


def _hooked(config: CurationConfig, reviews: Any, plan: Plan) -> tuple[str, ...]:
    """The rules whose state is prepared over every partition first: none when there is one
    partition (it holds the whole round, and ``curate_tables`` prepares over it)."""
    return hooked_rules(config, reviews) if len(plan.partitions) > 1 else ()


def _prepare_task(rule: str) -> str:
    return f"prepare:{rule}"


def _state_file(work: Path, rule: str, files: StateFiles | None = None) -> Path:
    """The rule's combined state: one pickle, or (``files``) the folder of every partition's share."""
    return work / "prepared" / (f"{rule}.state" if files is not None else f"{rule}.pkl")


def _part_file(work: Path, rule: str, index: int, files: StateFiles | None = None) -> Path:
    return work / "prepared" / rule / f"part-{index:05d}.{'parquet' if files is not None else 'pkl'}"


def _given_state(work: Path, rule: str, index: int) -> Any:
    """The state of hooked rule ``rule`` that partition ``index`` is given."""
    files = filter_spec(rule).state_files
    if files is not None:
        return files.read(_state_file(work, rule, files), index)
    return pickle.loads(_state_file(work, rule).read_bytes())


def _done_file(work: Path, index: int) -> Path:
    return work / "done" / f"part-{index:05d}.json"


def _sum(values: list[Any]) -> Any:
    """Counts summed; dicts of counts summed per key."""
    if values and isinstance(values[0], dict):
        out: dict[str, int] = {}
        for value in values:
            for key, count in value.items():
                out[key] = out.get(key, 0) + count
        return out
    return sum(values)


def _switch(root: DataRoot, round_: int, work: Path, done: list[dict[str, Any]]) -> tuple[int, int]:
    """Move the staged parts in (atomic renames), then remove every other part; returns the
    numbers of decision and curated parts. Re-running it after a kill finishes the move."""
    (root.curated(round_) / "_summary.json").unlink(missing_ok=True)  # present only beside a complete set
    counts = {}
    for name, folder in (("curated", root.curated(round_)), ("decisions", root.decisions(round_))):
        folder.mkdir(parents=True, exist_ok=True)
        names = [n for d in done for n in d[name]]
        for n in names:
            if (work / name / n).exists():
                os.replace(work / name / n, folder / n)
            elif not (folder / n).exists():
                raise RuntimeError(f"curation part {n} is neither staged in {work / name} nor in {folder}")
        for stale in set(folder.glob("part-*.parquet")) - {folder / n for n in names}:
            stale.unlink()
        counts[name] = len(names)
    return counts["decisions"], counts["curated"]


def _producers(root: DataRoot, round_: int) -> dict[str, set[str]]:
    """``{source: {source_version, ...}}`` of every raw row of the round (two columns scanned)."""
    files = sorted(str(p) for p in root.annotations(round_).glob("source=*/shard=*.parquet"))
    out: dict[str, set[str]] = {}
    if files:
        with duckdb.connect() as con:
            for source, version in con.execute(
                    "select distinct source, source_version from read_parquet(?, union_by_name = true) "
                    "where source is not null and source_version is not null", [files]).fetchall():
                out.setdefault(source, set()).add(version)
    return out


def _fingerprint(root: DataRoot, round_: int, config: CurationConfig, rows_per_part: int,
                 calibrated: dict[str, float], new_box: dict[str, float]) -> str:
    """What a plan and its finished partitions depend on: the files read (path, size, mtime),
    the config (but where partitions run), the part size and the thresholds."""
    def stats(paths: list[Path]) -> list[tuple[str, int, int]]:
        return [(str(p.relative_to(root.path)), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(paths, key=str)]

    curation = {k: v for k, v in config.to_dict(used_only=True).items() if k != "partition_runner"}
    files = [*root.annotations(round_).glob("source=*/shard=*.parquet"), *root.images.glob("part-*.parquet"),
             *(root.curated(round_ - 1).glob("part-*.parquet") if round_ > 0 else []),
             *(root.path / "reviews").glob("import=*/*")]
    payload = [WORK_VERSION, round_, curation, rows_per_part, stats(files), sorted(calibrated.items()),
               sorted(new_box.items())]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
