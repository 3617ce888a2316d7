"""Replayable probes of issue 30: the first SIGINT (Ctrl-C) or SIGTERM stops ``fld round`` /
``fld loop`` at once, and the same command run again resumes and finishes without duplicates.

Each probe runs the real ``fld`` in a subprocess (its own session, a token in its environment so
every process it started can be found in ``/proc``) on a tiny sample, waits until the run is in
the step to hit (annotate: the ``started_probe`` plugin annotator created its file and waits;
train: the first training step was logged), sends the real signal (to the process, or to its
whole process group as a terminal's Ctrl-C does) and judges what follows:

* ``ok``: exit code 128 + signal within :data:`STOP_TIMEOUT` s, no traceback, the one line
  ``fld COMMAND: interrupted at STEP (round 0); run the same command to resume``, the round
  recorded ``interrupted`` at that step with no later step done, no next round, the lock free,
  no process of the run left; and the same command again exits 0 with every round done and each
  annotation once;
* ``traceback``: a traceback on stderr; ``hang``: no exit within the timeout (the run is then
  SIGKILLed with its group); ``accepted-bad``: anything else (a retry that went on, exit 0, a
  leftover process, a round that does not resume, ...).

``run_all(workdir)`` runs every probe of :data:`PROBES`; :func:`run_probe` runs one and also
returns what it found.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: seconds a signalled run may take to exit before it counts as a hang (detects hangs only)
STOP_TIMEOUT = 180
#: seconds a run may take to reach its step, or to finish when resumed (detects hangs only)
RUN_TIMEOUT = 900
RULES = ["image", "confidence", "geometry", "phrase_parent", "phrase_span", "phrase_blacklist", "phrase_confidence",
         "phrase_nms", "nms_source", "nms_cross", "region_text"]
ORDER = ["ingest", "annotate", "curate", "review", "train", "evaluate", "promote", "dashboard"]


@dataclass(frozen=True)
class Probe:
    """One interruption: ``command`` (round, loop of 2 rounds, or a demo of 8 images and 1 round),
    the signal's name, the step it hits, the Beam runner and whether the whole process group gets
    it (a terminal's Ctrl-C)."""

    command: str = "round"
    signal: str = "SIGINT"
    step: str = "annotate"
    runner: str = "direct"
    group: bool = False

    @property
    def name(self) -> str:
        where = "group" if self.group else "process"
        return f"{self.command}-{self.step}-{self.signal}-{self.runner}-{where}"

    @property
    def signum(self) -> int:
        return int(getattr(signal, self.signal))

    @property
    def rounds(self) -> int:
        return 2 if self.command == "loop" else 1

    def args(self, root: Path, config: Path) -> list[str]:
        """The ``fld`` command line (the demo makes its own sample and config)."""
        if self.command == "demo":
            return ["demo", "--root", str(root), "--images", "8", "--rounds", str(self.rounds)]
        args = [self.command, "--root", str(root), "--config", str(config)]
        return args + ["--rounds", str(self.rounds)] if self.command == "loop" else args


#: every probe :func:`run_all` runs
PROBES = [Probe(signal=s, step=step) for step in ("annotate", "train") for s in ("SIGINT", "SIGTERM")] + [
    Probe(signal="SIGINT", runner="direct-multiprocess", group=True),
    Probe(signal="SIGTERM", runner="direct-multiprocess"),
    Probe(command="loop", signal="SIGINT", group=True),
    Probe(command="loop", signal="SIGTERM"),
    Probe(command="demo", signal="SIGINT", step="train", group=True),
]


def tiny_sample(workdir: Path) -> Path:
    """12 synthetic images in 3 shards, with labels (made once per ``workdir``)."""
    from engine.demo.sample_data import SampleConfig, write_sample

    sample = workdir / "sample"
    if not (sample / "ground_truth.json").exists():
        write_sample(sample, SampleConfig(images=12, images_per_shard=4, seed=11))
    return sample


def write_config(work: Path, sample: Path, probe: Probe) -> Path:
    """Existing labels and the ``started_probe`` plugin; a tiny Florence-2 trained long enough
    (for a train probe) that the signal lands in training; retries on, as by default."""
    steps = 150 if probe.step == "train" else 4  # a signal after step 1 lands in training
    training = {"base_model": "tiny", "max_steps": steps, "save_every": 50, "batch_size": 4, "lr": 1e-3,
                "device": "cpu", "dtype": "fp32", "eval_fraction": 0.25, "max_new_tokens": 8,
                "eval_max_examples": 4, "loader_threads": 1, "ground_truth": str(sample / "ground_truth.json")}
    hold = work / "hold" if probe.step == "annotate" else work / "no-hold"
    lines = ['plugins = ["tests.hostile.interrupt_annotator"]',
             "[sources]", f"paths = {json.dumps([str(sample / 'shards')])}",
             "[annotators.coco_labels]", f"path = {json.dumps(str(sample / 'noisy_labels.json'))}",
             "[annotators.started_probe]", f"started = {json.dumps(str(work / 'started'))}",
             f"hold = {json.dumps(str(hold))}",
             "[runner]", f"name = {json.dumps(probe.runner)}", "workers = 2", "wave_size = 0",
             "[model]", "annotate_from_round = 99",
             "[curation]", f"rules = {json.dumps(RULES)}",
             "[loop]", f"rounds = {probe.rounds}", f"patience = {probe.rounds}",
             "[flow]", "retries = 2", "retry_delay_seconds = 0",
             "[training]"] + [f"{k} = {json.dumps(v)}" for k, v in training.items()]
    path = work / "engine.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Run:
    """``fld ARGS`` in a session of its own, its output collected by threads as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.process = subprocess.Popen([sys.executable, "-m", "flows.main", *args], env=env, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:  # noqa: ANN001
        for line in stream:
            lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None (after SIGKILLing the group) when it did not exit in time."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        for reader in self.readers:
            reader.join(timeout=30)
        return code

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)


def processes_with(token: str) -> list[str]:
    """``pid: command`` of every live process whose environment holds ``FLD_PROBE_TOKEN=token``."""
    found = []
    needle = f"FLD_PROBE_TOKEN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
                if status != "Z":  # a zombie has ended; its parent just did not reap it
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:120]
                    found.append(f"{entry.name}: {command!r}")
        except OSError:
            continue
    return found


def leftovers(token: str, timeout: float = 60) -> list[str]:
    """The processes of the run still alive after up to ``timeout`` s (they may take a moment)."""
    deadline = time.monotonic() + timeout
    while (alive := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def reached(run: Run, probe: Probe, work: Path) -> bool:
    """Wait until the run is in ``probe.step`` (False: it exited first, or never got there)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while run.process.poll() is None and time.monotonic() < deadline:
        if probe.step == "annotate" and (work / "started").exists():
            return True
        if probe.step == "train" and "train step 1:" in run.stderr:
            return True
        time.sleep(0.05)
    return False


def round_records(root: Path) -> tuple[list[tuple], set[str]]:
    """``[(round, status, step)]`` of the rounds table and the steps of round 0 recorded done."""
    from storage.catalog import Catalog
    from storage.layout import DataRoot

    with Catalog.reading(DataRoot(root)) as catalog:
        rounds = catalog.query("select round, status, step from rounds order by round")
        done = {step for (step,) in catalog.query("select step from round_steps where round = 0 and status = 'done'")}
    return [tuple(r) for r in rounds], done


def lock_is_free(root: Path) -> bool:
    from engine.rounds.lock import RoundBusy, RoundLock
    from storage.layout import DataRoot

    try:
        with RoundLock(DataRoot(root), purpose="probe"):
            return True
    except RoundBusy:
        return False


def duplicate_annotations(root: Path) -> int:
    """Annotation rows of round 0 whose id appears more than once."""
    import pyarrow.parquet as pq

    ids = [i for path in sorted((root / "annotations" / "round=0").rglob("*.parquet"))
           for i in pq.read_table(path, columns=["annotation_id"]).column(0).to_pylist()]
    return len(ids) - len(set(ids))


def _judge_stop(run: Run, code: int | None, probe: Probe, root: Path, token: str) -> tuple[str, str]:
    if code is None:
        return "hang", f"no exit {STOP_TIMEOUT} s after {probe.signal}"
    if "Traceback" in run.stderr:
        return "traceback", run.stderr[-3000:]
    line = f"fld {probe.command}: interrupted at {probe.step} (round 0); run the same command to resume"
    if code != 128 + probe.signum or line not in run.stderr.splitlines():
        return "accepted-bad", f"exit {code}; stderr tail: {run.stderr[-1500:]}"
    rounds, done = round_records(root)
    later = sorted(done & set(ORDER[ORDER.index(probe.step):]))
    if rounds != [(0, "interrupted", probe.step)] or later:
        return "accepted-bad", f"recorded {rounds}, steps done at or after {probe.step}: {later}"
    alive = leftovers(token)
    if alive:
        return "accepted-bad", f"left running: {alive}"
    if not lock_is_free(root):
        return "accepted-bad", "the round lock is still held"
    return "ok", ""


def _judge_resume(args: list[str], env: dict[str, str], probe: Probe, root: Path, token: str) -> tuple[str, str]:
    run = Run(args, env)
    code = run.wait(RUN_TIMEOUT)
    if code is None:
        return "hang", "the resumed run did not finish"
    if "Traceback" in run.stderr:
        return "traceback", run.stderr[-3000:]
    if code != 0:
        return "accepted-bad", f"the resumed run exited {code}: {run.stderr[-1500:]}"
    rounds, _ = round_records(root)
    if [(r, s) for r, s, _ in rounds] != [(r, "done") for r in range(probe.rounds)]:
        return "accepted-bad", f"after the resume: {rounds}"
    if duplicate_annotations(root):
        return "accepted-bad", f"{duplicate_annotations(root)} duplicate annotation rows"
    alive = leftovers(token)
    return ("accepted-bad", f"left running after the resume: {alive}") if alive else ("ok", "")


def run_probe(workdir: Path, probe: Probe, prefect_home: Path | None = None) -> tuple[str, str]:
    """Run ``probe`` in ``workdir / probe.name``; returns (outcome, what was wrong)."""
    work = workdir / probe.name
    shutil.rmtree(work, ignore_errors=True)  # a fresh root and no ``started`` file of an earlier try
    work.mkdir(parents=True)
    (work / "hold").touch()
    config = write_config(work, tiny_sample(workdir), probe)
    root = work / "root"
    token = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "FLD_PROBE_TOKEN": token,
           "PREFECT_HOME": str(prefect_home or workdir / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    args = probe.args(root, config)
    run = Run(args, env)
    try:
        if not reached(run, probe, work):
            code = run.wait(STOP_TIMEOUT)
            outcome = "traceback" if "Traceback" in run.stderr else "accepted-bad"
            return outcome, f"never in {probe.step} (exit {code}): {run.stderr[-1500:]}"
        if probe.group:
            os.killpg(run.process.pid, probe.signum)
        else:
            run.process.send_signal(probe.signum)
        outcome = _judge_stop(run, run.wait(STOP_TIMEOUT), probe, root, token)
    finally:
        run.kill()
    if outcome[0] != "ok":
        return outcome
    return _judge_resume(args, env, probe, root, token)


def run_all(workdir: Path) -> list[tuple[str, str]]:
    """(probe name, outcome) of every probe of :data:`PROBES`."""
    return [(probe.name, run_probe(Path(workdir), probe)[0]) for probe in PROBES]


if __name__ == "__main__":
    for name, outcome in run_all(Path(sys.argv[1])):
        print(f"{name}: {outcome}")
