"""Human-readable summaries of a round's steps (for the CLI, Prefect artifacts, the demo)."""

from __future__ import annotations

import json
from typing import Any

# the few figures of each step worth a line; anything else stays in the JSON summary
HEADLINES: dict[str, tuple[str, ...]] = {
    "ingest": ("ok", "duplicate", "error", "shards_ingested"),
    "curate": ("input_rows", "kept_new_rows", "dropped_rows", "curated_rows", "dropped_by_rule"),
    "train": ("steps", "train_loss", "val_loss", "samples_per_second"),
    "evaluate": ("val_loss", "box_map", "mask_map", "caption_agreement", "ocr_agreement", "grounding_recall"),
    "promote": ("promoted", "reason"),
    "dashboard": ("path",),
}


def step_headline(step: str, summary: dict[str, Any]) -> str:
    """One line of the most telling figures of a step's summary."""
    if summary.get("skipped"):
        prefix = "(already done) "
    else:
        prefix = ""
    if step == "annotate":
        parts = [f"{name}: {s.get('images', 0)} img, {s.get('rows', 0)} rows, {s.get('errors', 0)} errors"
                 for name, s in summary.get("sources", {}).items()]
        return prefix + ("; ".join(parts) or "no annotators")
    keys = HEADLINES.get(step, tuple(summary)[:6])
    parts = [f"{k}={json.dumps(summary[k], default=str)}" for k in keys if k in summary]
    return prefix + (", ".join(parts) or "done")


def round_table(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per step: ``{"step": ..., "summary": ...}``."""
    return [{"step": step, "summary": step_headline(step, summary)} for step, summary in result["steps"].items()]


def round_markdown(result: dict[str, Any]) -> str:
    """A markdown report of the round."""
    lines = [f"# fld round {result['round']}", "", "| step | summary |", "|---|---|"]
    lines += [f"| {row['step']} | {row['summary']} |" for row in round_table(result)]
    return "\n".join(lines) + "\n"
