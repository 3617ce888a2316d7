"""engine.rounds.lock: one holder at a time, even among racers; a dead holder's lock is free at
once; an odd record in the lock file never blocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.rounds.lock import RoundBusy, RoundLock, refuse_if_busy
from storage.layout import DataRoot

REPO = Path(__file__).resolve().parents[3]


def _holder(root: Path, seconds: float = 60) -> subprocess.Popen:
    """A process that takes the lock, says so on stdout, and sleeps."""
    code = textwrap.dedent(f"""
        import sys, time
        from engine.rounds.lock import RoundLock
        from storage.layout import DataRoot
        lock = RoundLock(DataRoot({str(root)!r}), purpose="test holder")
        lock.acquire()
        print("held", flush=True)
        time.sleep({seconds})
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_the_holder_named_and_a_killed_holder_frees_it(tmp_path):
    root = DataRoot(tmp_path)
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RoundBusy, match=f"test holder is running on this data root \\(pid {holder.pid}"):
            RoundLock(root).acquire()
        with pytest.raises(RoundBusy):
            refuse_if_busy(root)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RoundLock(root):  # the kernel dropped the dead holder's lock: nothing stale to judge
        assert json.loads((tmp_path / ".round.lock").read_text())["pid"] == os.getpid()
    assert (tmp_path / ".round.lock").read_text() == ""  # released: no record left
    refuse_if_busy(root)


RACER = textwrap.dedent("""
    import os, sys, time
    from engine.rounds.lock import RoundBusy, RoundLock
    from storage.layout import DataRoot
    root, go, release = sys.argv[1], sys.argv[2], sys.argv[3]
    print("ready", flush=True)
    while not os.path.exists(go):  # every racer spins until the same moment
        pass
    try:
        lock = RoundLock(DataRoot(root))
        lock.acquire()
    except RoundBusy:
        print("busy", flush=True)
        sys.exit(0)
    print("held", flush=True)
    while not os.path.exists(release):  # hold it until every racer has answered
        time.sleep(0.01)
""")


def test_racers_never_hold_it_twice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for trial in range(6):
        root = tmp_path / f"trial{trial}"
        root.mkdir()
        go, release = tmp_path / f"go{trial}", tmp_path / f"release{trial}"
        racers = [subprocess.Popen([sys.executable, "-c", RACER, str(root), str(go), str(release)], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, text=True) for _ in range(4)]
        assert all(r.stdout.readline().strip() == "ready" for r in racers)
        go.touch()
        outcomes = sorted(r.stdout.readline().strip() for r in racers)
        release.touch()
        for racer in racers:
            racer.wait(timeout=60)
        assert outcomes == ["busy", "busy", "busy", "held"], (trial, outcomes)


def test_the_same_process_is_refused_until_it_releases_and_odd_records_never_block(tmp_path):
    root = DataRoot(tmp_path)
    first = RoundLock(root, purpose="round")
    with first:
        with pytest.raises(RoundBusy, match="this process already holds the round lock"):
            RoundLock(root).acquire()
        with pytest.raises(RoundBusy):
            first.acquire()
    with RoundLock(root):  # the way out: the first one released
        pass
    # a record naming this very process (PID reuse), garbage, or an old record: no holder, no block
    for record in (json.dumps({"pid": os.getpid(), "host": RoundLock(root).owner["host"], "started": 0}),
                   "{not json", json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()})):
        (tmp_path / ".round.lock").write_text(record)
        with RoundLock(root):
            pass


def test_lock_is_released_on_error(tmp_path):
    root = DataRoot(tmp_path)
    with pytest.raises(ValueError):
        with RoundLock(root):
            raise ValueError("step failed")
    with RoundLock(root):
        pass
