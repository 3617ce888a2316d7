"""Where the catalog lives, so that readers can never block the engine.

DuckDB lets one process write a database file, and a reader in another process (a notebook, a
dashboard, the ``duckdb`` command line) blocks that writer for as long as it stays open. So the
engine keeps its catalog in a private file, ``ROOT/.engine/catalog.duckdb``, that only ``fld``
processes open, each briefly, and after every write *publishes* a copy as
``ROOT/catalog.duckdb`` for everyone else: the copy is written next to it and renamed over it
(atomic on POSIX), so a reader holding the previous file keeps reading that snapshot and the next
one opens the new file. Anything written into the published file is replaced by the next
publish: it is for reading.

Two ``fld`` processes that open the private file at once wait for each other, up to
``CATALOG_WAIT_S`` seconds, then :class:`CatalogBusy` says so in one line. Engine code that only
reads opens the private file through :func:`connect_reading` (a read-only DuckDB connection:
readers share the file, wait only while a writer has it, and never write or publish).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb

from storage.atomic import atomic_path

#: seconds an fld process waits for another one to close the private catalog
CATALOG_WAIT_S = 120.0


class CatalogBusy(RuntimeError):
    """Another fld process kept the private catalog open longer than :data:`CATALOG_WAIT_S`."""


class CatalogUnreadable(ValueError):
    """The catalog file is not a DuckDB database (truncated, overwritten): one line, exit 2."""


def _locked(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text or "conflicting" in text


def _other_mode_here(error: duckdb.Error) -> bool:
    """DuckDB opens a file in one mode per process: this process has it open in the other one."""
    return isinstance(error, duckdb.ConnectionException) and "different configuration" in str(error)


def connect(path: Path, read_only: bool, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to ``path``, retried (0.05 .. 1 s apart, for ``wait_s``, default
    :data:`CATALOG_WAIT_S`) while another process holds it (or, for a writer, while another
    thread of this process reads it)."""
    wait_s = CATALOG_WAIT_S if wait_s is None else wait_s
    deadline, pause = time.monotonic() + wait_s, 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as error:
            if read_only or not _other_mode_here(error):
                raise  # a reader inside this process's writer: connect_reading shares the writer's database
            if time.monotonic() >= deadline:
                raise CatalogBusy(f"this process keeps the catalog {path} open for reading (waited "
                                  f"{wait_s:.0f} s)") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        except duckdb.IOException as error:
            if not _locked(error) or time.monotonic() >= deadline:
                if _locked(error):
                    raise CatalogBusy(f"another fld command keeps the catalog {path} open (waited {wait_s:.0f} s); "
                                      f"run this again when it has finished") from None
                raise CatalogUnreadable(f"the catalog {path} cannot be opened ({str(error).splitlines()[0]}); "
                                        f"restore it from a copy, or delete it and the .engine folder: the "
                                        f"next fld command rebuilds the views from the Parquet files") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def connect_reading(path: Path, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to ``path`` (any write through it raises); it waits only while
    another process writes the file. Where this process already has the file open for writing
    (a reader called inside a writing ``Catalog``), it shares that open database instead, since
    DuckDB opens a file in one mode per process: it sees what the writer has committed."""
    try:
        return connect(path, True, wait_s)
    except duckdb.ConnectionException as error:
        if not _other_mode_here(error):
            raise
        return duckdb.connect(str(path))


def adopt(private: Path, published: Path) -> None:
    """A root made before the private catalog existed: its published file becomes the private one."""
    if private.exists() or not published.exists():
        return
    private.parent.mkdir(parents=True, exist_ok=True)
    _copy_then_rename(published, private)


def publish(private: Path, published: Path) -> None:
    """Copy the (closed, checkpointed) private catalog over the published one, atomically; on any
    error (a full disk) the temporary copy is removed and the previous published file stays."""
    _copy_then_rename(private, published)


def _copy_then_rename(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:  # a failed copy (a full disk) leaves no temp and the old file
        shutil.copyfile(source, tmp)
