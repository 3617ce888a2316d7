"""Hostile cases of review import and release (issue 30, classes 3b, 4, 9 and part of 10), replayable.

:func:`run_all` builds one small root once (8 sample images, round 0 curated, a review queue of
2 images exported as Label Studio tasks, release ``r0``), copies it per case and runs the real
``fld`` beside this interpreter in a subprocess (memory capped at :data:`MEMORY_LIMIT_BYTES`, a
:data:`TIMEOUT_S` limit); each case gives ``(name, outcome)``:

* ``ok``: refused with one line (exit 2) naming the file, the task and the field, nothing
  written; or handled correctly;
* ``traceback``: a traceback or a crash (a signal, such as pycocotools' segfault);
* ``accepted-bad``: the bad input went in, or a refusal that is not one line naming what it must;
* ``hang``: the command ran past :data:`TIMEOUT_S`.

The tests run the same cases through :func:`in_process` (``engine.cli.main`` in the test's own
process) except those marked ``isolate`` (a regression there could take the process down).
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT_OF_REPO = Path(__file__).resolve().parents[2]
if str(ROOT_OF_REPO) not in sys.path:  # the fixtures' helpers live under tests/
    sys.path.insert(0, str(ROOT_OF_REPO))

from tests.hostile.fld_runs import FLD, TIMEOUT_S, Result, Runner, crashed, fld_in_process, fld_subprocess  # noqa: E402,F401
from tests.hostile.fld_runs import refused as fld_refused  # noqa: E402

MEMORY_LIMIT_BYTES = 4 << 30  # address space of a probed fld (the NaN point once grew to 17 GB)
#: the curation these roots use: the defaults but the caption parser's (no spaCy pipeline needed)
CURATE_TOML = "[curation]\nrules = [{}]\n"


def subprocess_runner(args: list[str]) -> Result:
    """``fld ARGS`` in a child process with a time limit and capped memory."""
    return fld_subprocess(args, MEMORY_LIMIT_BYTES)


def in_process(args: list[str]) -> Result:
    """``engine.cli.main(ARGS)`` in this process, its output captured (an escaping exception is a traceback)."""
    return fld_in_process(args, "engine.cli")


# ----------------------------------------------------------------------------- the base root
@dataclass(frozen=True)
class Base:
    """The root every case copies, its exported tasks (round 0) and the curation config file."""

    root: Path
    tasks: list[dict[str, Any]]
    config: Path


def build_base(workdir: Path) -> Base:
    """Round 0 curated on 8 images (2 with a reason to review), a review queue of 2 exported, release ``r0``
    built (in this process)."""
    from engine.curate.config import CurationConfig
    from engine.release.build import ReleaseConfig, build_release
    from engine.review.config import ReviewConfig
    from engine.review.export import export_label_studio
    from engine.review.plan import plan_review, round_thresholds
    from tests.engine.review.data import CURATION, reviewed_root

    workdir = Path(workdir)
    root, _ = reviewed_root(workdir / "base", images=8)
    plan_review(root, 0, 2, round_thresholds(root, 0, CurationConfig().confidence), ReviewConfig())
    export_label_studio(root, 0, workdir / "base" / "label-studio")
    build_release(root, 0, "r0", ReleaseConfig())
    config = workdir / "base" / "curation.toml"
    config.write_text(CURATE_TOML.format(", ".join(json.dumps(r) for r in CURATION.rules)))
    tasks = json.loads((workdir / "base" / "label-studio" / "tasks.json").read_text())
    return Base(root.path, tasks, config)


def _copy(base: Base, case_dir: Path) -> Path:
    root = case_dir / "root"
    shutil.copytree(base.root, root, symlinks=True)
    return root


# --------------------------------------------------------------------------- classification
def refused(result: Result, *needles: str) -> str:
    """``ok`` when exit 2 and one line on stderr holding every needle (case-insensitive);
    else accepted, or refused without one line naming what it must."""
    return fld_refused(result, *needles, case_sensitive=False)


def _imports(root: Path) -> list[Path]:
    return sorted((root / "reviews").glob("import=*/import.json"))


def _human_rows(root: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return [r for path in sorted(root.glob("annotations/round=*/source=human/*.parquet"))
            for r in pq.read_table(path).to_pylist()]


# ----------------------------------------------------------------------- the exports people make
def _export(base: Base, edits: dict[int, Callable[[list[dict]], list[dict]]]) -> list[dict[str, Any]]:
    from tests.engine.review.people import export_of

    return export_of(copy.deepcopy(base.tasks), edits)  # export_of shares each task's data


def _first(result: list[dict], control: str) -> dict:
    return next(item for item in result if item["from_name"] == control)


def _kept(result: list[dict]) -> list[dict]:
    return result


def _drawn(result: list[dict]) -> list[dict]:
    """A person draws one new box (a human row if imported)."""
    width, height = result[0]["original_width"], result[0]["original_height"]
    return result + [{"id": "drawn-1", "from_name": "object", "to_name": "image", "type": "rectanglelabels",
                      "original_width": width, "original_height": height,
                      "value": {"x": 1, "y": 1, "width": 10, "height": 10, "rotation": 0,
                                "rectanglelabels": ["circle"]}}]


def _with_polygon(points: list) -> Callable[[list[dict]], list[dict]]:
    """A person redraws the first object's mask with ``points`` (percent of the image)."""
    def edit(result: list[dict]) -> list[dict]:
        first = _first(result, "object")
        return result + [{"id": first["id"] + ":mask", "from_name": "mask", "to_name": "image",
                          "type": "polygonlabels", "original_width": first["original_width"],
                          "original_height": first["original_height"],
                          "value": {"points": points, "polygonlabels": first["value"]["rectanglelabels"]}}]
    return edit


def _set_value(control: str, key: str, value: Any) -> Callable[[list[dict]], list[dict]]:
    def edit(result: list[dict]) -> list[dict]:
        _first(result, control)["value"][key] = value
        return result
    return edit


def _task_edit(edit: Callable[[list[dict]], list[dict]]) -> Callable[[Base], list[dict]]:
    return lambda base: _export(base, {0: edit})


def _data_edit(key: str, value: Any) -> Callable[[Base], list[dict]]:
    def make(base: Base) -> list[dict]:
        export = _export(base, {0: _kept})
        for task in export:
            task["data"][key] = value
        return export
    return make


def _annotation_edit(key: str, value: Any) -> Callable[[Base], list[dict]]:
    def make(base: Base) -> list[dict]:
        export = _export(base, {0: _kept})
        if key == "annotations":
            export[0]["annotations"] = value
        else:
            export[0]["annotations"][0][key] = value
        return export
    return make


@dataclass(frozen=True)
class ImportProbe:
    """An export a person could hand ``fld review import`` and the field its refusal must name
    (``text``: the raw file instead of JSON of ``make``); ``isolate``: run in a child process only."""

    make: Callable[[Base], Any]
    field: str
    isolate: bool = False
    raw: bool = False
    task: bool = True


#: name -> a bad export that must be refused with one line naming the file, the task and the field
IMPORT_PROBES: dict[str, ImportProbe] = {
    # 3b: memory bombs of a polygon
    "point_nan": ImportProbe(_task_edit(_with_polygon([[float("nan"), 1], [10, 10], [20, 5]])), "points", isolate=True),
    "points_far_outside": ImportProbe(_task_edit(_with_polygon([[-1e6, 1], [1e9, 5], [30, 1e12]])), "points",
                                      isolate=True),
    "points_too_many": ImportProbe(_task_edit(_with_polygon([[10 + (i % 80), 10 + (i % 7)] for i in range(300_000)])),
                                   "points", isolate=True),
    # 4: non-finite values
    "x_nan": ImportProbe(_task_edit(_set_value("object", "x", float("nan"))), "value.x"),
    "width_infinity": ImportProbe(_task_edit(_set_value("object", "width", float("inf"))), "value.width"),
    # 9: types
    "round_float": ImportProbe(_data_edit("fld_round", 2.7), "fld_round"),
    "round_string": ImportProbe(_data_edit("fld_round", "0"), "fld_round"),
    "round_null": ImportProbe(_data_edit("fld_round", None), "fld_round"),
    "round_list": ImportProbe(_data_edit("fld_round", [0]), "fld_round"),
    "round_infinity": ImportProbe(_data_edit("fld_round", float("inf")), "fld_round"),
    "annotations_string": ImportProbe(_annotation_edit("annotations", "abc"), "annotations"),
    "result_object": ImportProbe(_annotation_edit("result", {}), "result"),
    "x_null": ImportProbe(_task_edit(_set_value("object", "x", None)), "value.x"),
    "x_string": ImportProbe(_task_edit(_set_value("object", "x", "12.5")), "value.x"),
    "label_string": ImportProbe(_task_edit(_set_value("object", "rectanglelabels", "circle")), "rectanglelabels"),
    "label_number": ImportProbe(_task_edit(_set_value("object", "rectanglelabels", [5])), "rectanglelabels"),
    "label_unknown": ImportProbe(_task_edit(_set_value("object", "rectanglelabels", ["dragon"])), "rectanglelabels"),
    "caption_text_null": ImportProbe(_task_edit(_set_value("caption_brief", "text", [None])), "text"),
    "box_outside": ImportProbe(_task_edit(_set_value("object", "x", 250.0)), "value.x"),
    "image_id_foreign_all": ImportProbe(_data_edit("fld_image_id", "f" * 64), "not from this root", task=False),
    "deep_json": ImportProbe(lambda base: "[" * 200_000 + "]" * 200_000, "nested", raw=True, task=False),
}


def run_import_probe(name: str, base: Base, case_dir: Path, runner: Runner = subprocess_runner) -> str:
    probe = IMPORT_PROBES[name]
    root = _copy(base, case_dir)
    path = case_dir / f"{name}.json"
    made = probe.make(base)
    path.write_text(made if probe.raw else json.dumps(made))
    result = runner(["review", "import", "--root", str(root), str(path)])
    outcome = refused(result, path.name, probe.field, *(("task",) if probe.task else ()))
    if outcome == "ok" and (_imports(root) or _human_rows(root)):
        return "accepted-bad"  # refused, but something was written
    return outcome


# ------------------------------------------------------------------------------ other cases
def _import(root: Path, path: Path, export: Any, runner: Runner, **dump: Any) -> Result:
    path.write_text(json.dumps(export, **dump))
    return runner(["review", "import", "--root", str(root), str(path)])


def case_image_id_foreign_some(base: Base, case_dir: Path, runner: Runner) -> str:
    """Task 1 is of an image of another root (a box drawn on it): skipped and counted, task 0 imported."""
    root = _copy(base, case_dir)
    export = _export(base, {0: _kept, 1: _drawn})
    export[1]["data"]["fld_image_id"] = "e" * 64
    result = _import(root, case_dir / "mixed.json", export, runner)
    bad = crashed(result)
    if bad:
        return bad
    line = result.stdout.lower()
    if result.rc != 0 or "not in this root" not in line or any(r["image_id"] == "e" * 64 for r in _human_rows(root)):
        return "accepted-bad"
    return "ok"


def case_unmatched_rows_reported(base: Base, case_dir: Path, runner: Runner) -> str:
    """Rows shown that the reviewed round no longer holds: the import's line counts them."""
    root = _copy(base, case_dir)
    export = _export(base, {0: _kept})
    export[0]["data"]["fld_shown"] = export[0]["data"]["fld_shown"] + ["0" * 32, "1" * 32, "2" * 32]
    result = _import(root, case_dir / "unmatched.json", export, runner)
    bad = crashed(result)
    if bad:
        return bad
    return "ok" if result.rc == 0 and "3 rows shown" in result.stdout else "accepted-bad"


def case_reformatted_copy(base: Base, case_dir: Path, runner: Runner) -> str:
    """The same export pretty-printed with its keys in another order is the same review."""
    root = _copy(base, case_dir)
    export = _export(base, {0: _drawn})
    first = _import(root, case_dir / "compact.json", export, runner)
    reordered = [dict(reversed(list(task.items()))) for task in export]
    second = _import(root, case_dir / "pretty.json", reordered, runner, indent=3)
    bad = crashed(first) or crashed(second)
    if bad:
        return bad
    if first.rc != 0 or second.rc != 0 or "imported before" not in second.stdout or len(_imports(root)) != 1:
        return "accepted-bad"
    return "ok"


def _while_locked(root: Path, run: Callable[[], Result]) -> str:
    from engine.rounds.lock import RoundLock
    from storage.layout import DataRoot

    with RoundLock(DataRoot(root), purpose="hostile probe"):
        result = run()
    return refused(result, "hostile probe")


def case_curate_while_locked(base: Base, case_dir: Path, runner: Runner) -> str:
    """``fld curate`` while a round holds the root: one line, nothing curated."""
    root = _copy(base, case_dir)
    outcome = _while_locked(root, lambda: runner(["curate", "--root", str(root), "--round", "0",
                                                  "--config", str(base.config)]))
    return outcome


def case_import_while_locked(base: Base, case_dir: Path, runner: Runner) -> str:
    """``fld review import`` while a round holds the root: one line, nothing imported."""
    root = _copy(base, case_dir)
    path = case_dir / "export.json"
    path.write_text(json.dumps(_export(base, {0: _drawn})))
    outcome = _while_locked(root, lambda: runner(["review", "import", "--root", str(root), str(path)]))
    return "accepted-bad" if outcome == "ok" and _imports(root) else outcome


def case_nan_row_release(base: Base, case_dir: Path, runner: Runner) -> str:
    """A curated row with a NaN box (what an import of ``x: NaN`` once led to) released: the build
    refuses with one line and writes no release, or whatever it writes is strict JSON."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _copy(base, case_dir)
    table = pq.read_table(next((root / "curated" / "round=0").glob("*.parquet")))
    rows = table.to_pylist()
    region = next(r for r in rows if r["kind"] == "region" and r.get("bbox"))
    region["bbox"] = [float("nan"), *region["bbox"][1:]]
    (root / "curated" / "round=1").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), root / "curated" / "round=1" / "part-0.parquet")
    built = runner(["release", "build", "--root", str(root), "--round", "1", "--name", "r1"])
    bad = crashed(built)
    if bad:
        return bad
    folder = root / "releases" / "r1"
    if built.rc != 0:
        return "ok" if len(built.stderr.strip().splitlines()) == 1 and not folder.exists() else "accepted-bad"
    for path in sorted(folder.rglob("*.json")) + sorted(folder.rglob("*.jsonl")):
        for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            try:
                json.loads(line, parse_constant=_refuse_constant)
            except ValueError:
                return "accepted-bad"
    return "ok"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _release_copy(base: Base, case_dir: Path) -> tuple[Path, Path]:
    root = _copy(base, case_dir)
    return root, root / "releases" / "r0"


def case_verify_nested_manifest(base: Base, case_dir: Path, runner: Runner) -> str:
    """A file named manifest.json added under a release's data/: verify reports it."""
    root, release = _release_copy(base, case_dir)
    (release / "data").chmod(0o755)
    (release / "data" / "manifest.json").write_text("{}")
    result = runner(["release", "verify", "--root", str(root), "r0"])
    bad = crashed(result)
    if bad:
        return bad
    return "ok" if result.rc == 1 and "data/manifest.json: not in the manifest" in result.stdout else "accepted-bad"


def case_verify_folder_outside(base: Base, case_dir: Path, runner: Runner) -> str:
    """A release's copy outside the root's releases/, named by absolute path: refused with one line."""
    root, release = _release_copy(base, case_dir)
    elsewhere = case_dir / "elsewhere"
    shutil.copytree(release, elsewhere)
    return refused(runner(["release", "verify", "--root", str(root), str(elsewhere)]), "elsewhere", "releases")


def case_verify_dotdot_name(base: Base, case_dir: Path, runner: Runner) -> str:
    """A name that climbs out of releases/ (``../../elsewhere``): refused with one line."""
    root, release = _release_copy(base, case_dir)
    shutil.copytree(release, case_dir / "elsewhere")
    return refused(runner(["release", "verify", "--root", str(root), "../../elsewhere"]), "elsewhere", "releases")


def case_verify_release_path(base: Base, case_dir: Path, runner: Runner) -> str:
    """The release named by its own path under the root's releases/ verifies (a path a user may paste)."""
    root, release = _release_copy(base, case_dir)
    result = runner(["release", "verify", "--root", str(root), str(release)])
    bad = crashed(result)
    return bad or ("ok" if result.rc == 0 and "verified" in result.stdout else "accepted-bad")


#: name -> case (base, its own empty folder, runner) -> outcome
CASES: dict[str, Callable[[Base, Path, Runner], str]] = {
    "image_id_foreign_some": case_image_id_foreign_some,
    "unmatched_rows_reported": case_unmatched_rows_reported,
    "reformatted_copy": case_reformatted_copy,
    "curate_while_locked": case_curate_while_locked,
    "import_while_locked": case_import_while_locked,
    "nan_row_release": case_nan_row_release,
    "verify_nested_manifest": case_verify_nested_manifest,
    "verify_folder_outside": case_verify_folder_outside,
    "verify_dotdot_name": case_verify_dotdot_name,
    "verify_release_path": case_verify_release_path,
}


def run_case(name: str, base: Base, case_dir: Path, runner: Runner = subprocess_runner) -> str:
    """The outcome of one case (an import probe or another case) in its own empty ``case_dir``."""
    case_dir.mkdir(parents=True, exist_ok=True)
    if name in IMPORT_PROBES:
        return run_import_probe(name, base, case_dir, runner)
    return CASES[name](base, case_dir, runner)


def run_all(workdir: Path) -> list[tuple[str, str]]:
    """Every case through the real ``fld`` in subprocesses: ``[(probe name, outcome), ...]``."""
    workdir = Path(workdir)
    base = build_base(workdir / "base")
    return [(name, run_case(name, base, workdir / "cases" / name)) for name in [*IMPORT_PROBES, *CASES]]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for probe, outcome in run_all(Path(tmp)):
            print(f"{outcome:>13}  {probe}")
