"""The DuckDB catalog of a data root: small tables plus views over the Parquet datasets.

``ROOT/catalog.duckdb`` holds the ``rounds``, ``shards``, ``models``, ``releases`` and
``round_steps`` tables and one view per Parquet dataset (``images``, ``annotations``,
``curated``, ``decision_trails``, ``errors``, ``review_queue``, ``review_verdicts``) plus
``decisions``, the long form of the trails. The stored views name their files relative to the
root, so a copied root answers from its own files: open the catalog from the root
(``cd ROOT && duckdb -readonly catalog.duckdb "select count(*) from images"``) or, from
elsewhere, ``SET file_search_path = 'ROOT'`` first. The engine's writing connection sets that
path itself; its reading ones make temporary views with absolute paths. Views are rebuilt by
:meth:`Catalog.refresh_views` on every writing open, so a moved root is repaired by the next
``fld`` call; code that only added Parquet files calls :func:`publish_views`. A dataset with no
files yet is a view over an empty table of its schema.

Only the driver process opens the catalog (DuckDB allows one writer); workers write Parquet.
The engine opens its private copy (``storage.catalog_file``: ``ROOT/.engine/catalog.duckdb``)
and publishes ``ROOT/catalog.duckdb`` when a writing :class:`Catalog` closes, so a reader of the
published file never blocks a round; the engine never opens the published file. Code that only
reads opens :meth:`Catalog.reading` (the private file through a read-only connection, which
never writes or publishes) or, for long reads, ``Catalog(root, read_only=True)`` (a snapshot of
its tables in memory; the file is let go at once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import duckdb
import pyarrow as pa

from storage import catalog_file, catalog_moves, schema
from storage.decisions import DECISIONS_VIEW_SQL
from storage.layout import DataRoot

#: tables stored inside the DuckDB file, with their primary key columns
TABLES: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "rounds": (schema.ROUNDS, ("round",)),
    "shards": (schema.SHARDS, ("shard_id",)),
    "models": (schema.MODELS, ("round",)),
    "releases": (schema.RELEASES, ("name",)),
    "round_steps": (schema.ROUND_STEP_RECORDS, ("round", "step")),
}


@dataclass(frozen=True)
class ParquetDataset:
    """A Parquet dataset under the root, exposed as a view. Columns of ``schema`` that no file
    has (files written by an earlier version) read as typed NULLs; ``legacy`` names, per
    column, the column that held its values in earlier files (read when the column is null)."""

    name: str
    glob: str  # relative to the root
    schema: pa.Schema
    extra_sql: str = ""  # extra select-list items (e.g. a column taken from the path)
    legacy: tuple[tuple[str, str], ...] = ()  # (column, the earlier files' column with its values)


DATASETS = (
    ParquetDataset("images", "images/part-*.parquet", schema.IMAGES),
    ParquetDataset("annotations", "annotations/round=*/source=*/*.parquet", schema.ANNOTATIONS),
    ParquetDataset("curated", "curated/round=*/*.parquet", schema.CURATED,
                   "CAST(regexp_extract(filename, 'round=([0-9]+)', 1) AS INTEGER) AS curated_round"),
    # trails written before ``row``/``absorbed_row`` held every absorbing row's id in ``absorbed_by``
    ParquetDataset("decision_trails", "decisions/round=*/*.parquet", schema.DECISION_TRAILS,
                   legacy=(("merged_into", "absorbed_by"),)),
    ParquetDataset("errors", "errors/round=*/source=*/*.parquet", schema.ERRORS),
    ParquetDataset("review_queue", "review/round=*/queue.parquet", schema.REVIEW_QUEUE),
    ParquetDataset("review_verdicts", "reviews/import=*/verdicts.parquet", schema.REVIEW_VERDICTS),
)


#: views defined over the dataset views: the long form of the decisions (one row per rule)
DERIVED_VIEWS = {"decisions": DECISIONS_VIEW_SQL}


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def publish_views(root: DataRoot | str | Path) -> None:
    """Publish the catalog with views over the files present now (a writing open refreshes the
    views; closing it publishes the snapshot readers open)."""
    Catalog(root).close()


class Catalog:
    """An open connection to the root's catalog; use as a context manager. Writing (the default)
    opens the engine's private file and publishes it on close; :meth:`reading` opens the engine's
    state now without writing (brief reads by the engine's own code); ``read_only`` takes a
    snapshot of it into memory and lets the file go at once (long reads, such as ``fld stats``:
    no round waits for them). No mode opens the published file, which is its readers' to use.
    A catalog opened for reading raises on :meth:`upsert`."""

    def __init__(self, root: DataRoot | str | Path, read_only: bool = False, *, current: bool = False):
        self.root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
        self.read_only = read_only or current
        if self.read_only:
            self.con = self._connect_current(snapshot=read_only)
            return
        private = self.root.engine_catalog
        self.root.ensure()
        catalog_file.adopt(private, self.root.catalog)
        private.parent.mkdir(parents=True, exist_ok=True)
        self.con = catalog_file.connect(private, False)
        try:
            if self._relative:  # the stored views name the files relative to the root (module docstring)
                self.con.execute(f"set file_search_path = {_sql_string(str(self.root.path))}")
            self._create_tables()
            catalog_moves.record_root(self.con, str(self.root.path))
            catalog_moves.save_roots(self.con, self.root.engine_roots)
            self.refresh_views()
        except duckdb.Error as error:
            self.con.close()
            if catalog_file.damaged(error):
                raise catalog_file.unreadable(private, error) from None
            raise
        except BaseException:
            self.con.close()
            raise

    @property
    def _relative(self) -> bool:
        """Whether the stored views name their files relative to the root: always, except under a
        root whose path has a comma (DuckDB's ``file_search_path`` is a comma-separated list)."""
        return "," not in str(self.root.path)

    @classmethod
    def reading(cls, root: DataRoot | str | Path) -> "Catalog":
        """The engine's catalog as it is now, for code that only reads: the private file through
        a read-only DuckDB connection (``storage.catalog_file.connect_reading``), so it never
        writes, never publishes, and waits only while another fld process writes (a reader
        called inside this process's writer shares it). Its views over the Parquet files present
        now are temporary ones of this connection (as a writing open would make them, nothing
        stored); a root without a catalog reads as an empty one (in memory, no file made); a
        moved root is first repaired by one writing open."""
        return cls(root, current=True)

    def _connect_current(self, snapshot: bool = False) -> duckdb.DuckDBPyConnection:
        """The connection of :meth:`reading`; ``snapshot``: the file's tables copied into an
        in-memory database and the file closed at once."""
        private, published = self.root.engine_catalog, self.root.catalog
        if not private.exists() and not published.exists():
            self.con = duckdb.connect(":memory:")  # nothing recorded yet: empty tables, views over the files
        else:
            path = private if private.exists() else published  # published: an older root
            self.con = catalog_file.connect_reading(path)
            try:
                if catalog_moves.moved(self.con, str(self.root.path)):
                    self.con.close()  # views and paths of the former root: a writing open rewrites them
                    Catalog(self.root).close()
                    self.con = catalog_file.connect_reading(private)
                if snapshot:
                    self.con = _in_memory(self.con)
            except duckdb.Error as error:
                self.con.close()
                if catalog_file.damaged(error):
                    raise catalog_file.unreadable(path, error) from None
                raise
        try:
            self._create_tables(temp=True)
            self.refresh_views(temp=True)
        except BaseException:
            self.con.close()
            raise
        return self.con

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close; a writing catalog is checkpointed and published (``storage.catalog_file``)."""
        if self.read_only:
            self.con.close()
            return
        try:
            self.con.execute("checkpoint")
        except duckdb.Error:  # another connection of this process is mid-transaction: its close checkpoints
            pass
        finally:
            self.con.close()
        catalog_file.publish(self.root.engine_catalog, self.root.catalog)

    # ----------------------------------------------------------------------- tables
    def _create_tables(self, temp: bool = False) -> None:
        """The tables of this version; ``temp``: as temporary tables of this connection, where the
        file lacks them (a reader: nothing is stored)."""
        kind = "temp table" if temp else "table"
        for name, (table_schema, key) in TABLES.items():
            self._create_from_schema(name, table_schema, () if temp else key, kind)
        for dataset in DATASETS:  # remade on every open: they follow the schemas of this version
            empty = dataset.schema.empty_table()  # noqa: F841 (read by DuckDB's replacement scan)
            self.con.execute(f"create or replace {kind} _empty_{dataset.name} as select * from empty")

    def _create_from_schema(self, name: str, table_schema: pa.Schema, key: tuple[str, ...],
                            kind: str = "table") -> None:
        exists = self.con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [name]
        ).fetchone()[0]
        if exists:
            return
        empty = table_schema.empty_table()  # noqa: F841 (read by DuckDB's replacement scan)
        self.con.execute(f"create {kind} {name} as select * from empty")
        if key:
            self.con.execute(f"create unique index {name}_key on {name} ({', '.join(key)})")

    def upsert(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Insert rows into a catalog table, replacing rows with the same primary key."""
        if self.read_only:
            raise duckdb.InvalidInputException(f"the catalog of {self.root.path} is open for reading; "
                                               f"write through a writing Catalog")
        table_schema, key = TABLES[table]
        arrow = schema.table_from_rows(rows, table_schema)  # noqa: F841
        if arrow.num_rows == 0:
            return
        match = " and ".join(f"{table}.{k} = arrow.{k}" for k in key)
        self.con.execute("begin")
        self.con.execute(f"delete from {table} where exists (select 1 from arrow where {match})")
        self.con.execute(f"insert into {table} select * from arrow")
        self.con.execute("commit")

    # ------------------------------------------------------------------------ views
    def refresh_views(self, temp: bool = False) -> None:
        """(Re)create one view per Parquet dataset over the files present now (``temp``: as
        temporary views of this connection, which shadow the stored ones)."""
        view = "temp view" if temp else "view"
        formers = catalog_moves.former_roots(self.con)
        for dataset in DATASETS:
            if not any(self.root.path.glob(dataset.glob)):
                extra = f", {dataset.extra_sql.replace('filename', 'NULL::VARCHAR')}" if dataset.extra_sql else ""
                self.con.execute(f"create or replace {view} {dataset.name} as select *{extra} from _empty_{dataset.name}")
                continue
            pattern = _sql_string(dataset.glob if self._relative and not temp else str(self.root.path / dataset.glob))
            extra = f", {dataset.extra_sql}" if dataset.extra_sql else ""
            source = f"read_parquet({pattern}, union_by_name = true, filename = true, hive_partitioning = false)"
            try:
                self.con.execute(f"create or replace {view} {dataset.name} as "
                                 f"select {self._columns(dataset, source, formers)}{extra} from {source}")
            except duckdb.BinderException:  # a column no file has (files of an earlier version)
                self.con.execute(f"create or replace {view} {dataset.name} as "
                                 f"select {self._columns(dataset, source, formers, describe=True)}{extra} from {source}")
        for name, sql in DERIVED_VIEWS.items():
            self.con.execute(f"create or replace {view} {name} as {sql}")

    def _columns(self, dataset: ParquetDataset, source: str, formers: list[str], describe: bool = False) -> str:
        """The select list of ``dataset``'s view over ``source``: its schema's columns and,
        with ``describe`` (or legacy columns to look for: one more read of the files' footers),
        typed NULLs for those no file has and legacy columns read where a column is null; ``shard``
        paths under ``formers`` (the roots it was at before) read under this root."""
        moved = {"shard": catalog_moves.path_expression("shard", formers, str(self.root.path))} if formers else {}
        if not (describe or dataset.legacy):
            return ", ".join(f'{moved[name]} AS "{name}"' if name in moved else f'"{name}"'
                             for name in dataset.schema.names)
        present = {row[0] for row in self.con.execute(f"describe select * from {source}").fetchall()}
        types = {row[0]: row[1] for row in self.con.execute(f"describe _empty_{dataset.name}").fetchall()}
        legacy = dict(dataset.legacy)
        items = []
        for name in dataset.schema.names:
            expr = f'"{name}"' if name in present else f"NULL::{types[name]}"
            if legacy.get(name) in present:
                expr = f'coalesce({expr}, "{legacy[name]}"::{types[name]})'
            if name in moved and expr == f'"{name}"':
                expr = moved[name]
            items.append(expr if expr == f'"{name}"' else f'{expr} AS "{name}"')
        return ", ".join(items)

    # ---------------------------------------------------------------------- queries
    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Run ``sql`` and return all rows."""
        return self.con.execute(sql, params or []).fetchall()

    def known_image_ids(self) -> set[str]:
        """Ids of every image already ingested with status ``ok``."""
        rows = self.con.execute("select image_id from images where status = 'ok'").fetchall()
        return {row[0] for row in rows}

    def registered_shards(self) -> set[str]:
        return {row[0] for row in self.con.execute("select shard_id from shards").fetchall()}

    def record_json(self, table: str, row: dict[str, Any]) -> None:
        """Upsert one row whose dict/list values are stored as JSON text."""
        self.upsert(table, [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}])


def _in_memory(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """An in-memory database holding a copy of the catalog tables of ``con``, which is closed."""
    memory = duckdb.connect(":memory:")
    try:
        names = {row[0] for row in con.execute("select table_name from information_schema.tables "
                                               "where table_type = 'BASE TABLE'").fetchall()}
        for name in [*TABLES, catalog_moves.INFO_TABLE]:
            if name in names:
                memory.register("_copied", con.sql(f"select * from {name}").to_arrow_table())
                memory.execute(f"create table {name} as select * from _copied")
                memory.unregister("_copied")
    except BaseException:
        memory.close()
        raise
    finally:
        con.close()
    return memory
