"""A data root that was copied or moved answers from its own files.

The catalog records the root it was last opened at (table ``catalog_info``, key ``root``) and
every root it was at before (``former_roots``, JSON). When a writing ``Catalog`` opens it at
another place, the paths its tables hold under the former root (``models.path``,
``releases.path``, ``shards.shard``) are rewritten under the new one, and the views map the
``shard`` paths that Parquet files hold (``images``, ``errors``: files are never rewritten) the
same way. A reading ``Catalog`` that finds the root moved lets a writing one repair it first.
Paths outside the root (source shards elsewhere) are left alone. Every writing open also keeps
the two values in ``.engine/roots.json`` (:func:`save_roots`), so ``fld repair`` can give a
rebuilt catalog the roots it was at (:func:`load_roots`, :func:`seed`).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from storage.atomic import write_text_atomic

INFO_TABLE = "catalog_info"
#: (table, column) holding absolute paths that may lie under the root
PATH_COLUMNS = (("models", "path"), ("releases", "path"), ("shards", "shard"))


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def stored(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """The value of ``key`` in ``catalog_info`` (None: no such table or key)."""
    try:
        rows = con.execute(f"select value from {INFO_TABLE} where key = ?", [key]).fetchall()
    except duckdb.CatalogException:
        return None
    return rows[0][0] if rows else None


def moved(con: duckdb.DuckDBPyConnection, root: str) -> bool:
    """Whether the catalog was last opened at another root."""
    previous = stored(con, "root")
    return previous is not None and previous != root


def former_roots(con: duckdb.DuckDBPyConnection) -> list[str]:
    return json.loads(stored(con, "former_roots") or "[]")


def record_root(con: duckdb.DuckDBPyConnection, root: str) -> None:
    """Record ``root``; when the catalog was elsewhere, rewrite its tables' paths (module docstring)."""
    con.execute(f"create table if not exists {INFO_TABLE} (key varchar primary key, value varchar)")
    previous = stored(con, "root")
    if previous == root:
        return
    formers = former_roots(con)
    if previous is not None:
        formers = [f for f in formers if f != root] + [previous]
        rewrite_paths(con, previous, root)
    con.execute(f"insert or replace into {INFO_TABLE} values ('root', ?), ('former_roots', ?)",
                [root, json.dumps(formers)])


def rewrite_paths(con: duckdb.DuckDBPyConnection, former: str, root: str) -> None:
    """Rewrite the tables' paths under ``former`` to the same paths under ``root``."""
    prefix = former.rstrip("/") + "/"
    for table, column in PATH_COLUMNS:
        con.execute(f"update {table} set {column} = ? || substr({column}, ?) where starts_with({column}, ?)",
                    [root.rstrip("/") + "/", len(prefix) + 1, prefix])


def save_roots(con: duckdb.DuckDBPyConnection, record: Path) -> None:
    """Keep the recorded root and former roots in the file ``record`` too (``.engine/roots.json``),
    written only when it says something else, so a rebuilt catalog knows them."""
    text = json.dumps({"root": stored(con, "root"), "former_roots": former_roots(con)}, sort_keys=True)
    try:
        if record.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_text_atomic(text, record)


def load_roots(record: Path) -> tuple[str | None, list[str]]:
    """``(root, former roots)`` that ``record`` keeps; ``(None, [])`` when there is no such file
    (or it cannot be read: the views then map no former root)."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        root, formers = data.get("root"), data.get("former_roots") or []
    except (OSError, ValueError, AttributeError):
        return None, []
    if not isinstance(root, str) or not all(isinstance(f, str) for f in formers):
        return None, []
    return root, list(formers)


def seed(con: duckdb.DuckDBPyConnection, root: str, formers: list[str]) -> None:
    """Record ``root`` and ``formers`` in a new, empty catalog (a rebuild), before any table exists."""
    con.execute(f"create table if not exists {INFO_TABLE} (key varchar primary key, value varchar)")
    con.execute(f"insert or replace into {INFO_TABLE} values ('root', ?), ('former_roots', ?)",
                [root, json.dumps(formers)])


def path_expression(column: str, formers: list[str], root: str) -> str:
    """SQL for ``column`` with every former root's prefix replaced by ``root``'s."""
    expr = f'"{column}"'
    for former in formers:
        prefix = former.rstrip("/") + "/"
        expr = (f"(CASE WHEN starts_with({expr}, {_sql(prefix)}) THEN {_sql(root.rstrip('/') + '/')} || "
                f"substr({expr}, {len(prefix) + 1}) ELSE {expr} END)")
    return expr
