"""The rounds' catalog rows as files of the root, so ``fld repair`` can rebuild them.

The ``rounds`` and ``round_steps`` tables hold what no other file of the root says (a round's
status and times, a step's summary), so each row is also written, atomically and before its
catalog row, as JSON: ``rounds/round=R/round.json`` (the ``rounds`` row without ``config``,
which is ``rounds/round=R/config.json``) and ``rounds/round=R/steps/STEP.json`` (the
``round_steps`` row). Timestamps are ISO 8601 strings with their UTC offset; other values as
the row has them. A round folder without ``round.json`` (made before these files) reads as
``done`` when its dashboard exists, else ``failed`` (resumed by the next run; its steps resume
from their own markers).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from storage import schema
from storage.atomic import write_text_atomic
from storage.layout import DataRoot

ROUND_FILE = "round.json"
STEPS_FOLDER = "steps"
_ROUND_FOLDER = re.compile(r"round=(\d+)")


def _encode(row: dict[str, Any], table_schema: pa.Schema, leave_out: tuple[str, ...] = ()) -> str:
    values = {name: row.get(name) for name in table_schema.names if name not in leave_out}
    return json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()},
                      sort_keys=True, indent=1)


def _decode(path: Path, table_schema: pa.Schema) -> dict[str, Any]:
    """A record file as a row of ``table_schema``; ``ValueError`` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) - set(table_schema.names):
            raise ValueError("not a record of this table")
        for field in table_schema:
            if pa.types.is_timestamp(field.type) and isinstance(data.get(field.name), str):
                data[field.name] = datetime.fromisoformat(data[field.name])
        schema.table_from_rows([data], table_schema)  # the types check
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as error:
        raise ValueError(f"{path}: {error}") from None
    return data


def write_round(root: DataRoot, row: dict[str, Any]) -> Path:
    """``rounds/round=R/round.json`` of a ``rounds`` row (its config is ``config.json``)."""
    return write_text_atomic(_encode(row, schema.ROUNDS, ("config",)), root.round_folder(row["round"]) / ROUND_FILE)


def write_step(root: DataRoot, row: dict[str, Any]) -> Path:
    """``rounds/round=R/steps/STEP.json`` of a ``round_steps`` row."""
    folder = root.round_folder(row["round"]) / STEPS_FOLDER
    return write_text_atomic(_encode(row, schema.ROUND_STEP_RECORDS), folder / f"{row['step']}.json")


def _round_folders(root: DataRoot) -> list[tuple[int, Path]]:
    found = []
    for folder in (root.path / "rounds").glob("round=*"):
        match = _ROUND_FOLDER.fullmatch(folder.name)
        if match and folder.is_dir():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def read_rounds(root: DataRoot, problems: list[str]) -> list[dict[str, Any]]:
    """The ``rounds`` rows the root's files give; a record that cannot be read is named in
    ``problems`` and its round read as one without a record (module docstring)."""
    rows = []
    for round_, folder in _round_folders(root):
        row: dict[str, Any] | None = None
        if (folder / ROUND_FILE).exists():
            try:
                row = _decode(folder / ROUND_FILE, schema.ROUNDS)
            except ValueError as error:
                problems.append(str(error))
        if row is None or row.get("round") != round_:
            row = {"round": round_, "status": "done" if root.report(round_).exists() else "failed"}
        config = folder / "config.json"
        row["config"] = config.read_text(encoding="utf-8") if config.exists() else None
        rows.append(row)
    return rows


def read_steps(root: DataRoot, problems: list[str]) -> list[dict[str, Any]]:
    """The ``round_steps`` rows the root's files give; unreadable records are named in ``problems``."""
    rows = []
    for round_, folder in _round_folders(root):
        for path in sorted((folder / STEPS_FOLDER).glob("*.json")):
            try:
                row = _decode(path, schema.ROUND_STEP_RECORDS)
            except ValueError as error:
                problems.append(str(error))
                continue
            if row.get("round") == round_ and row.get("step") == path.stem:
                rows.append(row)
            else:
                problems.append(f"{path}: records round {row.get('round')} step {row.get('step')!r}, not its own")
    return rows
