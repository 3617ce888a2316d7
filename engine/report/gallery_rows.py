"""The rows the dashboard's gallery draws for its sampled images: kept and dropped, bounded.

Kept rows are the round's curated set (``curated_round = R``). Dropped rows are the rows the
round's curation dropped, from its decision trails (``decision_trails`` of round R with
``dropped_by`` set): the round's raw rows (``annotations``, ``round = R``) and the previous
curated rows a fresh review replaced (``curated``, ``curated_round = R - 1``, see
``engine.curate.review_carry``), each with ``drop_rule`` (the rule that dropped it) and
``drop_reason`` (its reason as recorded, ids included).

Only the sampled images' rows are read: every query filters on their image ids (pushed into
the Parquet scans), the trails are joined to those rows alone, and at most ``cap`` rows per
image and status reach Python: the rows without a score (given labels, captions) first, then
the highest scores, then by id. ``kept_total`` / ``dropped_total`` count every row of the
image, so the page can say when the cap cut some. Coordinates are as stored: absolute pixels
of the upright image, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.catalog import Catalog

Row = dict[str, Any]
#: the columns every gallery row has (raw rows have no ``label``, ``agreement`` or ``seen_by``: null)
ROW_COLUMNS = ("annotation_id", "image_id", "kind", "granularity", "region_type", "source", "text", "label", "bbox",
               "quad", "polygons", "mask_rle", "parent_id", "score", "agreement", "seen_by")
_RAW_COLUMNS = ", ".join(f"null as {c}" if c in ("label", "agreement", "seen_by") else c for c in ROW_COLUMNS)
_RANK = "row_number() over (partition by image_id order by score is not null, score desc, annotation_id)"
_ORDER = "order by image_id, kind, region_type, annotation_id"


@dataclass
class ImageRows:
    """One image's drawn rows: ``kept`` and ``dropped`` (each at most the cap) and how many
    there are in all (``kept_total``, ``dropped_total``)."""

    kept: list[Row] = field(default_factory=list)
    dropped: list[Row] = field(default_factory=list)
    kept_total: int = 0
    dropped_total: int = 0

    @property
    def capped(self) -> bool:
        return len(self.kept) < self.kept_total or len(self.dropped) < self.dropped_total


def _placeholders(ids: list[str]) -> str:
    return ", ".join("?" for _ in ids)


def _kept(catalog: Catalog, round_: int, ids: list[str], cap: int) -> list[Row]:
    sql = (f"select * exclude (n) from (select {', '.join(ROW_COLUMNS)}, count(*) over (partition by image_id) "
           f"as total, {_RANK} as n from curated where curated_round = ? and image_id in ({_placeholders(ids)})) "
           f"where n <= ? {_ORDER}")
    return catalog.con.sql(sql, params=[int(round_), *ids, int(cap)]).to_arrow_table().to_pylist()


def _dropped(catalog: Catalog, round_: int, ids: list[str], cap: int) -> list[Row]:
    here = _placeholders(ids)
    sql = f"""
        with r as materialized (
            select {_RAW_COLUMNS}, 0 as origin from annotations where round = ? and image_id in ({here})
            union all
            select {', '.join(ROW_COLUMNS)}, 1 as origin from curated where curated_round = ? and image_id in ({here})),
        t as (
            select annotation_id, cast(dropped_by as varchar) as drop_rule, cast(reason as varchar) as drop_reason
            from decision_trails where round = ? and dropped_by is not null
              and annotation_id in (select annotation_id from r)),
        d as (
            select r.* exclude (origin), t.drop_rule, t.drop_reason from r join t using (annotation_id)
            qualify row_number() over (partition by annotation_id order by origin) = 1)
        select * exclude (n) from (select *, count(*) over (partition by image_id) as total, {_RANK} as n from d)
        where n <= ? {_ORDER}"""
    params = [int(round_), *ids, int(round_) - 1, *ids, int(round_), int(cap)]
    return catalog.con.sql(sql, params=params).to_arrow_table().to_pylist()


def gallery_rows(catalog: Catalog, round_: int, ids: list[str], cap: int) -> dict[str, ImageRows]:
    """``{image_id: ImageRows}`` for every id of ``ids`` (an image without rows gets empty
    lists). ``cap`` >= 1: rows drawn per image, kept and dropped each."""
    if cap < 1:
        raise ValueError(f"the gallery's row cap must be >= 1, got {cap}")
    out = {image_id: ImageRows() for image_id in ids}
    if not ids:
        return out
    for row in _kept(catalog, round_, ids, cap):
        image = out[row["image_id"]]
        image.kept_total = int(row.pop("total"))
        image.kept.append(row)
    for row in _dropped(catalog, round_, ids, cap):
        image = out[row["image_id"]]
        image.dropped_total = int(row.pop("total"))
        image.dropped.append(row)
    return out
