"""Issue 30, class 10, replayed through ``tests/hostile/cases_config_and_roots.py``: every wrong
config value is one line naming its full dotted key (nan/inf, out-of-range integers, unknown task
and metric names, an empty rule list, a missing plugin, list items of the wrong type);
``fld demo --fresh`` deletes only what the engine made; a refused run leaves no ``.round.lock``
in a folder that is not a data root; ``--round`` must be the next round or an existing one; the
model version ignores the records written beside the weights."""

from __future__ import annotations

import json

import pytest

from tests.hostile import cases_config_and_roots as cases


@pytest.mark.parametrize("name", list(cases.CONFIG_PROBES))
def test_a_wrong_config_value_is_one_line_naming_its_full_key(tmp_path, name):
    assert cases.run_case(name, tmp_path, cases.in_process) == "ok"


@pytest.mark.parametrize("name", [n for n, c in cases.CASES.items() if c.in_process])
def test_roots_and_versions_in_process(tmp_path, name):
    assert cases.run_case(name, tmp_path, cases.in_process) == "ok"


@pytest.mark.parametrize("name", [n for n, c in cases.CASES.items() if not c.in_process])
def test_roots_through_the_real_fld(tmp_path, name):
    assert cases.run_case(name, tmp_path, cases.subprocess_runner) == "ok"


def _rounds(tmp_path, status: dict[int, str]):
    from storage.catalog import Catalog
    from storage.layout import DataRoot

    root = DataRoot(tmp_path / "root")
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": r, "status": s} for r, s in status.items()])
    return root


@pytest.mark.parametrize("status, allowed, refused", [
    ({}, [0], [1, 5, -1]),
    ({0: "done", 1: "done"}, [0, 1, 2], [3, 5, -1]),
    ({0: "done", 1: "failed"}, [0, 1], [2, 5]),  # the unfinished round 1 comes first
])
def test_a_round_number_is_the_next_round_or_an_existing_one(tmp_path, status, allowed, refused):
    from engine.rounds.loop import check_round_number, next_round

    root = _rounds(tmp_path, status)
    for round_ in allowed:
        check_round_number(root, round_)
    for round_ in refused:
        with pytest.raises(ValueError, match=f"--round {round_}: .*round {next_round(root)} is next"):
            check_round_number(root, round_)


def test_the_loop_reads_its_metric_from_the_new_models_metrics(tmp_path):
    """``loop.metric`` names a metric of the round's new model, which the models table records
    under ``new`` (``engine.retrain.promote.record``): early stopping must see it."""
    from engine.rounds.loop import metric_history
    from storage.catalog import Catalog
    from storage.schema import utc_now

    root = _rounds(tmp_path, {0: "done", 1: "done"})
    with Catalog(root) as catalog:
        catalog.upsert("models", [
            {"round": r, "path": f"/m/{r}", "version": f"m{r}", "promoted": True, "reason": "", "created_at": utc_now(),
             "metrics": json.dumps({"round": r, "metric": "val_loss", "new": {"val_loss": v}, "current": {}})}
            for r, v in ((0, 1.5), (1, 0.75))])
    assert metric_history(root, "val_loss") == [(0, 1.5), (1, 0.75)]


def test_fresh_still_empties_a_demo_root_of_what_the_engine_made(tmp_path):
    from engine.demo.fresh import clear_demo_root
    from storage.layout import DataRoot

    root = DataRoot(tmp_path / "demo").ensure(kind="demo")
    for folder in ("images", "models/round=0", "sample", "spacy-demo", ".engine"):
        (root.path / folder).mkdir(parents=True)
    for file in ("catalog.duckdb", "demo.toml", "sample/ground_truth.json", ".engine/catalog.duckdb"):
        (root.path / file).write_text("")
    assert clear_demo_root(root) == [".engine/", "catalog.duckdb", "demo.toml", "images/", "models/", "sample/",
                                     "spacy-demo/"]
    assert sorted(p.name for p in root.path.iterdir()) == [".fld-root", ".round.lock"]


def test_every_path_of_the_layout_is_a_known_top_level_entry(tmp_path):
    """``--fresh`` and the root check know the engine's entries from ``LAYOUT_ENTRIES``: every path
    ``DataRoot`` gives must start with one of them, or a new folder would count as the user's."""
    import inspect
    import typing
    from pathlib import Path

    from storage.layout import LAYOUT_ENTRIES, DataRoot

    root = DataRoot(tmp_path)
    paths = []
    for name, member in inspect.getmembers(DataRoot):
        if isinstance(member, property) and isinstance(getattr(root, name), Path):
            paths.append(getattr(root, name))
        elif inspect.isfunction(member) and typing.get_type_hints(member).get("return") is Path:
            arguments = [0 if p.annotation in (int, "int") else "x"
                         for p in list(inspect.signature(member).parameters.values())[1:]]
            paths.append(member(root, *arguments))
    assert len(paths) > 10
    assert {p.relative_to(root.path).parts[0] for p in paths} <= LAYOUT_ENTRIES
