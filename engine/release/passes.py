"""A release's files, written in passes over the round that hold bounded batches, never the round.

1. SQL into scratch tables: the ids whose score is a prior, every image's facts (names, splits,
   COCO ids kept; :mod:`engine.release.image_table`), the phrases whose caption is elsewhere;
2. the shards, read once: ``images/`` and each image's place in the tars (``reference``: by key);
3. the images with their rows in image id order (:mod:`engine.release.row_stream`): ``data/``,
   ``images/index.parquet``, ``hf/``, the samples' JSON (first for each image, so a
   non-finite number is reported as a sample's, as it always was), the COCO parts and
   ``florence2/``, and the counts the manifest reports;
4. ``webdataset/`` in tar order and ``exports/coco.json`` joined from its parts.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import duckdb

from engine.release.batching import ReleaseBatching
from engine.release.coco import CocoSource, CocoWriter, caption_exceptions, category_ids, coco_source
from engine.release.curated_files import CuratedFiles
from engine.release.exports import Florence2Files, NonFiniteValue, Row
from engine.release.hf_dataset import HfFiles
from engine.release.image_table import (
    StreamedLocations,
    create_images,
    create_kept,
    create_key_positions,
    create_locations,
    split_sizes,
)
from engine.release.images import IndexFile, SampleDocs, copy_images, member, write_tars
from engine.release.row_stream import image_batches
from engine.release.scores import create_unscored


@contextlib.contextmanager
def writing(rel: str) -> Iterator[None]:
    """Name the file ``rel`` in a :class:`NonFiniteValue` raised while its content is made."""
    try:
        yield
    except NonFiniteValue as exc:
        raise NonFiniteValue(f"{rel}: {exc}") from None


@dataclass
class Tally:
    """What the manifest says of the rows: count per kind (``kind:granularity`` or
    ``kind:region_type``), the rounds that produced them, ``source@version`` of their annotators."""

    kinds: collections.Counter = field(default_factory=collections.Counter)
    rounds: set[int] = field(default_factory=set)
    annotators: set[str] = field(default_factory=set)

    def add(self, rows: list[Row]) -> None:
        for row in rows:
            detail = row.get("granularity") or row.get("region_type")
            self.kinds[row["kind"] + (f":{detail}" if detail else "")] += 1
            self.rounds.add(row["round"])
            self.annotators.add(f"{row['source']}@{row['source_version']}")


@dataclass(frozen=True)
class Written:
    """What the passes wrote: ``counts`` (rows per file, in the manifest's order), ``hf``
    (per-split sizes and download size; {} without ``hf/``), images, annotated images, Florence-2
    ``examples`` per split/task, COCO ``segmentations`` and the rows' :class:`Tally`."""

    counts: dict[str, int]
    hf: dict[str, Any]
    images: int
    annotated: int
    examples: dict[str, int]
    segmentations: int
    tally: Tally


def write_files(con: duckdb.DuckDBPyConnection, round_: int, total_rows: int, stage: Path, work: Path,
                config: Any, batching: ReleaseBatching, round_config: Mapping[str, Any] | None,
                portable: Callable[[str], Any]) -> Written:
    """Every file of the release but its card and manifest under ``stage`` (module docstring);
    ``config``: the ``ReleaseConfig``; ``total_rows``: the round's curated rows; ``work``: the
    build's work folder."""
    create_unscored(con, round_)
    create_locations(con)
    source = coco_source(round_config, StreamedLocations(con, batching.fetch_rows))
    largest = create_kept(con, source.image_ids if source else {}, source.file_names if source else {})
    create_images(con, config.eval_fraction, config.seed, portable, batching.fetch_rows)
    with_bytes = config.images == "webdataset"
    if with_bytes:
        copy_images(con, stage, batching)
    else:
        create_key_positions(con)
    data = CuratedFiles(stage, total_rows, config.rows_per_file, config.row_group_size)
    index = IndexFile(stage, with_bytes, config.images_per_shard)
    hf = HfFiles(stage, stage / "images", split_sizes(con), config.images_per_shard) if with_bytes else None
    samples = SampleDocs(con, work, with_bytes)
    coco = CocoWriter(con, work / "coco", _categories(con, round_, source), largest, caption_exceptions(con, round_))
    florence2 = Florence2Files(stage / "florence2")
    tally, images, annotated, where = Tally(), 0, 0, ""
    try:
        for batch in image_batches(con, round_, batching, work):
            data.add(batch.table)
            index.add(batch.metas)
            for meta, rows in zip(batch.metas, batch.rows):
                where = "webdataset/ (a sample's JSON)"
                samples.add(meta, rows)
                if hf is not None:
                    hf.add(meta["image_id"], meta, rows, meta["split"])
                where = "exports/coco.json"
                coco.add(meta, rows)
                where = "florence2/"
                if rows:
                    at = member(meta, with_bytes, config.images_per_shard)
                    florence2.add(meta["image_id"], meta, rows, meta["split"],
                                  f"../images/{meta['file_name']}" if at.startswith("webdataset/") else at)
                tally.add(rows)
            images, annotated = images + len(batch.metas), annotated + sum(m["annotated"] for m in batch.metas)
            samples.flush()
            coco.flush()
        where = "exports/coco.json"
        coco.write(stage / "exports/coco.json", batching.fetch_rows)
    except NonFiniteValue as exc:
        raise NonFiniteValue(f"{where}: {exc}") from None
    finally:
        coco.close()
        samples.close()
        splits, examples = florence2.close()
    write_tars(con, stage, samples, config.images_per_shard, batching.fetch_rows)
    hf_counts, hf_splits = hf.close() if hf is not None else ({}, {})
    counts = {**data.close(), "images/index.parquet": index.close(), **hf_counts,
              "exports/coco.json": coco.counts["annotations"], "webdataset": images,
              **{f"florence2/{split}.jsonl": sum(n for key, n in examples.items() if key.startswith(f"{split}/"))
                 for split in splits}}
    hf_entry = ({"splits": hf_splits, "download_size": sum((stage / rel).stat().st_size for rel in hf_counts)}
                if with_bytes else {})
    return Written(counts, hf_entry, images, annotated, examples, coco.segmentations, tally)


def _categories(con: duckdb.DuckDBPyConnection, round_: int, source: CocoSource | None) -> Any:
    """The COCO categories of the round's boxed regions (their distinct labels, from SQL)."""
    regions = f"from curated where curated_round = {int(round_)} and kind = 'region' and bbox is not null"
    labels = [row[0] for row in con.execute(f"select distinct coalesce(nullif(label, ''), nullif(text, ''), '') "
                                            f"{regions} and region_type is distinct from 'ocr'").fetchall()]
    has_ocr = con.execute(f"select count(*) > 0 {regions} and region_type = 'ocr'").fetchall()[0][0]
    return category_ids(labels, bool(has_ocr), source)
