"""Prefect artifacts of a round: a markdown summary and a table of step summaries."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from engine.rounds.summary import round_markdown, round_table


def publish_round(result: dict[str, Any]) -> None:
    """Attach the round's summary to the current flow run (no-op for a skipped round)."""
    if result.get("skipped"):
        return
    key = f"fld-round-{result['round']}"
    create_markdown_artifact(markdown=round_markdown(result), key=key, description=f"fld round {result['round']}")
    create_table_artifact(table=round_table(result), key=f"{key}-steps",
                          description=json.dumps({"round": result["round"]}))
