"""A new user's photographs released: a folder with real names (JPEG and PNG, a name with spaces and
brackets, the same name in two subfolders, one image nobody annotated), COCO labels, a person's rows,
one scored model and one that gives no score; ingested, curated and released once per session for the
release tests that check it with the clients people use."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.annotate.plan import AnnotateRequest, annotate
from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_round
from engine.ingest.shards import IngestConfig, ingest
from engine.release.build import ReleaseConfig, build_release
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, HUMAN_SOURCE, annotation_row, table_from_rows, utc_now

#: file -> (format, annotated): what the user's folder holds
PHOTOS = {"page.jpg": ("JPEG", True), "My Photo (1).png": ("PNG", True), "a/dup.jpg": ("JPEG", True),
          "b/dup.jpg": ("JPEG", True), "unlabelled.png": ("PNG", False), "Scan.JPG": ("JPEG", True)}
#: a threshold as a calibration writes it (16 decimals): its drop reason must read as a number
THRESHOLD = 0.7327104330062866
LABEL_PRIOR = 0.3


def _photo(seed: int, fmt: str) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="session")
def user_release(tmp_path_factory) -> dict:
    """``{"root", "folder" (the release), "ids" (key -> image id), "manifest"}``: :data:`PHOTOS` ingested,
    labelled, curated and released as ``photos-r0``."""
    tmp = tmp_path_factory.mktemp("photos")
    folder = tmp / "My Photos"
    for seed, (name, (fmt, _)) in enumerate(PHOTOS.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_photo(seed, fmt))
    root = DataRoot(tmp / "root")
    ingest(root, [str(folder)], IngestConfig(progress=False))
    with Catalog(root) as catalog:
        ids = dict(catalog.query("select key, image_id from images where status = 'ok'"))
    labelled = [name for name, (_, annotated) in PHOTOS.items() if annotated and name != "b/dup.jpg"]
    labels = {"images": [{"id": 10 + k, "file_name": name, "width": 96, "height": 64} for k, name in enumerate(labelled)],
              "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}],
              "annotations": [{"id": 100 + k, "image_id": 10 + k, "category_id": 1, "bbox": [4, 4, 30, 20],
                               "area": 600, "iscrowd": 0} for k in range(len(labelled))]}
    labels_path = tmp / "labels.json"
    labels_path.write_text(json.dumps(labels))
    annotate(root, AnnotateRequest(round=0, annotators={"coco_labels": {"path": str(labels_path)}}, progress=False))
    rows = []
    for name, (_, annotated) in PHOTOS.items():
        if not annotated:
            continue
        common = dict(image_id=ids[name.split(".")[0]], round_=0, kind="region", region_type="object")
        rows += [annotation_row(source="detector", source_version="d1", text="dog", bbox=[50, 30, 90, 60], score=0.9,
                                **common),
                 annotation_row(source="detector", source_version="d1", text="dog", bbox=[50, 2, 90, 25], score=0.6,
                                **common),  # below THRESHOLD: dropped
                 annotation_row(source="tagger", source_version="t1", text="lamp", bbox=[5, 40, 25, 60], **common),
                 annotation_row(source=HUMAN_SOURCE, source_version="review-1", text="person", bbox=[30, 30, 45, 62],
                                score=1.0, **common)]  # as `fld review import` writes them
    for source in ("detector", "tagger", HUMAN_SOURCE):
        table = table_from_rows([r for r in rows if r["source"] == source], ANNOTATIONS)
        write_parquet_atomic(table, root.annotation_shard(0, source, "synthetic"))
    config = CurationConfig.from_dict({
        "rules": [r for r in DEFAULT_RULES if r != "text_complexity"],
        "prior_score": {"per_source": {"coco_labels": LABEL_PRIOR, HUMAN_SOURCE: 1.0}},
        "confidence": {"default": 0.3, "per_source": {"detector": THRESHOLD}}})
    curate_round(root, 0, config)
    resolved = {"annotators": {"coco_labels": {"path": str(labels_path)}}, "curation": config.to_dict()}
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": 0, "status": "done", "config": json.dumps(resolved), "started_at": utc_now()}])
    built = build_release(root, 0, "photos-r0", ReleaseConfig(images_per_shard=4))
    return {"root": root, "folder": Path(built["path"]), "ids": ids, "manifest": built}
