"""Command-line pieces the benchmarks share: a parser whose errors are one line, and flag types."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Sequence


class OneLineParser(argparse.ArgumentParser):
    """Refuses a bad flag with one line naming the benchmark (and exit status 2), not the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def json_child(argv: Sequence[str], cwd: Path, quiet: bool = False) -> tuple[dict, int]:
    """Run ``argv`` (a child that prints one JSON object as its last stdout line); returns that object
    and the peak resident memory of its process tree in bytes, sampled every 50 ms with psutil."""
    import psutil

    process = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, text=True,
                               stderr=subprocess.DEVNULL if quiet else None)
    parent, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"child failed ({process.returncode}): {out[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak
