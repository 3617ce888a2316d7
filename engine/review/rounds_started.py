"""The last round that has started, so an import can target the next one."""

from __future__ import annotations

import re

import duckdb

from storage.layout import DataRoot
from storage.schema import HUMAN_SOURCE

_ROUND = re.compile(r"round=(\d+)$")


def last_started_round(root: DataRoot) -> int:
    """The highest round with a record, a curated set or annotations of a source other than
    ``human`` (-1 when none)."""
    rounds = [-1]
    for folder in (root.path / "curated", root.path / "annotations"):
        for path in folder.glob("round=*") if folder.is_dir() else []:
            match = _ROUND.search(path.name)
            if not match:
                continue
            sources = [p.name for p in path.glob("source=*")] if folder.name == "annotations" else ["curated"]
            if any(name != f"source={HUMAN_SOURCE}" for name in sources):
                rounds.append(int(match.group(1)))
    if root.catalog.exists():
        try:
            with duckdb.connect(str(root.catalog), read_only=True) as con:
                value = con.execute("select max(round) from rounds").fetchall()[0][0]
            rounds.append(-1 if value is None else int(value))
        except duckdb.Error:
            pass  # no rounds table yet: the folders tell
    return max(rounds)
