"""Hostile cases of the config and of data roots (issue 30, class 10), replayable.

Each case runs the real ``fld`` beside this interpreter (a :data:`TIMEOUT_S` limit) in its own
empty folder and gives ``(name, outcome)``:

* ``ok``: refused with one line (exit 2) naming the full dotted key (or option) and the bad
  value, nothing written or deleted; or handled correctly;
* ``traceback``: a traceback or a crash;
* ``accepted-bad``: the bad input went in, a user's file went away, the refusal is not one line
  naming what it must, or a refused run left files (a ``.round.lock``) behind;
* ``hang``: the command ran past :data:`TIMEOUT_S`.

Config cases fail at config load (``fld round --config BAD.toml``); root cases are ``fld demo
--fresh`` / ``fld demo`` / ``fld round`` on folders that are not (or not demonstrably) the
engine's; ``model_version_ignores_records`` calls ``hf.loading.checkpoint_version`` directly.
The tests run the cases marked ``in_process`` through :func:`in_process` (``fld``'s ``main`` in
the test's own process), the others in child processes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT_OF_REPO = Path(__file__).resolve().parents[2]
if str(ROOT_OF_REPO) not in sys.path:
    sys.path.insert(0, str(ROOT_OF_REPO))

from tests.hostile.fld_runs import FLD, TIMEOUT_S, Result, Runner, crashed, fld_in_process, fld_subprocess  # noqa: E402,F401
from tests.hostile.fld_runs import refused as fld_refused  # noqa: E402

#: a config that passes preflight with no data and no model download (a round of it does nothing useful)
MINIMAL_TOML = '[training]\nbase_model = "tiny"\n[curation]\nrules = ["image", "confidence"]\n[flow]\nretries = 0\n'


def subprocess_runner(args: list[str]) -> Result:
    """``fld ARGS`` in a child process with a time limit."""
    return fld_subprocess(args)


def in_process(args: list[str]) -> Result:
    """``flows.main.main(ARGS)`` in this process, its output captured (an escaping exception is a traceback)."""
    return fld_in_process(args, "flows.main")


def refused(result: Result, *needles: str) -> str:
    """``ok`` when exit 2 and one line on stderr holding every needle (case-sensitive: keys are)."""
    return fld_refused(result, *needles)


# ------------------------------------------------------------------------------ config cases
@dataclass(frozen=True)
class ConfigProbe:
    """A config file that ``fld round`` must refuse at load, in one line holding every needle."""

    toml: str
    needles: tuple[str, ...]


CONFIG_PROBES: dict[str, ConfigProbe] = {
    "curation_merge_key_named_in_full": ConfigProbe("[curation.merge]\niou_threshold = 2.0\n",
                                                    ("curation.merge.iou_threshold", "2.0")),
    "curation_section_value_named_in_full": ConfigProbe("[curation.confidence]\ndefault = 1.5\n",
                                                        ("curation.confidence.default", "1.5")),
    "training_tasks_unknown": ConfigProbe('[training]\ntasks = ["XYZ"]\n', ("training.tasks", "XYZ")),
    "training_tasks_not_strings": ConfigProbe("[training]\ntasks = [1]\n", ("training.tasks", "1")),
    "loop_metric_unknown": ConfigProbe('[loop]\nmetric = "no_such_metric"\n', ("loop.metric", "no_such_metric")),
    "float_nan": ConfigProbe("[loop]\nmin_improvement = nan\n", ("loop.min_improvement", "nan")),
    "float_inf": ConfigProbe("[flow]\nretry_delay_seconds = inf\n", ("flow.retry_delay_seconds", "inf")),
    "float_nan_in_a_table": ConfigProbe("[curation.nms]\nweights = { detector = nan }\n",
                                        ("curation.nms.weights.detector", "nan")),
    "float_nan_unbounded": ConfigProbe("[curation.phrase]\nmin_score = nan\n", ("curation.phrase.min_score", "nan")),
    "workers_20_digits": ConfigProbe("[runner]\nworkers = 12345678901234567890\n",
                                     ("runner.workers", "12345678901234567890")),
    "workers_absurd": ConfigProbe("[ingest]\nworkers = 1000000\n", ("ingest.workers", "1000000")),
    "seed_20_digits": ConfigProbe("[training]\nseed = 12345678901234567890\n", ("training.seed", "12345678901234567890")),
    "rules_empty": ConfigProbe("[curation]\nrules = []\n", ("curation.rules", "[]")),
    "plugin_missing": ConfigProbe('plugins = ["no_such_module"]\n', ("plugins", "no_such_module")),
    "sources_paths_not_strings": ConfigProbe("[sources]\npaths = [1, 2]\n", ("sources.paths", "1")),
    "runner_options_not_strings": ConfigProbe("[runner]\noptions = [3]\n", ("runner.options", "3")),
}


def run_config_probe(name: str, case_dir: Path, runner: Runner) -> str:
    probe = CONFIG_PROBES[name]
    config = case_dir / "bad.toml"
    config.write_text(probe.toml)
    result = runner(["round", "--root", str(case_dir / "root"), "--config", str(config)])
    outcome = refused(result, *probe.needles)
    if outcome == "ok" and (case_dir / "root").exists():
        return "accepted-bad"  # refused, but only after making the root
    return outcome


# -------------------------------------------------------------------------------- root cases
def _users_folder(path: Path) -> dict[Path, str]:
    """A folder of a user's own files (like ``~``); returns them with their contents."""
    files = {path / ".bashrc": "alias ll='ls -l'\n", path / "notes.txt": "mine\n",
             path / "photos" / "cat.txt": "a cat\n"}
    for file, text in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return files


def _intact(files: dict[Path, str]) -> bool:
    return all(f.is_file() and f.read_text() == text for f, text in files.items())


def _fake_demo(path: Path, marker: bool) -> dict[Path, str]:
    """What looks like a demo root at a glance (an empty catalog, demo.toml, the sample's ground
    truth, or a hand-written marker) with a user's files in it; returns the user's files."""
    files = _users_folder(path)
    (path / "catalog.duckdb").write_bytes(b"")
    if marker:
        (path / ".fld-root").write_text(json.dumps({"kind": "demo"}))
    else:
        (path / "demo.toml").write_text("")
        (path / "sample").mkdir()
        (path / "sample" / "ground_truth.json").write_text("{}")
    return files


def _demo_fresh_keeps(case_dir: Path, runner: Runner, marker: bool) -> str:
    folder = case_dir / "folder"
    files = _fake_demo(folder, marker)
    before = sorted(p.name for p in folder.iterdir())
    # --images 0 fails at once past the point where --fresh deletes: no demo is run either way
    result = runner(["demo", "--fresh", "--root", str(folder), "--images", "0", "--rounds", "1"])
    if not _intact(files) or sorted(p.name for p in folder.iterdir()) != before:
        return "accepted-bad"  # something was deleted or written
    return refused(result, "--fresh refused", "notes.txt")


def case_fresh_fake_demo_with_user_files(case_dir: Path, runner: Runner) -> str:
    return _demo_fresh_keeps(case_dir, runner, marker=False)


def case_fresh_hand_marker_with_user_files(case_dir: Path, runner: Runner) -> str:
    return _demo_fresh_keeps(case_dir, runner, marker=True)


def _refused_in_users_folder(case_dir: Path, runner: Runner, args: list[str]) -> str:
    """``fld ARGS --root HOME`` (HOME a user's folder) is refused in one line naming ``--root``,
    and leaves the folder as it was: no ``.round.lock``, no marker, no demo files."""
    home = case_dir / "home"
    files = _users_folder(home)
    before = sorted(p.name for p in home.iterdir())
    result = runner([*args, "--root", str(home)])
    if not _intact(files) or sorted(p.name for p in home.iterdir()) != before:
        return "accepted-bad"
    return refused(result, "--root", str(home))


def case_demo_fresh_in_home_leaves_no_lock(case_dir: Path, runner: Runner) -> str:
    return _refused_in_users_folder(case_dir, runner, ["demo", "--fresh", "--images", "0"])


def case_demo_in_home_leaves_no_lock(case_dir: Path, runner: Runner) -> str:
    return _refused_in_users_folder(case_dir, runner, ["demo", "--images", "0"])


def case_round_in_home_leaves_no_lock(case_dir: Path, runner: Runner) -> str:
    config = case_dir / "engine.toml"
    config.write_text(MINIMAL_TOML)
    return _refused_in_users_folder(case_dir, runner, ["round", "--config", str(config)])


def case_round_not_next_is_refused(case_dir: Path, runner: Runner) -> str:
    """Rounds 0 and 1 are done: ``--round 5`` is refused in one line saying round 2 is next."""
    from storage.catalog import Catalog
    from storage.layout import DataRoot

    root = DataRoot(case_dir / "root")
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": 0, "status": "done"}, {"round": 1, "status": "done"}])
    config = case_dir / "engine.toml"
    config.write_text(MINIMAL_TOML)
    result = runner(["round", "--root", str(root.path), "--config", str(config), "--round", "5"])
    outcome = refused(result, "--round", "5", "round 2")
    if outcome == "ok" and (root.path / "rounds" / "round=5").exists():
        return "accepted-bad"
    return outcome


def case_model_version_ignores_records(case_dir: Path, runner: Runner) -> str:
    """The same weights give the same version whatever timing, log or metrics files sit beside them."""
    from hf.loading import checkpoint_version

    model = case_dir / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "florence2"}')
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    before = checkpoint_version(model)
    for name, text in (("train_summary.json", '{"seconds": 12.5}'), ("metrics.json", '{"val_loss": 1.0}'),
                       ("evaluation.json", "{}"), ("train_log.tsv", "step\tloss\n"), ("train.log", "x"),
                       ("timings.txt", "1.0")):
        (model / name).write_text(text)
    first = checkpoint_version(model)
    (model / "train_summary.json").write_text('{"seconds": 99.0, "resumed_from": 4}')  # a resumed run
    (model / "timings.txt").write_text("2.0")
    if not before == first == checkpoint_version(model):
        return "accepted-bad"
    (model / "model.safetensors").write_bytes(bytes(range(255, -1, -1)) * 16)  # other weights
    return "ok" if checkpoint_version(model) != first else "accepted-bad"


def case_annotator_setting_not_finite(case_dir: Path, runner: Runner) -> str:
    """An annotator's number setting (checked by ``hf.settings.check_number``) refuses nan and inf,
    bounded or not: ``settings_from_kwargs`` is what preflight builds ``[annotators.NAME]`` with."""
    from annotators.segmenter import SegmenterSettings
    from hf.settings import settings_from_kwargs

    for key, value in (("mask_threshold", float("nan")), ("polygon_tolerance", float("inf"))):
        try:
            settings_from_kwargs(SegmenterSettings, {"model": "x", key: value}, "segmenter")
        except ValueError as exc:
            if key not in str(exc) or str(value) not in str(exc):
                return "accepted-bad"
        else:
            return "accepted-bad"
    return "ok"


@dataclass(frozen=True)
class Case:
    """A case (its own empty folder, runner) -> outcome; ``in_process``: the tests may run it in-process."""

    run: Callable[[Path, Runner], str]
    in_process: bool = True


CASES: dict[str, Case] = {
    "fresh_fake_demo_with_user_files": Case(case_fresh_fake_demo_with_user_files),
    "fresh_hand_marker_with_user_files": Case(case_fresh_hand_marker_with_user_files),
    "demo_fresh_in_home_leaves_no_lock": Case(case_demo_fresh_in_home_leaves_no_lock),
    "demo_in_home_leaves_no_lock": Case(case_demo_in_home_leaves_no_lock),
    "round_in_home_leaves_no_lock": Case(case_round_in_home_leaves_no_lock, in_process=False),
    "round_not_next_is_refused": Case(case_round_not_next_is_refused, in_process=False),
    "model_version_ignores_records": Case(case_model_version_ignores_records),
    "annotator_setting_not_finite": Case(case_annotator_setting_not_finite),
}


def run_case(name: str, case_dir: Path, runner: Runner = subprocess_runner) -> str:
    """The outcome of one case (a config probe or a root case) in its own empty ``case_dir``."""
    case_dir.mkdir(parents=True, exist_ok=True)
    if name in CONFIG_PROBES:
        return run_config_probe(name, case_dir, runner)
    return CASES[name].run(case_dir, runner)


def run_all(workdir: Path) -> list[tuple[str, str]]:
    """Every case through the real ``fld`` in subprocesses: ``[(probe name, outcome), ...]``."""
    workdir = Path(workdir)
    return [(name, run_case(name, workdir / name)) for name in [*CONFIG_PROBES, *CASES]]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for probe, outcome in run_all(Path(tmp)):
            print(f"{outcome:>13}  {probe}")
