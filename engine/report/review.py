"""The data of the dashboard's ``review`` section: the round's review queue and what people did, per round.

From the catalog's ``review_queue`` (``fld review plan``) and ``review_verdicts`` (``fld review
import``) views: the top of round R's queue with each image's reasons; per round up to R, the
rows people kept, corrected, deleted and added in the reviews that round applied; and per
source, how often people agreed with it (rows shown that people kept unchanged / rows shown;
a row counts for every source in its ``seen_by``).
"""

from __future__ import annotations

from typing import Any

from storage.catalog import Catalog

VERDICTS = ("kept", "corrected", "deleted", "added")


def review_data(catalog: Catalog, round_: int, top: int = 10) -> dict[str, Any]:
    """The section's data, JSON-ready."""
    r = int(round_)
    queue = catalog.query("select rank, image_id, priority, reasons from review_queue where round = ? order by rank",
                          [r])
    people = catalog.query("select target_round, verdict, count(*) from review_verdicts where target_round <= ? "
                           "group by all order by all", [r])
    by_round: dict[int, dict[str, int]] = {}
    for target, verdict, n in people:
        by_round.setdefault(int(target), dict.fromkeys(VERDICTS, 0))[verdict] = int(n)
    agreement = catalog.query(
        "select source, count(*), count(*) filter (where verdict = 'kept') from (select verdict, unnest(sources) as "
        "source from review_verdicts where target_round <= ? and annotation_id is not null) group by all order by 1",
        [r])
    return {"queue_images": len(queue),
            "queue": [{"rank": int(k), "image_id": i, "priority": float(p), "reasons": list(reasons or [])}
                      for k, i, p, reasons in queue[:top]],
            "people": [{"round": k, **v} for k, v in sorted(by_round.items())],
            "agreement": [{"source": s, "shown": int(n), "kept": int(kept), "agreement": round(kept / n, 4) if n else None}
                          for s, n, kept in agreement]}

