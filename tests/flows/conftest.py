"""Flow tests: a private Prefect home and a tiny engine config over a tiny sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.demo.sample_data import SampleConfig, write_sample

REPO = Path(__file__).resolve().parents[2]
RULES = ["image", "confidence", "geometry", "phrase_parent", "phrase_span", "phrase_blacklist", "phrase_confidence",
         "phrase_nms", "nms_source", "nms_cross", "region_text"]


@pytest.fixture(scope="session", autouse=True)
def prefect_home(tmp_path_factory):
    """Prefect's local ephemeral API needs a writable home; each session gets its own."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    yield home
    # stop the ephemeral API servers now, while pytest's streams are open: Prefect stops them
    # at exit otherwise, and its "Stopping temporary server" log then hits a closed stream
    # (PrefectHQ/prefect#16626)
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flow-sample")
    write_sample(out, SampleConfig(images=12, images_per_shard=4, seed=11))
    return out


def write_config(path: Path, sample: Path, max_steps: int = 6, save_every: int = 0, rounds: int = 2) -> Path:
    """A round config: existing labels, OCR, alt text; a tiny Florence-2 trained a few steps."""
    training = {"base_model": "tiny", "max_steps": max_steps, "batch_size": 4, "lr": 1e-3, "device": "cpu",
                "dtype": "fp32", "eval_fraction": 0.25, "max_new_tokens": 16, "eval_max_examples": 8,
                "save_every": save_every, "loader_threads": 1,
                "ground_truth": str(sample / "ground_truth.json")}
    lines = ["[sources]", f"paths = {json.dumps([str(sample / 'shards')])}",
             "[annotators.coco_labels]", f"path = {json.dumps(str(sample / 'noisy_labels.json'))}",
             "[annotators.ocr]", "[annotators.sidecar_captions]",
             "[runner]", "wave_size = 1",
             "[model.annotator]", "max_new_tokens = 16", "num_beams = 1",
             "[curation]", f"rules = {json.dumps(RULES)}",
             "[loop]", f"rounds = {rounds}", f"patience = {rounds}",
             "[flow]", "retries = 0",
             "[training]"] + [f"{k} = {json.dumps(v)}" for k, v in training.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fld_process(*args: str) -> subprocess.Popen:
    """``fld`` in a subprocess, in a session of its own, so :func:`kill_run` can kill it
    together with the Prefect API server it starts."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "flows.main", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_run(process: subprocess.Popen) -> None:
    """SIGKILL an :func:`fld_process` and every process of its session: killed alone, its
    temporary Prefect API server would outlive the test session (it is a child process that
    no one stops)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)
