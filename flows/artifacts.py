"""Prefect artifacts of a round: a markdown summary and a table of step summaries.

Keys name the data root as well as the round (``fld-<8 hex of the root's path>-round-R``):
Prefect keeps the artifacts of every root in one database, and ``fld-round-0`` of one root must
not read as another's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from engine.rounds.summary import round_markdown, round_table


def artifact_key(root: str, round_: int) -> str:
    """The artifact key of ``round_`` of the data root at ``root`` (lowercase, digits, dashes)."""
    return f"fld-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}-round-{int(round_)}"


def publish_round(result: dict[str, Any], root: str) -> None:
    """Attach the round's summary to the current flow run (no-op for a skipped round)."""
    if result.get("skipped"):
        return
    key = artifact_key(root, result["round"])
    create_markdown_artifact(markdown=round_markdown(result), key=key,
                             description=f"fld round {result['round']} of {root}")
    create_table_artifact(table=round_table(result), key=f"{key}-steps",
                          description=json.dumps({"round": result["round"], "root": str(root)}))
