"""Replayable hostile cases of issue 30, classes 2, 5, 6 and part of 10: ``fld serve``, the
published catalog, recovering a damaged private catalog, and copied roots.

Every case is a function ``case(workdir) -> outcome`` that runs ``fld`` (or ``fld serve``) in
subprocesses with timeouts; an outcome is one of ``ok``, ``traceback`` (a Python traceback where
one line or a success was due), ``accepted-bad`` (the engine let the bad thing happen: a file
outside ``reports/`` served, a round broken by a user's client of the published file, history lost
or a deletion advised) or ``hang`` (a subprocess or request ran past its timeout).
:func:`run_all` runs every class; ``CLASSES`` maps a class to its cases (name -> function).
Cases that need a data root with a finished round share one, built once per ``workdir`` by a real
``fld round`` and ``fld release build`` (about a minute); each case works on its own copy.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

import duckdb

REPO = Path(__file__).resolve().parents[2]
FLD = Path(sys.executable).with_name("fld")
TIMEOUT_S = 120.0  # one fld command (seconds)
ROUND_TIMEOUT_S = 600.0  # the shared round root's fld round (seconds)


class Hang(Exception):
    """A subprocess or request ran past its timeout."""


def _env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PREFECT_HOME": str(workdir / "prefect-home")}


def fld(workdir: Path, *args: str, timeout: float = TIMEOUT_S, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``fld ARGS`` in a subprocess; raises :class:`Hang` past ``timeout`` seconds."""
    try:
        return subprocess.run([str(FLD), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or workdir, env=_env(workdir))
    except subprocess.TimeoutExpired:
        raise Hang(" ".join(args)) from None


def _failed(run: subprocess.CompletedProcess) -> str | None:
    """``traceback`` or ``accepted-bad`` (a command that had to succeed failed), None when it succeeded."""
    if "Traceback" in run.stderr:
        return "traceback"
    return None if run.returncode == 0 else "accepted-bad"


def _jpeg(seed: int) -> bytes:
    from tests.images import jpeg

    return jpeg(seed=seed)


def _shard(folder: Path, name: str, seeds: range) -> Path:
    """A tar shard of small JPEGs, one per seed."""
    from tests.shards import write_tar

    folder.mkdir(parents=True, exist_ok=True)
    return write_tar(folder / f"{name}.tar", [(f"{name}-{s}.jpg", _jpeg(s)) for s in seeds])


def _ingested_root(workdir: Path, name: str) -> tuple[Path, Path]:
    """``(root, sources)``: a root with one shard of two images ingested by ``fld ingest``."""
    root, sources = workdir / name, workdir / f"{name}-src"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(sources, ignore_errors=True)
    run = fld(workdir, "ingest", "--root", str(root), str(_shard(sources, "a", range(2))))
    if run.returncode:
        raise RuntimeError(f"fld ingest failed: {run.stderr[-2000:]}")
    return root, sources


def _stats_ok(workdir: Path, root: Path) -> int | str:
    """The ``ok`` image count ``fld stats --json`` prints, or the outcome of its failure."""
    run = fld(workdir, "stats", "--root", str(root), "--json")
    failure = _failed(run)
    if failure:
        return failure
    return int(json.loads(run.stdout)["images"]["by_status"].get("ok", 0))


def _plain_count(root: Path, sql: str = "select count(*) from images where status = 'ok'") -> int | None:
    """What a user's plain DuckDB client, opened from the root, answers (None: it cannot open or query)."""
    here = os.getcwd()
    os.chdir(root)
    try:
        with duckdb.connect("catalog.duckdb", read_only=True) as con:
            return int(con.execute(sql).fetchone()[0])
    except duckdb.Error:
        return None
    finally:
        os.chdir(here)


# ------------------------------------------------------------------------------------ class 2: serve
class Server:
    """``fld serve --root ROOT --port 0`` in a subprocess; ``port`` read from its first line."""

    def __init__(self, workdir: Path, root: Path):
        self.process = subprocess.Popen([str(FLD), "serve", "--root", str(root), "--port", "0"], cwd=workdir,
                                        env=_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True)
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT_S)
        if not ready:
            self.stop()
            raise Hang("fld serve printed nothing")
        line = self.process.stdout.readline()
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])

    def get(self, path: str) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET path``; status 0 when the server dropped the connection."""
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            con.putrequest("GET", path, skip_accept_encoding=True)
            con.endheaders()
            response = con.getresponse()
            return response.status, response.read()
        except socket.timeout:
            raise Hang(f"GET {path[:60]}") from None
        except (ConnectionError, http.client.HTTPException):
            return 0, b""
        finally:
            con.close()

    def stop(self) -> str:
        """Stop the server; returns its stderr."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            _, err = self.process.communicate()
        return err or ""


def _served_root(workdir: Path, name: str) -> Path:
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "reports" / "round=0").mkdir(parents=True)
    (root / "reports" / "round=0" / "dashboard.html").write_text("<html>round 0</html>")
    return root


def _serving(workdir: Path, name: str, probe: Callable[[Server, Path], str]) -> str:
    """Run ``probe(server, root)`` against ``fld serve`` of a fresh root; a traceback on the server's
    stderr, or a server that stopped answering, is the outcome too."""
    root = _served_root(workdir, name)
    server = Server(workdir, root)
    try:
        outcome = probe(server, root)
        if outcome == "ok" and server.get("/round=0/dashboard.html")[0] != 200:
            outcome = "accepted-bad"  # it stopped serving
    except Hang:
        outcome = "hang"
    finally:
        err = server.stop()
    return "traceback" if "Traceback" in err and outcome == "ok" else outcome


def case_serve_symlink_swap(workdir: Path) -> str:
    """``reports/x.html`` swapped between a file and a link to a secret outside the root while it is
    requested: the secret must never be served (the check is on the opened file, never before it)."""
    secret = workdir / "secret.txt"
    secret.write_text("SECRET-d41d8cd98f00b204")

    def probe(server: Server, root: Path) -> str:
        target, stop = root / "reports" / "x.html", threading.Event()
        target.write_text("<html>fine</html>")

        def swap() -> None:
            link, plain = root / "reports" / ".x.link", root / "reports" / ".x.plain"
            while not stop.is_set():
                link.unlink(missing_ok=True)
                link.symlink_to(secret)
                os.replace(link, target)
                plain.write_text("<html>fine</html>")
                os.replace(plain, target)

        swapper = threading.Thread(target=swap, daemon=True)
        swapper.start()
        try:
            for _ in range(2000):
                if b"SECRET" in server.get("/x.html")[1]:
                    return "accepted-bad"
        finally:
            stop.set()
            swapper.join(10)
        return "ok"

    return _serving(workdir, "serve-swap", probe)


def case_serve_long_segment(workdir: Path) -> str:
    """A 256-character path segment (and a path longer than PATH_MAX) is a 404, not a traceback."""

    def probe(server: Server, root: Path) -> str:
        for path in ("/" + "a" * 256, "/round=0/" + "b" * 300 + ".html", "/" + "/".join(["c" * 200] * 30)):
            if server.get(path)[0] not in (400, 404):
                return "traceback"
        return "ok"

    return _serving(workdir, "serve-long", probe)


def case_serve_fifo(workdir: Path) -> str:
    """A named pipe in ``reports/`` is a 404 at once: opening it must not wait for a writer."""

    def probe(server: Server, root: Path) -> str:
        os.mkfifo(root / "reports" / "pipe.html")
        return "ok" if server.get("/pipe.html")[0] == 404 else "accepted-bad"

    return _serving(workdir, "serve-fifo", probe)


# --------------------------------------------------------------------- class 5: the published catalog
_HOLD = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("create table mine (x integer)")
    con.execute("insert into mine values (1)")
    print("open", flush=True)
    time.sleep(600)
""")


def _writing_client(workdir: Path, published: Path) -> subprocess.Popen:
    """A user's DuckDB client that opened the published file for writing, created a table and stays."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(published)], cwd=workdir, env=_env(workdir),
                               stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT_S)
    if not ready or process.stdout.readline().strip() != "open":
        process.kill()
        raise Hang("the DuckDB client did not open the published catalog")
    return process


def case_published_writing_client(workdir: Path) -> str:
    """A user's writing client of ``catalog.duckdb`` (open during engine writes, then killed, leaving
    its WAL) breaks no fld command, and a later publish leaves a file plain clients open."""
    root, sources = _ingested_root(workdir, "pub-client")
    client = _writing_client(workdir, root / "catalog.duckdb")
    try:
        for step, name in enumerate(("b", "c")):
            run = fld(workdir, "ingest", "--root", str(root), str(_shard(sources, name, range(10 + 2 * step, 12 + 2 * step))))
            if _failed(run):
                return _failed(run)
            stats = _stats_ok(workdir, root)
            if stats != 4 + 2 * step:
                return stats if isinstance(stats, str) else "accepted-bad"
            if step == 0:
                client.kill()  # killed: its write-ahead log stays beside the published file
                client.wait()
    finally:
        client.kill()
        client.wait()
    return "ok" if _plain_count(root) == 6 else "accepted-bad"


def case_published_garbage(workdir: Path) -> str:
    """``catalog.duckdb`` overwritten by a user: fld never reads it, and the next write replaces it."""
    root, sources = _ingested_root(workdir, "pub-garbage")
    (root / "catalog.duckdb").write_bytes(b"not a database" * 100)
    (root / "catalog.duckdb.wal").write_bytes(b"not a log" * 100)
    stats = _stats_ok(workdir, root)
    if stats != 2:
        return stats if isinstance(stats, str) else "accepted-bad"
    run = fld(workdir, "ingest", "--root", str(root), str(_shard(sources, "b", range(10, 12))))
    if _failed(run):
        return _failed(run)
    return "ok" if _plain_count(root) == 4 else "accepted-bad"


def case_published_deleted(workdir: Path) -> str:
    """``catalog.duckdb`` deleted by a user: fld still knows the root (its state is the private file)."""
    root, _ = _ingested_root(workdir, "pub-deleted")
    (root / "catalog.duckdb").unlink()
    stats = _stats_ok(workdir, root)
    return "ok" if stats == 2 else stats if isinstance(stats, str) else "accepted-bad"


# ------------------------------------------------------------------ class 6: recovering the catalog
ROUND_CONFIG = """
[sources]
paths = [{shards}]
[annotators.sidecar_captions]
[runner]
wave_size = 1
[flow]
retries = 0
[curation]
rules = ["image", "confidence", "geometry"]
[review]
budget_fraction = 0
[training]
base_model = "tiny"
max_steps = 2
batch_size = 2
lr = 0.001
device = "cpu"
dtype = "fp32"
eval_fraction = 0.5
max_new_tokens = 8
eval_max_examples = 2
save_every = 0
loader_threads = 1
"""
#: the catalog tables a repair rebuilds, with the columns compared (``created_at`` of models and
#: releases is rebuilt as the time ``metrics.json`` or the manifest was written, a moment before
#: the row was, so it is left out)
TABLE_COLUMNS = {
    "rounds": "round, status, step, config, model_version, started_at, finished_at",
    "round_steps": "round, step, status, summary, finished_at",
    "models": "round, path, version, metrics, promoted, reason",
    "shards": "shard_id, shard, format, num_bytes, images_ok, images_duplicate, images_error, ingested_at",
    "releases": "name, round, path, manifest_sha256",
}


def _round_root(workdir: Path) -> Path:
    """A root with round 0 done by ``fld round`` and released as ``v1``; built once per workdir."""
    shared = workdir / "shared-round"
    root = shared / "root"
    if (shared / "built").exists():
        return root
    shutil.rmtree(shared, ignore_errors=True)
    from engine.demo.sample_data import SampleConfig, write_sample

    sample = write_sample(shared / "sample", SampleConfig(images=4, images_per_shard=2, seed=11))
    config = shared / "engine.toml"
    config.write_text(ROUND_CONFIG.format(shards=json.dumps(str(Path(sample["shards"][0]).parent))))
    for args in (("round", "--root", str(root), "--config", str(config)),
                 ("release", "build", "--root", str(root), "--round", "0", "--name", "v1")):
        run = fld(workdir, *args, timeout=ROUND_TIMEOUT_S)
        if run.returncode:
            raise RuntimeError(f"fld {args[0]} failed: {run.stderr[-3000:]}")
    (shared / "built").write_text("")
    return root


def _copy(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    return target


def _tables(catalog: Path) -> dict[str, list[tuple]]:
    """The rows of the rebuilt tables, in key order, from a catalog file."""
    with duckdb.connect(str(catalog), read_only=True) as con:
        return {table: sorted(con.execute(f"select {columns} from {table}").fetchall(), key=repr)
                for table, columns in TABLE_COLUMNS.items()}


#: how a private catalog gets damaged: name -> bytes of the intact file -> damaged bytes
DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda data: b"\x5a" * len(data),
    "empty": lambda data: b"",
    "corrupt-block": lambda data: data[:8192] + b"\x5a" * 4096 + data[12288:],
}


def _damaged_message(workdir: Path, damage: str) -> str:
    root = _copy(_round_root(workdir), workdir / f"msg-{damage}")
    private = root / ".engine" / "catalog.duckdb"
    private.write_bytes(DAMAGES[damage](private.read_bytes()))
    run = fld(workdir, "stats", "--root", str(root))
    if "Traceback" in run.stderr:
        return "traceback"
    lines = run.stderr.strip().splitlines()
    good = run.returncode == 2 and len(lines) == 1 and f"fld repair --root {root}" in lines[0]
    return "ok" if good and "delete" not in lines[0] else "accepted-bad"


def _repaired(workdir: Path, damage: str) -> str:
    """Damage, ``fld repair``, then: the damaged file kept aside byte for byte, every table as before,
    ``fld stats`` answers, and the next round is round 1."""
    root = _copy(_round_root(workdir), workdir / f"repair-{damage}")
    private = root / ".engine" / "catalog.duckdb"
    if _stats_ok(workdir, root) != 4:  # the copy's catalog takes its own paths first
        return "accepted-bad"
    before = _tables(private)
    damaged = DAMAGES[damage](private.read_bytes())
    private.write_bytes(damaged)
    run = fld(workdir, "repair", "--root", str(root))
    if _failed(run):
        return _failed(run)
    kept = [p for p in private.parent.iterdir() if p.name.startswith("catalog.duckdb.damaged-") and p.suffix != ".wal"]
    if len(kept) != 1 or kept[0].read_bytes() != damaged:
        return "accepted-bad"  # the damaged file must be set aside, never deleted
    if _tables(private) != before or _tables(root / "catalog.duckdb") != before:
        return "accepted-bad"
    if _stats_ok(workdir, root) != 4:
        return "accepted-bad"
    from engine.rounds.loop import next_round
    from storage.layout import DataRoot

    return "ok" if next_round(DataRoot(root)) == 1 else "accepted-bad"


def _damage_cases(make: Callable[[Path, str], str]) -> dict[str, Callable[[Path], str]]:
    return {damage: (lambda workdir, damage=damage: make(workdir, damage)) for damage in DAMAGES}


# --------------------------------------------------------------------- class 10: a copied root
def case_copied_root_plain_client(workdir: Path) -> str:
    """A copy of a root, opened with plain DuckDB from the copy (the documented way), answers from
    the copy's own files, never from the original's."""
    original, sources = _ingested_root(workdir, "copy-original")
    copy = _copy(original, workdir / "copy-copy")
    run = fld(workdir, "ingest", "--root", str(original), str(_shard(sources, "b", range(10, 13))))
    if _failed(run):
        return _failed(run)
    shutil.rmtree(original / "images")  # the copy must not need the original's files either
    return "ok" if _plain_count(copy) == 2 else "accepted-bad"


CLASSES: dict[str, dict[str, Callable[[Path], str]]] = {
    "serve": {"symlink-swap": case_serve_symlink_swap, "long-segment": case_serve_long_segment,
              "fifo": case_serve_fifo},
    "published": {"writing-client": case_published_writing_client, "garbage": case_published_garbage,
                  "deleted": case_published_deleted},
    "damaged-message": _damage_cases(_damaged_message),
    "repair": _damage_cases(_repaired),
    "copied-root": {"plain-client": case_copied_root_plain_client},
}


def run_case(workdir: Path, case: Callable[[Path], str]) -> str:
    """One case's outcome; a timeout anywhere in it is ``hang``."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return case(workdir)
    except Hang:
        return "hang"


def run_all(workdir: Path) -> list[tuple[str, str]]:
    """``(probe name, outcome)`` of every case of every class, in order."""
    return [(f"{group}/{name}", run_case(Path(workdir), case))
            for group, cases in CLASSES.items() for name, case in cases.items()]


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # the cases use tests/ helpers
    start = time.monotonic()
    for probe, outcome in run_all(Path(sys.argv[1])):
        print(f"{outcome:>12}  {probe}")
    print(f"{time.monotonic() - start:.0f} s")
