"""``fld repair``: the engine's private catalog rebuilt from the root's own files.

Every table of the catalog is rebuilt from files the engine writes beside its rows:

- ``shards``: each ``images/part-<shard_id>.parquet`` (``engine.ingest.shard_record``);
- ``rounds`` and ``round_steps``: ``rounds/round=R/`` (``config.json``, ``round.json``,
  ``steps/STEP.json``: ``engine.rounds.records``);
- ``models``: ``models/round=R/metrics.json`` (the promotion record, the row's ``metrics``), the
  checkpoint's version hashed again, ``created_at`` the time ``metrics.json`` was written;
- ``releases``: ``releases/NAME/manifest.json`` (its round and sha256), ``created_at`` the time
  the manifest was written;
- the roots the catalog was at: ``.engine/roots.json`` (``storage.catalog_moves``);

and the views are made over the Parquet files present, as every writing open makes them. The
former private file (and its write-ahead log) is renamed ``catalog.duckdb.damaged-<UTC time>``
(``replaced-`` when it still opened), never deleted; the rebuilt catalog is then published. It
runs under the root's round lock, so no round writes meanwhile. A record file that cannot be
read is named in the result and left out; everything else is rebuilt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from engine.ingest.shard_record import row_from_part
from engine.release.build import MANIFEST, sha256_file
from engine.rounds.lock import RoundLock
from engine.rounds.records import read_rounds, read_steps
from hf.loading import checkpoint_version
from storage import catalog_file, catalog_moves
from storage.catalog import Catalog
from storage.layout import DataRoot

_ROUND_FOLDER = re.compile(r"round=(\d+)")


@dataclass
class RepairResult:
    """What ``fld repair`` did: the former file's new name (None: there was none), whether it was
    damaged, the rows rebuilt per table and the record files it could not read."""

    set_aside: Path | None
    damaged: bool
    rows: dict[str, int]
    problems: list[str] = field(default_factory=list)


def _written_at(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def shard_rows(root: DataRoot, problems: list[str]) -> list[dict[str, Any]]:
    rows = []
    for part in sorted(root.images.glob("part-*.parquet")):
        try:
            rows.append(row_from_part(part))
        except ValueError as error:
            problems.append(str(error))
    return rows


def model_rows(root: DataRoot, problems: list[str]) -> list[dict[str, Any]]:
    """One row per ``models/round=R/`` whose ``metrics.json`` records a promotion decision."""
    rows = []
    for folder in sorted((root.path / "models").glob("round=*")):
        match = _ROUND_FOLDER.fullmatch(folder.name)
        metrics = folder / "metrics.json"
        if not match or not metrics.is_file():
            continue  # not a round's model, or one never evaluated and promoted (no row either)
        try:
            payload = json.loads(metrics.read_text(encoding="utf-8"))
            if not isinstance(payload, dict) or not isinstance(payload.get("promoted"), bool):
                raise ValueError("no promotion decision in it")
            version = checkpoint_version(folder)
        except (OSError, ValueError) as error:
            problems.append(f"{metrics}: {error}")
            continue
        round_ = int(match.group(1))
        rows.append({"round": round_, "path": str(root.model(round_)), "version": version,
                     "metrics": json.dumps(payload, sort_keys=True), "promoted": payload["promoted"],
                     "reason": payload.get("reason"), "created_at": _written_at(metrics)})
    return rows


def release_rows(root: DataRoot, problems: list[str]) -> list[dict[str, Any]]:
    """One row per ``releases/NAME/`` with a manifest (a release appears by rename once complete)."""
    rows = []
    for folder in sorted((root.path / "releases").glob("*")):
        manifest = folder / MANIFEST
        if folder.name.startswith(".") or not manifest.is_file():
            continue
        try:
            round_ = json.loads(manifest.read_text(encoding="utf-8"))["round"]
            rows.append({"name": folder.name, "round": int(round_), "path": str(root.release(folder.name)),
                         "manifest_sha256": sha256_file(manifest), "created_at": _written_at(manifest)})
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{manifest}: {error}")
    return rows


def catalog_rows(root: DataRoot, problems: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every catalog table that the root's files give (module docstring)."""
    return {"shards": shard_rows(root, problems), "rounds": read_rounds(root, problems),
            "round_steps": read_steps(root, problems), "models": model_rows(root, problems),
            "releases": release_rows(root, problems)}


def repair(root: DataRoot) -> RepairResult:
    """Set the private catalog aside and rebuild it from the root's files (module docstring)."""
    with RoundLock(root, purpose="repair"):
        private = root.engine_catalog
        problems: list[str] = []
        rows = catalog_rows(root, problems)  # everything read before anything moves
        damaged = private.exists() and not catalog_file.opens(private)
        aside = catalog_file.set_aside(private, "damaged" if damaged else "replaced")
        recorded, formers = catalog_moves.load_roots(root.engine_roots)
        private.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(private)) as con:  # a new file: the published copy is never adopted
            catalog_moves.seed(con, recorded or str(root.path), formers)
        with Catalog(root) as catalog:  # a root recorded elsewhere becomes a former one here
            for table, table_rows in rows.items():
                catalog.upsert(table, table_rows)
            for former in catalog_moves.former_roots(catalog.con):  # the parts' shard paths were written there
                catalog_moves.rewrite_paths(catalog.con, former, str(root.path))
        return RepairResult(aside, damaged, {table: len(table_rows) for table, table_rows in rows.items()}, problems)
