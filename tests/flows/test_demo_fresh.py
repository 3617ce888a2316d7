"""``fld demo --fresh`` empties a demo's data root and refuses everything else in one line."""

from __future__ import annotations

import pytest

from engine.demo.fresh import FreshRefused, clear_demo_root
from engine.rounds.lock import RoundBusy
from flows.main import main
from storage.layout import DataRoot
from tests.engine.rounds.test_lock import _holder


def _demo_root(path):
    root = DataRoot(path).ensure(kind="demo")
    root.catalog.write_bytes(b"")
    (path / "sample").mkdir()
    (path / "sample" / "x.json").write_text("{}")
    return root


def test_a_users_folder_is_refused_and_kept(tmp_path, capsys):
    folder = tmp_path / "x"
    (folder / "sub").mkdir(parents=True)
    (folder / "important.txt").write_text("hi")
    code = main(["demo", "--fresh", "--root", str(folder), "--images", "8", "--rounds", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--fresh refused" in err[0] and "not a data root" in err[0]
    assert (folder / "important.txt").read_text() == "hi" and (folder / "sub").is_dir()


def test_a_real_data_root_is_refused(tmp_path):
    root = DataRoot(tmp_path / "real").ensure()  # kind "root": the user's data
    root.catalog.write_bytes(b"")
    (root.path / "releases").mkdir()
    with pytest.raises(FreshRefused, match="a data root with your data"):
        clear_demo_root(root)
    assert (root.path / "releases").is_dir()
    # a marker is only written into a new or empty folder: a used folder never becomes the engine's
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    DataRoot(used).ensure(kind="demo")
    assert DataRoot(used).kind() is None


def test_a_demo_root_is_emptied_but_its_lock_and_marker_stay(tmp_path):
    root = _demo_root(tmp_path / "demo")
    assert clear_demo_root(root) == ["catalog.duckdb", "sample/"]
    assert sorted(p.name for p in root.path.iterdir()) == [".fld-root", ".round.lock"]
    assert root.kind() == "demo"
    assert clear_demo_root(DataRoot(tmp_path / "missing")) == []
    # a demo root of an earlier version (no marker): known by what fld demo wrote into it
    old = tmp_path / "old-demo"
    (old / "sample").mkdir(parents=True)
    (old / ".engine").mkdir()
    for name in (".engine/catalog.duckdb", "catalog.duckdb", "demo.toml", "sample/ground_truth.json"):
        (old / name).write_text("")
    assert clear_demo_root(DataRoot(old)) == [".engine/", "catalog.duckdb", "demo.toml", "sample/"]


def test_a_demo_root_in_use_is_not_touched(tmp_path, capsys):
    root = _demo_root(tmp_path / "demo")
    holder = _holder(root.path)
    try:
        with pytest.raises(RoundBusy, match=f"pid {holder.pid}"):
            clear_demo_root(root)
        # the command refuses at once too, in one line, exit 2
        assert main(["demo", "--fresh", "--root", str(root.path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "running on this data root" in err[0], err
    finally:
        holder.kill()
        holder.wait()
    assert (root.path / "sample" / "x.json").exists() and root.catalog.exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--tasks", "OD,FOO"], "--tasks has unknown task(s) 'FOO'"),
    (["--tasks", "REGION_TO_SEGMENTATION"], "--tasks: REGION_TO_SEGMENTATION needs OD in the list"),
    (["--model", "no-such-model"], "--model no-such-model is not a checkpoint directory"),
])
def test_a_wrong_model_or_task_list_is_one_line_before_anything_is_made(tmp_path, capsys, args, says):
    code = main(["demo", "--root", str(tmp_path / "new"), "--images", "8", "--rounds", "1", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "new").exists()
