"""Where the catalog lives, so that readers can never block the engine.

DuckDB lets one process write a database file, and a reader in another process (a notebook, a
dashboard, the ``duckdb`` command line) blocks that writer for as long as it stays open. So the
engine keeps its catalog in a private file, ``ROOT/.engine/catalog.duckdb``, that only ``fld``
processes open, each briefly, and after every write *publishes* a copy as
``ROOT/catalog.duckdb`` for everyone else: the copy is written next to it and renamed over it
(atomic on POSIX), so a reader holding the previous file keeps reading that snapshot and the next
one opens the new file. The engine never opens the published file (a user may write to it,
overwrite it or delete it): anything written into it, and any write-ahead log a user's client
left beside it, is replaced by the next publish.

A private file DuckDB cannot open (truncated, overwritten, a corrupt block) is one line that
says ``fld repair --root ROOT`` (:func:`unreadable`): the engine's state is rebuilt from the
root's own files, and the damaged file is kept aside, never deleted.

Two ``fld`` processes that open the private file at once wait for each other, up to
``CATALOG_WAIT_S`` seconds, then :class:`CatalogBusy` says so in one line. Engine code that only
reads opens the private file through :func:`connect_reading` (a read-only DuckDB connection:
readers share the file, wait only while a writer has it, and never write or publish).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

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
                raise unreadable(path, error) from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        except duckdb.Error as error:  # a corrupt block, a log of another file: no database to open
            raise unreadable(path, error) from None


def damaged(error: duckdb.Error) -> bool:
    """Whether ``error`` (raised while opening or reading a catalog) says the file is damaged."""
    return type(error) is duckdb.Error or isinstance(error, (duckdb.SerializationException, duckdb.InternalException)) \
        or "corrupt" in str(error).lower()


def unreadable(path: Path, error: duckdb.Error) -> Exception:
    """The one line for a catalog file DuckDB cannot open or read: a ``PermissionError`` where it
    may not (the CLI says what to do), else :class:`CatalogUnreadable`, which names ``fld repair``
    (the catalog is rebuilt from the root's files; the damaged file is kept aside)."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "permission denied" in first.lower():
        return PermissionError(errno.EACCES, f"cannot open the catalog ({first})", str(path))
    root = path.parent.parent if path.parent.name == ".engine" else path.parent
    return CatalogUnreadable(f"the catalog {path} cannot be opened ({first}); run `fld repair --root {root}`: "
                             f"it sets the damaged file aside and rebuilds the catalog from the root's files")


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


def opens(path: Path) -> bool:
    """Whether DuckDB opens ``path`` and reads its list of tables (a damaged file does not); waits
    like :func:`connect` while another process writes it (then :class:`CatalogBusy`)."""
    try:
        con = connect(path, True)
    except CatalogUnreadable:
        return False
    try:
        con.execute("select table_name from information_schema.tables").fetchall()
        return True
    except duckdb.Error as error:
        if damaged(error):
            return False
        raise
    finally:
        con.close()


def set_aside(path: Path, why: str) -> Path | None:
    """Rename ``path`` (and its write-ahead log) to ``NAME.WHY-<UTC time>`` beside it, kept for the
    user, never deleted; returns the new path (None: there was no file)."""
    if not path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    os.rename(path, target)
    if wal(path).exists():
        os.rename(wal(path), wal(target))
    return target


def adopt(private: Path, published: Path) -> None:
    """A root made before the private catalog existed: its published file becomes the private one."""
    if private.exists() or not published.exists():
        return
    private.parent.mkdir(parents=True, exist_ok=True)
    _copy_then_rename(published, private)


def wal(database: Path) -> Path:
    """The write-ahead log DuckDB keeps beside ``database`` while a writer has changes in it."""
    return database.with_name(database.name + ".wal")


def publish(private: Path, published: Path) -> None:
    """Copy the (closed, checkpointed) private catalog over the published one, atomically; on any
    error (a full disk) the temporary copy is removed and the previous published file stays.

    A user's client that wrote to the published file leaves its write-ahead log beside it (killed
    before its checkpoint, or still open); DuckDB would replay that log into the new file and
    refuse to open it. So the log goes once the new copy is complete and before the rename: a
    reader sees the previous file with or without its log, then the new one without any.
    (A client still holding the replaced file may write a new log later; the next publish
    removes that one.)"""
    _copy_then_rename(private, published, before_rename=lambda: wal(published).unlink(missing_ok=True))


def _copy_then_rename(source: Path, target: Path, before_rename: Callable[[], None] = lambda: None) -> None:
    with atomic_path(target) as tmp:  # a failed copy (a full disk) leaves no temp and the old file
        shutil.copyfile(source, tmp)
        before_rename()
