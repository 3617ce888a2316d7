"""Prefect's temporary API server goes when the fld process that started it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil

from flows.server_guard import WATCHDOG, guarded_args
from storage.layout import DataRoot
from tests.flows.conftest import fld_process, kill_run, write_config


def test_only_the_uvicorn_command_is_wrapped():
    args = [sys.executable, "-m", "uvicorn", "--port", "1"]
    assert guarded_args(args) == [sys.executable, "-c", WATCHDOG, "--port", "1"]
    assert guarded_args([sys.executable, "-m", "other"]) == [sys.executable, "-m", "other"]


def _server_of(process: psutil.Process) -> psutil.Process | None:
    for child in process.children(recursive=True):
        try:
            if "uvicorn" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_a_killed_round_leaves_no_prefect_server(tmp_path, tiny_sample):
    config = write_config(tmp_path / "engine.toml", tiny_sample, max_steps=2000)
    root = DataRoot(tmp_path / "root")
    run = fld_process("round", "--root", str(root.path), "--config", str(config))
    try:
        main = psutil.Process(run.pid)
        server = None
        deadline = time.time() + 300
        while server is None and time.time() < deadline and run.poll() is None:
            server = _server_of(main)
            time.sleep(0.2)
        assert server is not None, "the round never started Prefect's server"
        os.kill(run.pid, signal.SIGKILL)  # the main process alone, as `kill -9 PID` does
        run.wait(timeout=60)
        gone = psutil.wait_procs([server], timeout=30)[0]
        assert gone, f"Prefect's server {server.pid} outlived its parent"
    finally:
        kill_run(run)
