"""engine.annotate.plan on Beam: two annotators in one pipeline, runners agree, resume, dead letters."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from annotators.base import Annotator
from annotators.registry import _REGISTRY, register_annotator
from engine.annotate import plan as plan_module
from engine.annotate.elements import ShardTask
from engine.annotate.plan import AnnotateRequest, annotate, plan_waves, read_markers
from storage.catalog import Catalog
from storage.decode import DecodeLimits
from tests.engine.annotate.annotate_helpers import annotation_rows, error_rows
from tests.fake_annotators import DarkPatchAnnotator

REPO = Path(__file__).resolve().parents[2]


def _run(root, **kwargs):
    kwargs.setdefault("progress", False)
    return annotate(root, AnnotateRequest(round=0, **kwargs))


def test_two_annotators_in_one_pipeline_and_markers_make_reruns_skip(ingested_root, sample_dir):
    summary = _run(ingested_root, annotators={"ocr": {}, "dark_patch": {}})
    assert summary["units_run"] == 8  # 4 shards x 2 annotators
    assert summary["sources"]["dark_patch"] == {"shards": 4, "images": 24, "rows": 24, "errors": 0}
    ocr_texts = {r[2] for r in annotation_rows(ingested_root) if r[0] == "source=ocr"}
    assert ocr_texts
    truth = json.loads((sample_dir / "ground_truth.json").read_text())
    words = {a["text"] for a in truth["annotations"] if "text" in a}
    read = {dict(r[2])["text"].lower() for r in annotation_rows(ingested_root) if r[0] == "source=ocr"}
    assert len(read & words) >= len(words) // 2  # RapidOCR reads most rendered words
    with Catalog(ingested_root) as catalog:
        by_source = dict(catalog.query("select source, count(*) from annotations group by source"))
    assert by_source["dark_patch"] == 24 and by_source["ocr"] == summary["sources"]["ocr"]["rows"]
    again = _run(ingested_root, annotators={"ocr": {}, "dark_patch": {}})
    assert again["units_run"] == 0 and again["sources"] == summary["sources"]


def test_direct_and_dask_runners_write_the_same_rows(ingested_root, tmp_path):
    distributed = pytest.importorskip("distributed")
    _run(ingested_root, annotators={"dark_patch": {"patch": 8}})
    direct = annotation_rows(ingested_root)
    for path in ingested_root.annotations(0).rglob("*"):
        if path.is_file():
            path.unlink()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        summary = _run(ingested_root, annotators={"dark_patch": {"patch": 8}}, runner="dask",
                       pipeline_args=[f"--dask_client_address={cluster.scheduler_address}"])
    assert summary["sources"]["dark_patch"]["images"] == 24
    assert annotation_rows(ingested_root) == direct and len(direct) == 24


def _tasks(*images):
    return [ShardTask(shard_id=f"s{i}", shard=f"/s{i}", format="tar", sources=("x",), round=0, images=n)
            for i, n in enumerate(images)]


def test_waves_hold_at_most_their_images_and_shards_and_never_split_a_shard():
    def sizes(waves):
        return [[t.images for t in wave] for wave in waves]

    tasks = _tasks(4, 4, 3, 9, 1, 1)
    assert sizes(plan_waves(tasks)) == [[4, 4, 3, 9, 1, 1]]
    assert sizes(plan_waves(tasks, wave_images=8)) == [[4, 4], [3], [9], [1, 1]]  # 9 > 8: a wave of its own
    assert sizes(plan_waves(tasks, wave_size=2)) == [[4, 4], [3, 9], [1, 1]]
    assert sizes(plan_waves(tasks, wave_size=2, wave_images=7)) == [[4], [4, 3], [9], [1, 1]]
    assert plan_waves([], wave_images=8) == []
    assert [t for wave in plan_waves(tasks, wave_images=5) for t in wave] == tasks  # order kept
    with pytest.raises(ValueError, match="wave_images must be >= 0"):
        AnnotateRequest(round=0, annotators={"dark_patch": {}}, wave_images=-1)


def test_bounded_waves_write_the_rows_of_one_run(ingested_root, monkeypatch):
    _run(ingested_root, annotators={"dark_patch": {"patch": 8}})
    whole = annotation_rows(ingested_root)
    for path in ingested_root.annotations(0).rglob("*"):
        if path.is_file():
            path.unlink()
    runs = []
    build = plan_module.build_pipeline
    monkeypatch.setattr(plan_module, "build_pipeline", lambda p, root, wave, *a: runs.append(len(wave)) or
                        build(p, root, wave, *a))
    summary = _run(ingested_root, annotators={"dark_patch": {"patch": 8}}, wave_images=12)  # 4 shards of 6 images
    assert runs == [2, 2] and summary["sources"]["dark_patch"]["images"] == 24
    assert annotation_rows(ingested_root) == whole


def _fld(root, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLD_PLUGINS": "tests.fake_annotators"}
    return subprocess.Popen([sys.executable, "-m", "flows.main", "annotate", "--root", str(root.path), "--quiet",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes_to_the_rows_of_an_uninterrupted_run(ingested_root, tmp_path):
    args = ["--round", "0", "--annotator", "dark_patch", "--wave-size", "1"]
    clean = _fld(ingested_root, *args)
    assert clean.wait(timeout=300) == 0, clean.stderr.read()
    expected = annotation_rows(ingested_root)
    for path in list(ingested_root.annotations(0).rglob("*")):
        if path.is_file():
            path.unlink()

    victim = _fld(ingested_root, *args)
    deadline = time.time() + 240
    while not read_markers(ingested_root, 0) and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    done_at_kill = len(read_markers(ingested_root, 0))
    assert 1 <= done_at_kill < 4, f"the kill should land mid-run ({done_at_kill} of 4 shards done)"
    for path in ingested_root.annotations(0).glob("source=*/shard=*.parquet"):
        pq.read_table(path)  # every visible file is whole (temp files are hidden dot-files)

    resumed = _fld(ingested_root, *args)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert annotation_rows(ingested_root) == expected
    assert len(read_markers(ingested_root, 0)) == 4


class FailsOnWide(Annotator):
    """Test-only: raises for any batch holding an image wider than 300 px."""

    kinds = ("region",)
    batch_size = 4

    def __init__(self):
        self.inner = DarkPatchAnnotator()

    def annotate(self, batch):
        if any(item.width > 300 for item in batch.items):
            raise RuntimeError("cannot handle wide images")
        rows = self.inner.annotate(batch)
        for row in rows:
            row["source"] = self.name
        return rows


@pytest.fixture
def failing_annotator():
    """Registered for one test only, so the registry-wide contract test never sees it."""
    register_annotator("fails_on_wide")(FailsOnWide)
    yield "fails_on_wide"
    _REGISTRY.pop("fails_on_wide", None)


def _replace_member(tar_path: Path, member: str, data: bytes) -> None:
    with tarfile.open(tar_path) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(tar_path, "w") as archive:
        for info, content in members:
            content = data if info.name == member else content
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def test_dead_letters_name_stage_and_reason_and_the_rest_completes(ingested_root, failing_annotator, tmp_path):
    # 1) an image changed on disk after ingest
    with Catalog(ingested_root) as catalog:
        shard, key = catalog.query("select shard, key from images where status = 'ok' order by shard, key limit 1")[0]
    replacement = io.BytesIO()
    Image.new("RGB", (50, 40), (1, 2, 3)).save(replacement, "PNG")
    member = next(n for n in tarfile.open(shard).getnames() if n.startswith(key + "."))
    _replace_member(Path(shard), member, replacement.getvalue())
    # 2) a decode limit stricter than at ingest (refused on the decode threads), 3) an annotator
    # failing on wide images
    summary = _run(ingested_root, annotators={"dark_patch": {}, "fails_on_wide": {}},
                   limits=DecodeLimits(max_pixels=300 * 300), decode_threads=3)
    errors = error_rows(ingested_root)
    by = {(e["source"], e["key"], e["stage"]) for e in errors}
    assert ("dark_patch", key, "read") in by and ("fails_on_wide", key, "read") in by
    decode = [e for e in errors if e["stage"] == "decode"]
    assert decode and all("too large" in e["reason"] for e in decode)
    inference = [e for e in errors if e["stage"] == "inference"]
    assert inference and all(e["source"] == "fails_on_wide" and "wide" in e["reason"] for e in inference)
    # every image is accounted for: rows or a dead letter, per source
    for source in ("dark_patch", "fails_on_wide"):
        stats = summary["sources"][source]
        assert stats["images"] == 24
        rows = sum(len(pq.read_table(p)) for p in ingested_root.annotations(0, source).glob("shard=*.parquet"))
        assert rows + stats["errors"] == 24 and rows == stats["rows"] > 0
    with Catalog(ingested_root) as catalog:
        assert catalog.query("select count(*) from errors")[0][0] == len(errors)
