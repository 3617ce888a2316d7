"""engine.rounds.lock: a second run refuses; a crashed holder's lock is taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from engine.rounds.lock import RoundBusy, RoundLock
from storage.layout import DataRoot


def test_second_holder_is_refused_with_the_holder_named(tmp_path):
    root = DataRoot(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".round.lock").write_text(json.dumps(
            {"pid": sleeper.pid, "host": RoundLock(root).owner["host"], "purpose": "round", "started": time.time()}))
        with pytest.raises(RoundBusy, match=f"pid {sleeper.pid}"):
            RoundLock(root).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with RoundLock(root):  # its holder is dead now: the lock is stale and taken over
        assert json.loads((tmp_path / ".round.lock").read_text())["pid"] != sleeper.pid
    assert not (tmp_path / ".round.lock").exists()


def test_old_lock_is_stale_and_unreadable_lock_is_stale(tmp_path):
    root = DataRoot(tmp_path)
    (tmp_path / ".round.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time() - 10}))
    with pytest.raises(RoundBusy):
        RoundLock(root).acquire()
    with RoundLock(root, stale_after=5):
        pass
    (tmp_path / ".round.lock").write_text("{not json")
    with RoundLock(root):
        pass


def test_lock_is_released_on_error(tmp_path):
    root = DataRoot(tmp_path)
    with pytest.raises(ValueError):
        with RoundLock(root):
            raise ValueError("step failed")
    with RoundLock(root):
        pass
