"""The last round that has started, so an import can target the next one."""

from __future__ import annotations

import re

from storage.catalog import Catalog
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
    with Catalog.reading(root) as catalog:  # the engine's own state, never the published copy
        value = catalog.query("select max(round) from rounds")[0][0]
    rounds.append(-1 if value is None else int(value))
    return max(rounds)
