"""The curated rows a review shows, read back per image."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.parquet_io import read_curated
from filters.human_review import review_scope
from storage.layout import DataRoot


def scoped_rows(root: DataRoot, round_: int, image_ids: Iterable[str] | None = None,
                table: pa.Table | None = None) -> dict[str, list[dict[str, Any]]]:
    """image_id -> the curated rows of ``round_`` in review scope (top-level regions and
    captions), ordered by annotation id; ``table``: the round's curated set when the caller read
    it already. Raises ``ValueError`` when the round has no curated set."""
    table = read_curated(root, round_) if table is None else table
    if table is None:
        raise ValueError(f"round {round_} has no curated set under {root.curated(round_)}: run its round first")
    if image_ids is not None:
        table = table.filter(pc.is_in(table["image_id"], value_set=pa.array(sorted(set(image_ids)), pa.string())))
    table = table.filter(pa.array(review_scope(table))) if table.num_rows else table
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(table.to_pylist(), key=lambda r: r["annotation_id"]):
        out[row["image_id"]].append(row)
    return dict(out)


def row_sources(row: dict[str, Any]) -> set[str]:
    """The sources that gave a curated row: the names in its ``seen_by`` (``source@version``), else its own."""
    return {s.split("@", 1)[0] for s in row.get("seen_by") or []} or {row["source"]}


def object_labels(table: pa.Table) -> list[str]:
    """Every object label of a curated set (what the labelling config offers), sorted."""
    objects = table.filter(pc.fill_null(pc.and_(pc.equal(table["kind"], "region"),
                                                pc.equal(table["region_type"], "object")), False))
    labels = pc.coalesce(objects["label"], objects["text"])
    return sorted({v for v in labels.to_pylist() if v})
