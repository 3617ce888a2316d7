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
