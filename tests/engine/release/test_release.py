"""Releases: Parquet readable by DuckDB and Hugging Face ``datasets``, COCO by pycocotools with
COCOeval, WebDataset and Florence-2 exports consistent with the curated set, byte-identical
rebuilds, refusal to overwrite, and ``verify`` catching a flipped byte."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.release.build import MANIFEST, ReleaseConfig, ReleaseError, build_release, verify_release
from storage.catalog import Catalog
from storage.masks import decode_rle


@pytest.fixture(scope="module")
def release(report_root) -> dict:
    """Round 1 released with small files and row groups, so both are exercised."""
    return build_release(report_root["root"], 1, "test-r1", ReleaseConfig(rows_per_file=50, row_group_size=16,
                                                                          images_per_shard=3))


def catalog_rows(root, round_: int) -> list[tuple]:
    with Catalog(root) as catalog:
        return catalog.query("select image_id, kind, annotation_id from curated where curated_round = ? "
                             "order by image_id, kind, annotation_id", [round_])


def test_parquet_loads_with_duckdb_and_datasets(release, report_root, tmp_path):
    folder = Path(release["path"])
    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    assert len(files) == 2  # 81 rows at 50 per file
    got = duckdb.sql("select image_id, kind, annotation_id from read_parquet(?)", params=[files]).fetchall()
    assert got == catalog_rows(report_root["root"], 1)  # every curated row, sorted
    for path in files:
        groups = [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(path).num_row_groups)]
        assert all(n == 16 for n in groups[:-1]) and 0 < groups[-1] <= 16
    from datasets import load_dataset

    dataset = load_dataset("parquet", data_files={"train": files}, cache_dir=str(tmp_path / "hf"))["train"]
    assert dataset.num_rows == len(got)
    assert dataset["annotation_id"] == [row[2] for row in got]
    masked = [r for r in dataset if r["mask_rle"]]
    assert masked and all(len(r["bbox"]) == 4 for r in masked)


def test_coco_loads_and_cocoeval_scores_the_curated_boxes(release, report_root):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    folder = Path(release["path"])
    coco = COCO(str(folder / "exports/coco.json"))
    regions = duckdb.sql("select * from read_parquet(?) where kind = 'region'",
                         params=[sorted(str(p) for p in (folder / "data").glob("*.parquet"))]).to_arrow_table().to_pylist()
    assert len(coco.getAnnIds()) == len(regions)
    image_of = {img["fld_image_id"]: img["id"] for img in coco.dataset["images"]}
    category = {c["name"]: c["id"] for c in coco.dataset["categories"]}

    def detections(shift: float) -> list[dict]:
        out = []
        for r in regions:
            x0, y0, x1, y1 = r["bbox"]
            name = "text" if r["region_type"] == "ocr" else (r["label"] or r["text"])
            out.append({"image_id": image_of[r["image_id"]], "category_id": category[name], "score": 1.0,
                        "bbox": [x0 + shift, y0 + shift, x1 - x0, y1 - y0]})
        return out

    def box_ap(shift: float) -> float:
        evaluation = COCOeval(coco, coco.loadRes(detections(shift)), "bbox")
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
        return float(evaluation.stats[0])

    assert box_ap(0.0) > 0.99
    assert box_ap(12.0) < 0.5
    by_id = {a["fld_annotation_id"]: a for a in coco.dataset["annotations"]}
    masked = [r for r in regions if r["mask_rle"]]
    assert masked
    for r in masked:
        image = coco.imgs[image_of[r["image_id"]]]
        expected = decode_rle(r["mask_rle"], image["height"], image["width"])
        assert np.array_equal(coco.annToMask(by_id[r["annotation_id"]]), expected)
    captions = duckdb.sql("select count(*) from read_parquet(?) where kind = 'caption'",
                          params=[sorted(str(p) for p in (folder / "data").glob("*.parquet"))]).fetchall()[0][0]
    assert len(coco.dataset["captions"]) == captions


def test_webdataset_and_florence2_exports(release, report_root):
    from engine.retrain.examples import build_examples

    folder = Path(release["path"])
    tars = sorted((folder / "webdataset").glob("*.tar"))
    assert len(tars) == 3  # 8 images, 3 per shard
    images, rows = {}, 0
    for path in tars:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                data = archive.extractfile(member).read()
                key, ext = member.name.split(".", 1)
                if ext == "json":
                    rows += len(json.loads(data)["annotations"])
                else:
                    assert hashlib.sha256(data).hexdigest() == key  # the bytes as ingested
                    images[key] = f"webdataset/{path.name}#{member.name}"
    assert rows == len(catalog_rows(report_root["root"], 1)) and len(images) == release["images"] == 8
    lines = []
    for split_file in sorted((folder / "florence2").glob("*.jsonl")):
        for line in split_file.read_text().splitlines():
            line = {**json.loads(line), "split": split_file.stem}
            path = (split_file.parent / line["image"]).resolve()  # relative to the file, as scripts read it
            assert hashlib.sha256(path.read_bytes()).hexdigest() == line["image_id"]
            lines.append(line)
    examples, _ = build_examples(report_root["root"], 1, 0.1, 0)
    assert sorted((line["image_id"], line["task"], line["prefix"], line["suffix"], line["split"]) for line in lines) == \
        sorted((e.image_id, e.task, e.prompt, e.target, e.split) for e in examples)
    coco = json.loads((folder / "exports/coco.json").read_text())
    for image in coco["images"]:  # COCO importers open images/<file_name>
        data = (folder / "images" / image["file_name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == image["fld_image_id"]
    assert {"OD", "OCR_WITH_REGION", "CAPTION_TO_PHRASE_GROUNDING"} <= {line["task"] for line in lines}


def test_manifest_card_and_catalog(release, report_root):
    folder = Path(release["path"])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["round"] == 1 and manifest["source_rounds"] == [0, 1]
    assert sum(v for k, v in manifest["row_counts"].items() if k.startswith("data/")) == len(catalog_rows(report_root["root"], 1))
    assert manifest["filter_settings"]["text"]["pipeline"] == os.path.relpath(report_root["spacy"], report_root["root"].path)
    assert [m["version"] for m in manifest["model_checkpoints"]] == ["v0", "v1"]
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest["files"]) == on_disk
    card = (folder / "README.md").read_text()
    assert "| text | brief | FLD-5B | 235M | 7.95 |" in card and "| text | brief | ours | 8 |" in card
    with Catalog(report_root["root"]) as catalog:
        recorded = catalog.query("select round, manifest_sha256 from releases where name = 'test-r1'")
    assert recorded == [(1, hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest())]


def test_rebuild_is_byte_identical_and_never_overwrites(release, report_root):
    root = report_root["root"]
    config = ReleaseConfig(rows_per_file=50, row_group_size=16, images_per_shard=3)
    again = Path(build_release(root, 1, "test-r1-again", config)["path"])
    first = Path(release["path"])
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    before = {f: (first / f).read_bytes() for f in files}
    with pytest.raises(ReleaseError, match="immutable"):
        build_release(root, 0, "test-r1")
    assert {f: (first / f).read_bytes() for f in files} == before
    assert not list(first.parent.glob(".test-r1.*.tmp"))


def test_reference_mode_keeps_sources_out_of_the_tars(report_root):
    folder = Path(build_release(report_root["root"], 0, "test-r0-ref", ReleaseConfig(images="reference"))["path"])
    with tarfile.open(folder / "webdataset/shard-00000.tar") as archive:
        names = archive.getnames()
        first = json.loads(archive.extractfile(names[0]).read())
    assert names and all(n.endswith(".json") for n in names)
    index = pq.read_table(folder / "images/index.parquet").to_pylist()
    assert {r["image_id"] for r in index} == {n.split(".")[0] for n in names}
    assert first["source"]["shard"].endswith(".tar") and all(r["member"] is None for r in index)
    assert verify_release(report_root["root"], "test-r0-ref") == []


def test_verify_catches_a_flipped_byte(report_root, capsys):
    import engine.commands.release  # noqa: F401  (registers `fld release`)
    from engine import cli

    root = report_root["root"]
    assert cli.main(["release", "build", "--root", str(root.path), "--round", "0", "--name", "test-flip"]) == 0
    assert "8 images (8 annotated)" in capsys.readouterr().out
    folder = root.release("test-flip")
    assert verify_release(root, "test-flip") == []
    assert cli.main(["release", "verify", "--root", str(root.path), "test-flip"]) == 0
    target = folder / "exports/coco.json"
    original = target.read_bytes()
    target.chmod(0o644)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    target.write_bytes(bytes(flipped))
    assert verify_release(root, "test-flip") == ["exports/coco.json: sha256 differs from the manifest"]
    capsys.readouterr()
    assert cli.main(["release", "verify", "--root", str(root.path), "test-flip"]) == 1
    assert "FAILED exports/coco.json" in capsys.readouterr().out
    target.write_bytes(original)
    (folder / "extra.txt").write_text("x")
    assert verify_release(root, "test-flip") == ["extra.txt: not in the manifest"]
    (folder / "extra.txt").unlink()
    assert verify_release(root, "test-flip") == []
    (folder / "exports" / "more").mkdir()  # an added empty folder
    assert verify_release(root, "test-flip") == ["exports/more/: a folder not in the manifest"]
    (folder / "exports" / "more").rmdir()
    manifest = folder / MANIFEST
    good = manifest.read_bytes()
    manifest.chmod(0o644)
    for bad in ('{"files": ["a", "b"]}', '{"files": {"x": 3}}', '[]', '{"files": {"x": {"bytes": "1"}}}'):
        manifest.write_text(bad)
        (problem,) = verify_release(root, "test-flip")
        assert problem.startswith(f"{MANIFEST}: unreadable"), problem
    manifest.write_bytes(good)
    assert verify_release(root, "test-flip") == []


def test_config_and_name_are_validated(report_root):
    with pytest.raises(ValueError, match="images"):
        ReleaseConfig(images="copy")
    with pytest.raises(ValueError, match="row_group_size"):
        ReleaseConfig(row_group_size=0)
    with pytest.raises(ReleaseError, match="name"):
        build_release(report_root["root"], 1, "../escape")
    with pytest.raises(ReleaseError, match="no curated set"):
        build_release(report_root["root"], 7, "test-empty")


def test_coco_keeps_the_inputs_ids_and_cocoeval_needs_no_remapping(report_root, tmp_path):
    """The round named its COCO labels (the sample's ground truth): the release keeps their image
    ids, file names and category ids, every annotation has a score, and COCOeval of the release
    against the ground truth, with no remapping (ranked by the curated score, as
    ``curated_quality`` ranks: the release's own scores are confidences, 1.0 for a given label),
    gives the AP that ``curated_quality`` reports."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from engine.report.quality import curated_quality

    root = report_root["root"]
    truth_path = report_root["sample"] / "ground_truth.json"
    with Catalog(root) as catalog:
        (config,) = catalog.query("select config from rounds where round = 1")[0]
        named = {**json.loads(config), "annotators": {"coco_labels": {"path": str(truth_path)}}}
        catalog.upsert("rounds", [{"round": 1, "status": "done", "config": json.dumps(named)}])
    try:
        built = build_release(root, 1, "test-coco-ids", ReleaseConfig(images_per_shard=4))
    finally:
        with Catalog(root) as catalog:
            catalog.upsert("rounds", [{"round": 1, "status": "done", "config": config}])
    release = json.loads((Path(built["path"]) / "exports/coco.json").read_text())
    truth = report_root["truth"]
    assert {(c["id"], c["name"]) for c in truth["categories"]} <= {(c["id"], c["name"]) for c in release["categories"]}
    theirs = {i["id"]: i["file_name"] for i in truth["images"]}
    assert all(theirs[i["id"]] == i["file_name"] for i in release["images"])  # every image came from the labels
    assert all("score" in a for a in release["annotations"])
    assert all("segmentation" not in a or a["segmentation"] for a in release["annotations"])
    masked = sum("segmentation" in a for a in release["annotations"])
    assert built["coco_segmentations"] == masked
    card = (Path(built["path"]) / "README.md").read_text()
    assert f"{masked} of them have a\n`segmentation`" in card
    ground = COCO(str(truth_path))
    text = next(c["id"] for c in truth["categories"] if c["name"] == "text")
    with Catalog(root) as catalog:  # curated_quality ranks by the curated score (labels at their prior)
        curated = dict(catalog.query("select annotation_id, score from curated where curated_round = 1"))
    detections = [{**a, "score": curated[a["fld_annotation_id"]]} for a in release["annotations"] if a["category_id"] != text]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground, ground.loadRes(detections), "bbox")
        evaluation.params.imgIds = sorted(i["id"] for i in release["images"])
        evaluation.params.catIds = [c["id"] for c in truth["categories"] if c["id"] != text]
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert round(float(evaluation.stats[0]), 4) == curated_quality(root, 1, truth_path)["box_ap"]


def test_load_dataset_of_the_release_gives_images_with_their_annotations(release, report_root, tmp_path):
    from datasets import load_dataset
    from PIL import Image

    folder = Path(release["path"])
    loaded = load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    assert set(loaded) <= {"train", "validation"} and sum(len(s) for s in loaded.values()) == release["images"] == 8
    rows = {r[2]: r for r in catalog_rows(report_root["root"], 1)}
    seen = 0
    for split in loaded.values():
        for example in split:
            image = example["image"]
            assert isinstance(image, Image.Image) and image.size == (example["width"], example["height"])
            data = (folder / "images" / Path(example["image"].filename).name).read_bytes() \
                if getattr(image, "filename", "") else None
            assert data is None or hashlib.sha256(data).hexdigest() == example["image_id"]
            ids = [r["annotation_id"] for key in ("regions", "ocr", "captions", "phrases") for r in example[key]]
            assert all(rows[i][0] == example["image_id"] for i in ids)
            seen += len(ids)
            for region in example["regions"]:
                assert len(region["bbox"]) == 4 and region["source"]
    assert seen == len(rows)  # every curated row, nested under its image
    card = (folder / "README.md").read_text()
    assert "license: other" in card and "dataset_info:" in card and "dtype: image" in card


def test_webdataset_shards_load_with_datasets_and_the_webdataset_package(release, tmp_path):
    import webdataset as wds
    from datasets import load_dataset

    folder = Path(release["path"])
    loaded = load_dataset("webdataset", data_files={"train": str(folder / "webdataset" / "*.tar")},
                          cache_dir=str(tmp_path / "hf"))["train"]  # one glob: every sample has the same keys
    keys_seen = set()
    for sample in loaded:  # JPEG and PNG images alike, under the one image key
        assert sample["jpg"] is not None and sample["json"]["image_id"] == sample["__key__"]
        assert sample["jpg"].format == sample["json"]["format"]
        keys_seen.add(sample["__key__"])
    assert {sample["json"]["format"] for sample in loaded} == {"JPEG", "PNG"}
    tars = sorted(str(p) for p in (folder / "webdataset").glob("*.tar"))
    package = {sample["__key__"] for sample in wds.WebDataset(tars, shardshuffle=False)}
    assert keys_seen == package and len(package) == release["images"]


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("mode", ["webdataset", "reference"])
def test_no_release_file_holds_a_path_of_this_machine(report_root, mode):
    root = report_root["root"]
    folder = Path(build_release(root, 1, f"test-portable-{mode}", ReleaseConfig(images=mode))["path"])
    machine = str(root.path.parent.parent)  # the pytest temp folder everything lives under
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".jsonl", ".md"):
            assert machine not in path.read_text(), path
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.column_names:
                if column == "image":
                    continue
                assert not any(machine in s for s in _strings(table.column(column).to_pylist())), (path, column)
        elif path.suffix == ".tar":
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.name.endswith(".json"):
                        assert machine not in archive.extractfile(member).read().decode(), (path, member.name)
    index = pq.read_table(folder / "images/index.parquet").to_pylist()
    assert all((root.path / r["source_shard"]).resolve().is_file() for r in index)  # relative to the data root
