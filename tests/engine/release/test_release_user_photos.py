"""A new user's release keeps what they gave: a folder of photographs with real names (JPEG and
PNG, a name with spaces and brackets, the same name in two subfolders, one image nobody
annotated), COCO labels, a person's rows, one scored model and one that gives no score.

Checked with the clients people use: ``datasets.load_dataset`` of the release folder, of its
Parquet rows and of its WebDataset tars with the one glob people copy; pycocotools; the
``webdataset`` package; ``huggingface_hub``'s ``DatasetCard``."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import pyarrow.parquet as pq
import pytest

from storage.catalog import Catalog
from storage.schema import HUMAN_SOURCE
from tests.engine.release.user_photos import LABEL_PRIOR, PHOTOS


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_image_keeps_its_own_safe_unique_name(user_release):
    folder, ids = user_release["folder"], user_release["ids"]
    files = sorted(p.name for p in (folder / "images").iterdir() if p.name != "index.parquet")
    dup_b = ids["b/dup"]
    assert files == sorted(["page.jpg", "My Photo (1).png", "dup.jpg", f"dup-{dup_b[:8]}.jpg", "unlabelled.png",
                            "Scan.JPG"])  # every ingested image, annotated or not, under the name it was given
    index = {r["image_id"]: r for r in pq.read_table(folder / "images/index.parquet").to_pylist()}
    assert set(index) == set(ids.values()) and user_release["manifest"]["images"] == len(PHOTOS)
    for key, image_id in ids.items():
        row = index[image_id]
        assert row["source_key"] == key  # the original key stays in the index
        assert _sha((folder / "images" / row["file_name"]).read_bytes()) == image_id  # the bytes as given
        assert row["annotated"] == PHOTOS[next(n for n in PHOTOS if n.split(".")[0] == key)][1]


def test_load_dataset_of_the_release_gives_every_image_with_its_name_and_flag(user_release, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from datasets import load_dataset

    folder, ids = user_release["folder"], user_release["ids"]
    loaded = load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    examples = [e for split in loaded.values() for e in split]
    assert sorted(e["image_id"] for e in examples) == sorted(ids.values())
    by_id = {e["image_id"]: e for e in examples}
    assert by_id[ids["page"]]["file_name"] == "page.jpg" and by_id[ids["My Photo (1)"]]["file_name"] == "My Photo (1).png"
    unlabelled = by_id[ids["unlabelled"]]
    assert unlabelled["annotated"] is False and unlabelled["regions"] == [] and unlabelled["image"].size == (96, 64)
    assert all(e["annotated"] and e["regions"] for e in examples if e["image_id"] != ids["unlabelled"])


def test_one_glob_reads_every_webdataset_sample_with_its_image(user_release, tmp_path):
    import webdataset as wds
    from datasets import Image as ImageFeature
    from datasets import load_dataset

    folder, ids = user_release["folder"], user_release["ids"]
    loaded = load_dataset("webdataset", data_files=str(folder / "webdataset" / "*.tar"),
                          cache_dir=str(tmp_path / "hf"))["train"]
    assert len(loaded) == len(PHOTOS)
    image_keys = [k for k, feature in loaded.features.items() if isinstance(feature, ImageFeature)]
    assert len(image_keys) == 1  # one image key, whatever the format
    raw = loaded.cast_column(image_keys[0], ImageFeature(decode=False))
    for sample, decoded in zip(raw, loaded):
        assert sample[image_keys[0]] is not None and _sha(sample[image_keys[0]]["bytes"]) == sample["__key__"]
        assert decoded[image_keys[0]].size == (96, 64)
        assert sample["json"]["file_name"] and sample["json"]["annotated"] == (sample["__key__"] != ids["unlabelled"])
    formats = {decoded[image_keys[0]].format for decoded in loaded}
    assert formats == {"JPEG", "PNG"}  # the bytes as given, not re-encoded
    tars = sorted(str(p) for p in (folder / "webdataset").glob("*.tar"))
    assert {s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)} == set(ids.values())


def test_coco_holds_every_image_under_its_file_name(user_release):
    from pycocotools.coco import COCO

    folder, ids = user_release["folder"], user_release["ids"]
    coco = COCO(str(folder / "exports/coco.json"))
    images = {i["fld_image_id"]: i for i in coco.dataset["images"]}
    assert set(images) == set(ids.values())
    for image in images.values():
        assert _sha((folder / "images" / image["file_name"]).read_bytes()) == image["fld_image_id"]
    assert images[ids["unlabelled"]]["fld_annotated"] is False and not coco.getAnnIds(imgIds=[images[ids["unlabelled"]]["id"]])
    assert images[ids["page"]]["id"] == 10  # the labels' own image id kept


def test_released_scores_are_confidences_never_priors(user_release, tmp_path):
    from datasets import load_dataset

    folder, root = user_release["folder"], user_release["root"]
    with Catalog(root) as catalog:  # curation weighed the labels with their prior
        curated = dict(catalog.query("select source, max(score) from curated where curated_round = 0 group by source"))
    assert curated["coco_labels"] == pytest.approx(LABEL_PRIOR) and curated["tagger"] == pytest.approx(0.5)
    rows = load_dataset("parquet", data_files=str(folder / "data/*.parquet"), cache_dir=str(tmp_path / "hf"))["train"]
    scores: dict[str, set] = {}
    for row in rows:
        scores.setdefault(row["source"], set()).add(None if row["score"] is None else round(row["score"], 4))
    assert scores == {"coco_labels": {None}, HUMAN_SOURCE: {None}, "tagger": {None}, "detector": {0.9}}
    coco = json.loads((folder / "exports/coco.json").read_text())
    assert {a["score"] for a in coco["annotations"]} == {1.0, 0.9}  # a given label: 1.0, never its prior
    nested = [e for path in sorted((folder / "hf").glob("*.parquet")) for e in pq.read_table(path).to_pylist()]
    assert {r["source"]: r["score"] for e in nested for r in e["regions"] if r["source"] != "detector"} == \
        {"coco_labels": None, HUMAN_SOURCE: None, "tagger": None}


def test_card_parses_with_num_bytes_and_real_drop_reasons(user_release, tmp_path, caplog):
    from datasets import load_dataset, load_dataset_builder
    from huggingface_hub import DatasetCard

    folder = user_release["folder"]
    card = DatasetCard.load(folder / "README.md")
    splits = card.data.dataset_info["splits"]
    assert all(s["num_bytes"] > 0 for s in splits) and sum(s["num_examples"] for s in splits) == len(PHOTOS)
    with caplog.at_level(logging.WARNING):
        loaded = load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
        declared = load_dataset_builder(str(folder), cache_dir=str(tmp_path / "hf")).info
    assert not [r for r in caplog.records if "dataset_info" in r.getMessage() or "malformed" in r.getMessage()]
    assert all(declared.features == split.features for split in loaded.values())  # the card's features are the files' own
    assert {name: s.num_bytes for name, s in declared.splits.items()} == {s["name"]: s["num_bytes"] for s in splits}
    drops = card.text.split("## Curation drops", 1)[1].split("##", 1)[0]
    assert "| confidence | score below 0.7327 for its source | 5 |" in drops, drops
    assert "<id>" not in drops and not re.search(r"[0-9]\.?<", drops)  # no unfilled placeholder
    assert "jpg" in card.text.split("## Files", 1)[1]  # the WebDataset image key is explained
