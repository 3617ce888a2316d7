"""A data root with two curated rounds, built once per test session through the real engine.

Round 0: sample shards ingested, annotated by RapidOCR (``ocr``), the exact COCO labels with
masks (``coco_labels``) and the alt text (``sidecar_captions``), plus a ``grounder`` source written
here: phrases grounding the shape names of each caption (boxes from the ground truth, every
third with a low score so ``phrase_confidence`` drops it) and object boxes (half with a low
score for the ``confidence`` rule, half at high score duplicating the COCO labels). Round 1:
the noisy copy of the labels through ``coco_labels``, merged into round 0's set. Both
rounds are curated with a tiny spaCy pipeline trained on the sample captions; the rounds and
models tables get the rows the round flow would write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.annotate.plan import AnnotateRequest, annotate
from engine.curate.config import CurationConfig
from engine.curate.curation import curate_round
from engine.demo.sample_data import SampleConfig, write_sample
from engine.demo.spacy_pipeline import train_caption_pipeline
from engine.ingest.shards import IngestConfig, ingest
from storage.atomic import write_parquet_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows, utc_now


def _grounder_rows(root: DataRoot, truth: dict) -> list[dict]:
    with Catalog(root) as catalog:
        ids = dict(catalog.query("select key, image_id from images where status = 'ok'"))
        captions = {image_id: (aid, text) for aid, image_id, text in catalog.query(
            "select annotation_id, image_id, text from annotations where kind = 'caption' and round = 0")}
    names = {c["id"]: c["name"] for c in truth["categories"]}
    rows, n = [], 0
    for image in truth["images"]:
        image_id = ids[image["file_name"].split(".")[0]]
        parent_id, caption = captions[image_id]
        common = dict(image_id=image_id, round_=0, source="grounder", source_version="g1")
        seen: dict[str, int] = {}
        for ann in (a for a in truth["annotations"] if a["image_id"] == image["id"]):
            name = names[ann["category_id"]]
            x, y, w, h = ann["bbox"]
            box = [x, y, x + w, y + h]
            if name == "text":
                continue
            rows.append(annotation_row(kind="region", region_type="object", text=name, bbox=box,
                                       score=0.85 if n % 2 else 0.15, **common))
            start = -1
            for _ in range(seen.get(name, 0) + 1):
                start = caption.find(name, start + 1)
            seen[name] = seen.get(name, 0) + 1
            if start < 0:
                start = caption.find(name)
            rows.append(annotation_row(kind="phrase", granularity="brief", text=name, bbox=box, parent_id=parent_id,
                                       span_start=start, span_end=start + len(name),
                                       score=0.1 if n % 3 == 2 else 0.9, **common))
            n += 1
    return rows


@pytest.fixture(scope="session")
def report_root(tmp_path_factory) -> dict:
    """``{"root": DataRoot, "truth": ground-truth COCO dict, "sample": folder, "spacy": pipeline dir}``."""
    tmp = tmp_path_factory.mktemp("report")
    summary = write_sample(tmp / "sample", SampleConfig(images=8, images_per_shard=4, seed=3))
    truth = json.loads(Path(summary["ground_truth"]).read_text())
    spacy_dir = train_caption_pipeline(tmp / "spacy", [i["caption"] for i in truth["images"]], iterations=15)
    root = DataRoot(tmp / "root")
    ingest(root, summary["shards"], IngestConfig(progress=False))
    annotators = {"ocr": {}, "coco_labels": {"path": summary["ground_truth"]}, "sidecar_captions": {}}
    annotate(root, AnnotateRequest(round=0, annotators=annotators, progress=False))
    table = table_from_rows(_grounder_rows(root, truth), ANNOTATIONS)
    write_parquet_atomic(table, root.annotation_shard(0, "grounder", "synthetic"))
    config = CurationConfig.from_dict({"text": {"pipeline": str(spacy_dir)}})
    curate_round(root, 0, config)
    annotate(root, AnnotateRequest(round=1, annotators={"coco_labels": {"path": summary["noisy_labels"]}},
                                   progress=False))
    curate_round(root, 1, config)
    resolved = json.dumps({"curation": config.to_dict()}, sort_keys=True)
    with Catalog(root) as catalog:
        catalog.upsert("rounds", [{"round": r, "status": "done", "config": resolved, "started_at": utc_now()}
                                  for r in (0, 1)])
        catalog.upsert("models", [
            {"round": r, "path": str(root.model(r)), "version": f"v{r}", "promoted": r == 1, "reason": "test",
             "metrics": json.dumps({"new": {"val_loss": loss, "box_map": ap}, "current": {}}), "created_at": utc_now()}
            for r, loss, ap in ((0, 2.5, 0.1), (1, 1.75, 0.3))])
    return {"root": root, "truth": truth, "sample": tmp / "sample", "spacy": spacy_dir}
