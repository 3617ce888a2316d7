"""Every released image's unique file name, found in bounded memory.

:func:`engine.release.names.unique_names` names images one by one in (source key, image id)
order, each taking the first of its candidates (:func:`~engine.release.names.candidates`: its
safe name, then ``-`` and 8, 16, 64 hex digits of its id) that no earlier image took,
case-insensitively. Holding every taken name is a set of all images; here the same names come
from what can collide:

* an image whose case-folded safe name no other image has, and which does not look like a
  suffixed candidate (:func:`~engine.release.names.may_be_suffixed`), keeps it: no other
  image's candidate can be it (an earlier image could only have taken it as its own safe name
  or as a suffixed one);
* the others (``contested`` images, usually none) are named one by one in the same order, over
  their own candidates only: a candidate none of the others shares is free, so the set of taken
  names holds only names two of them could both want.

Reads the scratch table ``plain_names`` (image_id, ord: the place in (key, image id) order,
plain, folded, suffix_like; made by :mod:`engine.release.image_table`) and writes ``chosen_names``
(image_id, file_name) for the contested images; the others keep ``plain``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from engine.release.batching import SCRATCH, append, record_batches
from engine.release.names import candidates

PLAIN = f"{SCRATCH}.plain_names"
CHOSEN = f"{SCRATCH}.chosen_names"
DUPLICATED = f"{SCRATCH}.duplicated_names"
CONTESTED = f"{SCRATCH}.contested_images"
CANDIDATES = f"{SCRATCH}.name_candidates"
SHARED = f"{SCRATCH}.shared_candidates"
FLAGGED = f"{SCRATCH}.flagged_candidates"


def create_names(con: duckdb.DuckDBPyConnection, fetch_rows: int) -> None:
    """:data:`CHOSEN` from :data:`PLAIN` (module docstring); ``fetch_rows``: rows per streamed batch."""
    con.execute(f"create table {DUPLICATED} as select folded from {PLAIN} group by folded having count(*) > 1")
    con.execute(f"create table {CONTESTED} as select p.image_id, p.ord, p.plain from {PLAIN} p "
                f"left join {DUPLICATED} d on d.folded = p.folded where p.suffix_like or d.folded is not null")
    con.execute(f"create table {CANDIDATES} (image_id varchar, ord bigint, rank integer, name varchar, "
                "folded varchar)")
    for batch in record_batches(con, f"select image_id, ord, plain from {CONTESTED} order by ord", fetch_rows):
        rows = [(image_id, ord_, rank, name, name.casefold())
                for image_id, ord_, plain in zip(*(batch.column(i).to_pylist() for i in range(3)))
                for rank, name in enumerate(candidates(plain, image_id))]
        if rows:
            append(con, CANDIDATES, pa.table(list(zip(*rows)), names=["image_id", "ord", "rank", "name", "folded"]))
    con.execute(f"create table {SHARED} as select folded from {CANDIDATES} group by folded having count(*) > 1")
    con.execute(f"create table {FLAGGED} as select c.*, s.folded is not null as shared from {CANDIDATES} c "
                f"left join {SHARED} s on s.folded = c.folded")
    con.execute(f"create table {CHOSEN} (image_id varchar, file_name varchar)")
    taken: set[str] = set()
    chosen: list[tuple[str, str]] = []
    current, options = None, []
    sql = f"select ord, image_id, name, folded, shared from {FLAGGED} order by ord, rank"
    for batch in record_batches(con, sql, fetch_rows):
        for ord_, image_id, name, folded, shared in zip(*(batch.column(i).to_pylist() for i in range(5))):
            if ord_ != current and options:
                chosen.append(_take(options, taken))
                options = []
            current = ord_
            options.append((image_id, name, folded, shared))
        _flush(con, chosen, fetch_rows)
    if options:
        chosen.append(_take(options, taken))
    _flush(con, chosen, 1)


def _take(options: list[tuple[str, str, str, bool]], taken: set[str]) -> tuple[str, str]:
    """(image_id, name) of one contested image given its candidates in order (the first free one;
    the last when none is), remembering the name when another image shares it."""
    for image_id, name, folded, shared in options:
        if not (shared and folded in taken):
            break
    if shared:
        taken.add(folded)
    return image_id, name


def _flush(con: duckdb.DuckDBPyConnection, chosen: list[tuple[str, str]], least: int) -> None:
    """Append ``chosen`` to :data:`CHOSEN` (and empty it) once it holds ``least`` names."""
    if chosen and len(chosen) >= least:
        append(con, CHOSEN, pa.table(list(zip(*chosen)), names=["image_id", "file_name"]))
        chosen.clear()
