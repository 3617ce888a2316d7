"""One command run as a child process, measured: wall seconds, CPU seconds and peak memory.

``measured_run`` starts the command, samples the resident memory of its whole process tree
(the command and every process it starts: Beam workers, Prefect's server) every ``poll_s``
seconds with psutil, and reaps it with ``os.wait4``, whose resource usage covers the command and
its reaped descendants: CPU seconds (user + system) and the kernel's peak RSS of the largest of
them, exact where the sampling may miss a short peak. Each poll also records the tree's CPU
seconds so far (its live processes' and the ones they reaped), so a caller can split the CPU
time at moments it knows (``cpu_at``). Bytes and seconds throughout.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import psutil


@dataclass(frozen=True)
class Measured:
    """``wall_s``: seconds from start to exit; ``cpu_s``: user + system CPU seconds of the tree;
    ``tree_peak``: the largest sampled sum of the tree's RSS (bytes); ``process_peak``: the
    kernel's peak RSS of its largest process (bytes); ``stdout``: what it printed; ``samples``:
    ``(seconds since the epoch, CPU seconds of the tree so far)`` at every poll; ``started_at`` /
    ``ended_at``: its start and its reaping, seconds since the epoch."""

    wall_s: float
    cpu_s: float
    tree_peak: int
    process_peak: int
    returncode: int
    stdout: str
    samples: tuple[tuple[float, float], ...] = ()
    started_at: float = 0.0
    ended_at: float = 0.0

    def cpu_at(self, moment: float) -> float:
        """CPU seconds of the tree at ``moment`` (seconds since the epoch): the total from its end
        on, else the last sample before it (0 before the first)."""
        if moment >= self.ended_at:
            return self.cpu_s
        before = [cpu for at, cpu in self.samples if at <= moment]
        return before[-1] if before else 0.0

    @property
    def peak(self) -> int:
        """Peak memory (bytes): the larger of the sampled tree sum and the largest process."""
        return max(self.tree_peak, self.process_peak)

    @property
    def cores(self) -> float:
        """Cores used on average: CPU seconds per wall second."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _tree_usage(parent: psutil.Process) -> tuple[int, float]:
    """RSS bytes of the live tree, and CPU seconds of the tree (live processes and those they reaped)."""
    rss, cpu = 0, 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system  # reaped: by their reaper
        except psutil.Error:  # ended between the listing and the reading
            pass
    return rss, cpu


def measured_run(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, poll_s: float = 0.1) -> Measured:
    """Run ``command`` (stderr to ``log``, stdout returned and also appended there) and measure it."""
    with open(log, "ab") as err:
        started, started_at = time.perf_counter(), time.time()
        child = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=err, env=dict(env or os.environ),
                                 cwd=cwd)
        watched, tree_peak, samples = psutil.Process(child.pid), 0, []
        out = bytearray()
        os.set_blocking(child.stdout.fileno(), False)
        while True:
            chunk = child.stdout.read()
            if chunk:
                out += chunk
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss, cpu = _tree_usage(watched)
                tree_peak = max(tree_peak, rss)
                samples.append((time.time(), cpu))
            except psutil.Error:
                pass
            time.sleep(poll_s)
        wall, ended_at = time.perf_counter() - started, time.time()
        out += child.stdout.read() or b""
        child.stdout.close()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        err.write(bytes(out))
    return Measured(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, tree_peak=tree_peak,
                    process_peak=usage.ru_maxrss * 1024, returncode=child.returncode, stdout=out.decode(errors="replace"),
                    samples=tuple(samples), started_at=started_at, ended_at=ended_at)
