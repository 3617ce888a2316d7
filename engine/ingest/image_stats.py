"""Counts over the ``images`` view: by status, by format, by size bucket, by error reason.

Size buckets are by the longer upright side in pixels.
"""

from __future__ import annotations

from typing import Any

from storage.catalog import Catalog

SIZE_BUCKET_SQL = """
case when greatest(width, height) < 256 then '<256'
     when greatest(width, height) < 512 then '256-511'
     when greatest(width, height) < 1024 then '512-1023'
     when greatest(width, height) < 2048 then '1024-2047'
     else '>=2048' end
"""


def _counts(catalog: Catalog, expression: str, where: str = "true") -> dict[str, int]:
    rows = catalog.query(f"select {expression} as k, count(*) from images where {where} group by k order by k")
    return {str(k): int(n) for k, n in rows}


def image_stats(catalog: Catalog) -> dict[str, Any]:
    """A JSON-ready summary of every ingested image location."""
    total, unique = catalog.query(
        "select count(*), count(distinct image_id) filter (where status = 'ok') from images")[0]
    return {
        "locations": int(total),
        "unique_images": int(unique),
        "shards": int(catalog.query("select count(*) from shards")[0][0]),
        "by_status": _counts(catalog, "status"),
        "by_format": _counts(catalog, "format", "status = 'ok'"),
        "by_size": _counts(catalog, SIZE_BUCKET_SQL, "status = 'ok'"),
        "errors_by_reason": _counts(catalog, "split_part(error, ':', 1)", "status = 'error'"),
    }


def format_image_stats(stats: dict[str, Any]) -> str:
    """Plain-text tables of :func:`image_stats`."""
    lines = [f"images: {stats['unique_images']} unique in {stats['locations']} locations, "
             f"{stats['shards']} shards"]
    for section in ("by_status", "by_format", "by_size", "errors_by_reason"):
        if stats[section]:
            lines.append(f"{section.replace('_', ' ')}:")
            lines.extend(f"  {name:<40} {count:>10}" for name, count in stats[section].items())
    return "\n".join(lines)
