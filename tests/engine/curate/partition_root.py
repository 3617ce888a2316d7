"""A small data root whose rounds exercise every way a row reaches a curation partition.

Images in five ingested shards (``s0``..``s4``, one image ingested in both ``s1`` and ``s2``,
one with status error); round 0 annotated per shard by three sources (overlapping boxes for
both NMS rules, captions from the gold parses for ``text_complexity``, phrases, region-text
candidates, rows of an unknown image) plus a file that is no shard (``shard=synthetic``) with
rows of images in several shards, of an image only it names (shard ``s3``), of an image of a
shard nothing annotated (``s4``) and of an image found nowhere. Round 1: a new detector
checkpoint on shards ``s0``..``s2`` only (``s3``'s rows are only carried) and people's review
of one image (kept, deleted and corrected rows, one drawn), imported for round 1.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.curate.parquet_io import read_curated
from storage.atomic import write_parquet_atomic
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, HUMAN_SOURCE, IMAGES, annotation_row, table_from_rows, utc_now
from tests.filters.spacy_docs import gold_docs
from tests.filters.tables import candidate, caption, phrase, region

SHARDS = {"s0": ["a0", "a1", "a2"], "s1": ["b0", "b1", "dup"], "s2": ["c0", "dup", "c1"], "s3": ["d0", "d1", "lone"],
          "s4": ["e0"]}
REVIEW = "rev1"
LABELS = ("dog", "cat", "car")


def _write(root: DataRoot, round_: int, rows: list[tuple[dict, str]]) -> None:
    """``(row, shard)`` pairs as ``fld annotate`` writes them: one file per (source, shard)."""
    files: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row, shard in rows:
        files[(row["source"], shard)].append(row)
    for (source, shard), part in sorted(files.items()):
        write_parquet_atomic(table_from_rows(part, ANNOTATIONS), root.annotation_shard(round_, source, shard))


def write_extra(root: DataRoot, round_: int, rows: list[dict], shard: str) -> None:
    """``rows`` of round ``round_`` as one more source's file of ``shard`` (their source: the first row's)."""
    write_parquet_atomic(table_from_rows(rows, ANNOTATIONS), root.annotation_shard(round_, rows[0]["source"], shard))


def _image_rows(rng: np.random.Generator, image: str, round_: int, version: str, texts: list[str]) -> list[dict]:
    rows = []
    for k in range(2):
        x, y = rng.uniform(5, 40, 2)
        label = LABELS[(k + len(image)) % len(LABELS)]
        box = [x, y, x + 30, y + 25]
        det = region(image, box, label=label, score=float(rng.uniform(0.4, 0.99)), round_=round_, version=version)
        rows += [det, region(image, [v + 1 for v in box], label=label, score=float(rng.uniform(0.3, 0.9)),
                             round_=round_, version=version)]
        if round_ == 0:
            rows.append(region(image, [v - 1 for v in box], label=label, source="florence2",
                               score=float(rng.uniform(0.5, 0.95)), round_=round_))
            rows.append(candidate(image, det, f"a {label} here", source="region_captioner", round_=round_))
    if round_ == 0:
        cap = caption(image, texts[len(image) % len(texts)], round_=round_)
        rows += [cap, phrase(image, cap, 0, 1, [10, 10, 30, 30], round_=round_),
                 region(image, [0, 0, 1, 70], label="pole", round_=round_)]
    return rows


def write_round0(root: DataRoot) -> None:
    """The images parts and round 0's raw annotations."""
    root.ensure()
    rng = np.random.default_rng(7)
    texts = [doc.text for doc in gold_docs()]
    for shard, ids in SHARDS.items():
        rows = [dict(image_id=i, shard_id=shard, shard=f"/{shard}.tar", key=i, width=90, height=80, status="ok",
                     ingested_at=utc_now()) for i in ids]
        if shard == "s3":
            rows.append(dict(image_id="bad", shard_id=shard, shard="/s3.tar", key="bad", status="error",
                             ingested_at=utc_now()))
        root.images.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(table_from_rows(rows, IMAGES), root.images_part(shard))
    rows = [(r, s) for s in ("s0", "s1", "s2", "s3") for i in SHARDS[s] if i not in ("lone", "dup")
            for r in _image_rows(rng, i, 0, "detector-v1", texts)]
    rows += [(region("zzz", [5, 5, 30, 30], score=0.95), "s3"), (region("bad", [5, 5, 30, 30], score=0.95), "s3")]
    dup = _image_rows(rng, "dup", 0, "detector-v1", texts)  # the same image annotated in both of its shards
    rows += [(r, "s1") for r in dup] + [(r, "s2") for r in dup if r["source"] == "detector"]
    rows += [(region(i, [10, 10, 40, 35], label="dog", source="grounder", score=0.8), "synthetic")
             for i in ("a0", "b1", "c1", "d0", "lone", "e0", "nowhere")]
    _write(root, 0, rows)


def write_round1(root: DataRoot) -> None:
    """Round 1's raw annotations and a review imported for it (from round 0's curated rows)."""
    rng = np.random.default_rng(11)
    rows = [(r, s) for s in ("s0", "s1", "s2") for i in SHARDS[s] if (i, s) != ("dup", "s2")
            for r in _image_rows(rng, i, 1, "detector-v2", [])]
    _write(root, 1, rows)
    shown = [r for r in read_curated(root, 0).to_pylist() if r["image_id"] == "b0" and r["kind"] == "region"
             and r["parent_id"] is None]
    human = [annotation_row(image_id="b0", round_=1, source=HUMAN_SOURCE, source_version=REVIEW, kind="region",
                            region_type="object", text=t, bbox=b, score=None) for t, b in
             (("cat", [20.0, 20.0, 50.0, 45.0]), ("car", [60.0, 5.0, 85.0, 30.0]))]
    verdicts = [{"image_id": "b0", "annotation_id": shown[0]["annotation_id"], "human_id": None, "verdict": "kept"},
                {"image_id": "b0", "annotation_id": shown[1]["annotation_id"], "human_id": human[0]["annotation_id"],
                 "verdict": "corrected"},
                {"image_id": "b0", "annotation_id": None, "human_id": human[1]["annotation_id"], "verdict": "added"}]
    verdicts += [{"image_id": "b0", "annotation_id": r["annotation_id"], "human_id": None, "verdict": "deleted"}
                 for r in shown[2:]]
    write_parquet_atomic(table_from_rows(human, ANNOTATIONS),
                         root.annotations(1, HUMAN_SOURCE) / f"shard=review-{REVIEW}.parquet")
    folder = root.review_import(REVIEW)
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(verdicts, schema=pa.schema(
        [("image_id", pa.string()), ("annotation_id", pa.string()), ("human_id", pa.string()),
         ("verdict", pa.string())])), folder / "verdicts.parquet")
    (folder / "import.json").write_text(json.dumps({"review_id": REVIEW, "reviewed_round": 0, "target_round": 1,
                                                    "imported_at": "2026-01-01T00:00:00"}))
