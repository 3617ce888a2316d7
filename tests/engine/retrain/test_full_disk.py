"""A full disk while a model is saved leaves no temp folder, and the CLI says what to do in one line."""

from __future__ import annotations

import errno

import pytest

from engine.cli import os_error_line
from engine.retrain.train import save_checkpoint, save_final


class FullDisk:
    """Writes one file, then the disk is full."""

    def save_pretrained(self, folder):
        (folder / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_no_temp_folder(tmp_path):
    out = tmp_path / "round=0"
    out.mkdir()
    with pytest.raises(OSError):
        save_final(FullDisk(), FullDisk(), out)
    assert list(out.iterdir()) == []
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(OSError):
        save_checkpoint(checkpoints, 5, FullDisk(), FullDisk(), {}, keep=2)
    assert list(checkpoints.iterdir()) == []


def test_os_errors_read_as_what_to_do():
    line = os_error_line(OSError(errno.ENOSPC, "No space left on device"))
    assert "disk is full" in line and "run the same command again" in line and "\n" not in line
    assert "read-only" in os_error_line(OSError(errno.EROFS, "Read-only file system", "/data"))
    assert os_error_line(OSError(errno.EIO, "I/O error")) == "[Errno 5] I/O error"


def test_a_read_only_root_is_one_line_for_every_command(tmp_path, monkeypatch, capsys):
    """A read-only root (simulated: this suite may run as root, whom permissions do not stop)."""
    from flows.main import main
    from storage.catalog import Catalog
    from storage.layout import DataRoot

    root = tmp_path / "root"
    Catalog(DataRoot(root)).close()  # a real (empty) root, then it turns read-only

    def read_only(self, kind="root"):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(DataRoot, "ensure", read_only)
    assert main(["stats", "--root", str(root)]) == 0  # reading needs no write: it works
    capsys.readouterr()
    for argv in (["dashboard", "--root", str(root)],
                 ["release", "build", "--root", str(root), "--round", "0", "--name", "r"],
                 ["ingest", "--root", str(root), str(tmp_path)]):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (argv, err)
        assert "read-only" in err[0].lower() or "no annotations" in err[0] or "no curated set" in err[0], (argv, err)


def test_a_broken_catalog_file_is_one_line(tmp_path, capsys):
    from flows.main import main

    root = tmp_path / "root"
    root.mkdir()
    (root / "catalog.duckdb").write_bytes(b"not a database")
    assert main(["stats", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be opened" in err[0], err
