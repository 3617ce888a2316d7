"""Hostile inputs of the ingest readers (issue 30, classes 1, 3a and 8), replayable.

Each case builds real files in its own empty folder (links, FIFOs, tar archives with forged
headers, names with undecodable bytes), runs the real ``fld ingest`` beside this interpreter in
a child process (a :data:`TIMEOUT_S` limit and a :data:`MEMORY_LIMIT` address-space limit, so
an unbounded read fails fast instead of filling the machine) and gives ``(name, outcome)``:

* ``ok``: the hostile item is an error row with its reason (or a one-line refusal, exit 2),
  nothing outside the named sources was read, every other item and source was ingested;
* ``traceback``: a traceback or a crash (``MemoryError`` included);
* ``accepted-bad``: a link was followed, an over-limit read was made, an item or source was lost;
* ``hang``: the command ran past :data:`TIMEOUT_S`.

Classes: ``1`` nothing but regular files inside the named sources is opened; ``3a`` every read
is bounded by a declared size checked first (sidecars, extended tar headers, JSON depth); ``8``
a bad name is one item's error row, never the end of the run.
"""

from __future__ import annotations

import gzip
import io
import os
import resource
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT_OF_REPO = Path(__file__).resolve().parents[2]
if str(ROOT_OF_REPO) not in sys.path:
    sys.path.insert(0, str(ROOT_OF_REPO))

from tests.images import jpeg  # noqa: E402
from tests.shards import write_folder as folder  # noqa: E402
from tests.shards import write_tar  # noqa: E402

FLD = Path(sys.executable).with_name("fld")
TIMEOUT_S = 180
#: address space of one ``fld ingest`` (bytes): room for the engine, far below the probes' bombs
MEMORY_LIMIT = 4 * 2**30
SECRET = "FLD-SECRET-not-in-any-source"


@dataclass(frozen=True)
class Result:
    """What one ``fld ingest`` did, and the image rows it left in the root."""

    rc: int
    stdout: str
    stderr: str
    timed_out: bool
    rows: list[dict]

    def by_key(self) -> dict[str, dict]:
        return {row["key"]: row for row in self.rows}

    def error_of(self, key: str) -> str:
        row = self.by_key().get(key)
        return row["error"] or "" if row is not None and row["status"] == "error" else ""

    def ok(self, key: str) -> bool:
        row = self.by_key().get(key)
        return row is not None and row["status"] == "ok"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def ingest(workdir: Path, *sources: str | Path) -> Result:
    """``fld ingest --root WORKDIR/root SOURCES`` in a child process; the root's image rows."""
    import pyarrow.parquet as pq

    root = workdir / "root"
    args = [str(FLD), "ingest", "--root", str(root), "--quiet", *map(str, sources)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S,
                              cwd=workdir, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        return Result(-9, str(exc.stdout or ""), str(exc.stderr or ""), True, [])
    parts = sorted((root / "images").glob("part-*.parquet")) if (root / "images").is_dir() else []
    rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
    return Result(done.returncode, done.stdout, done.stderr, False, rows)


def judge(result: Result, ok: bool) -> str:
    """The outcome of a run whose specific check gave ``ok``."""
    if result.timed_out:
        return "hang"
    if "Traceback" in result.stderr or "MemoryError" in result.stderr or result.rc < 0:
        return "traceback"
    return "ok" if ok else "accepted-bad"


def one_line_refusal(result: Result, *words: str) -> bool:
    """Refused (exit 2) with one line on stderr that contains every word, nothing ingested."""
    lines = result.stderr.strip().splitlines()
    return result.rc == 2 and len(lines) == 1 and all(w in lines[0] for w in words) and not result.rows


def meta_is_clean(result: Result) -> bool:
    """No row carries the secret that lives outside every source."""
    return all(SECRET not in (row["meta"] or "") for row in result.rows)




def outside(workdir: Path) -> Path:
    """A folder beside the sources holding what must never be read: a secret, an image, a tar."""
    place = folder(workdir / "outside", [("secret.txt", SECRET.encode()), ("real.jpg", jpeg(seed=99)),
                                         ("secret.json", f'{{"k": "{SECRET}"}}'.encode())])
    write_tar(place / "secret.tar", [("s.jpg", jpeg(seed=98)), ("s.txt", SECRET.encode())])
    return place


def bad(name: bytes) -> str:
    """A file-system name with undecodable bytes, as Python spells it."""
    return os.fsdecode(name)


def raw_member(name: str, kind: bytes, payload: bytes, size: int | None = None) -> bytes:
    """One tar header of ``kind`` declaring ``size`` (default: the payload's) plus the padded payload."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(payload) if size is None else size
    block = info.tobuf(format=tarfile.GNU_FORMAT)
    return block + payload + bytes(-len(payload) % tarfile.BLOCKSIZE)


def tar_end() -> bytes:
    return bytes(2 * tarfile.BLOCKSIZE)


# -- class 1: only regular files inside the named sources are opened -----------------------------

def folder_symlink_sidecar(workdir: Path) -> str:
    secrets = outside(workdir)
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    os.symlink(secrets / "secret.txt", src / "a.txt")
    os.symlink(secrets / "secret.json", src / "a.json")
    result = ingest(workdir, src)
    return judge(result, meta_is_clean(result) and result.ok("a")
                 and all("not a regular file (symlink)" in result.error_of(k) for k in ("a.txt", "a.json")))


def folder_symlink_image(workdir: Path) -> str:
    secrets = outside(workdir)
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    os.symlink(secrets / "real.jpg", src / "b.jpg")
    result = ingest(workdir, src)
    return judge(result, result.ok("a") and not result.ok("b")
                 and "not a regular file (symlink)" in result.error_of("b.jpg"))


def folder_symlink_dev_zero(workdir: Path) -> str:
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    os.symlink("/dev/zero", src / "zero.jpg")
    os.symlink("/dev/zero", src / "a.txt")
    result = ingest(workdir, src)
    return judge(result, result.ok("a") and "not a regular file" in result.error_of("zero.jpg")
                 and "not a regular file" in result.error_of("a.txt"))


def folder_fifo(workdir: Path) -> str:
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    os.mkfifo(src / "pipe.jpg")
    os.mkfifo(src / "a.json")
    result = ingest(workdir, src)
    return judge(result, result.ok("a") and "not a regular file (fifo)" in result.error_of("pipe.jpg")
                 and "not a regular file (fifo)" in result.error_of("a.json"))


def folder_symlink_folder(workdir: Path) -> str:
    secrets = outside(workdir)
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    os.symlink(secrets, src / "sub")
    result = ingest(workdir, src)
    followed = [r for r in result.rows if r["key"].startswith("sub/")]
    return judge(result, result.ok("a") and not followed and meta_is_clean(result)
                 and "not a regular file (symlink)" in result.error_of("sub"))


def shard_symlink_in_folder(workdir: Path) -> str:
    secrets = outside(workdir)
    shards = workdir / "shards"
    shards.mkdir()
    write_tar(shards / "good.tar", [("g.jpg", jpeg(seed=1))])
    os.symlink(secrets / "secret.tar", shards / "link.tar")
    result = ingest(workdir, shards)
    return judge(result, result.ok("g") and meta_is_clean(result)
                 and not any("secret" in row["shard"] for row in result.rows))


def named_fifo_shard(workdir: Path) -> str:
    os.mkfifo(workdir / "stream.tar")
    result = ingest(workdir, workdir / "stream.tar")
    return judge(result, one_line_refusal(result, "stream.tar", "not a regular file (fifo)"))


def deep_folder(workdir: Path) -> str:
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1))])
    deep = src
    for _ in range(1200):  # one level at a time: pathlib's and os's makedirs recurse
        deep = deep / "d"
        deep.mkdir()
    (deep / "z.jpg").write_bytes(jpeg(seed=2))
    try:
        result = ingest(workdir, src)
    finally:  # shutil.rmtree (pytest's clean-up of old temp folders too) recurses once per level
        remove_iteratively(src / "d")
    return judge(result, result.ok("a") and result.ok("d/" * 1200 + "z"))


def remove_iteratively(top: Path) -> None:
    """Delete the tree under ``top`` (and ``top``) without recursion: files as they are met, then the
    folders deepest first."""
    folders, pending = [], [top]
    while pending:
        folder_ = pending.pop()
        folders.append(folder_)
        with os.scandir(folder_) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    os.unlink(entry.path)
    for folder_ in reversed(folders):
        os.rmdir(folder_)


# -- class 3a: every read bounded by a size checked first -----------------------------------------

def gz_sidecar_bomb(workdir: Path) -> str:
    """A small .tar.gz whose JSON sidecar is 48 MiB of zero bytes (under the image limit)."""
    path = workdir / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, size, data in (("a.jpg", None, jpeg(seed=1)), ("a.json", 48 * 2**20, None)):
            info = tarfile.TarInfo(name)
            info.size = len(data) if data is not None else size
            archive.addfile(info, io.BytesIO(data) if data is not None else _Zeros(size))
    result = ingest(workdir, path)
    meta = result.by_key().get("a", {}).get("meta") or ""
    return judge(result, result.ok("a") and len(meta) < 2**20
                 and "sidecar too large" in result.error_of("a.json"))


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, never held at once."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def deep_json_sidecar(workdir: Path) -> str:
    path = write_tar(workdir / "deep.tar", [("a.jpg", jpeg(seed=1)), ("a.json", b"[" * 200_000 + b"]" * 200_000),
                                            ("b.jpg", jpeg(seed=2))])
    result = ingest(workdir, path)
    return judge(result, result.ok("a") and result.ok("b") and "invalid sidecar" in result.error_of("a.json"))


def long_number_sidecar(workdir: Path) -> str:
    """A JSON sidecar that is one 10,000-digit number (over Python's int conversion limit)."""
    path = write_tar(workdir / "number.tar", [("a.jpg", jpeg(seed=1)), ("a.json", b"1" * 10_000),
                                              ("b.jpg", jpeg(seed=2))])
    result = ingest(workdir, path)
    return judge(result, result.ok("a") and result.ok("b") and not any(r["status"] == "error" for r in result.rows))


def pax_header_bomb(workdir: Path) -> str:
    """A .tar.gz whose pax extended header declares 64 MiB (one comment record)."""
    body = 64 * 2**20
    record = b" comment=" + b"x" * (body - 32) + b"\n"
    record = str(len(record) + 8).encode().rjust(8, b"0")[:8] + record
    image = jpeg(seed=1)
    path = workdir / "pax.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(raw_member("././@PaxHeader", tarfile.XHDTYPE, record))
        out.write(raw_member("a.jpg", tarfile.REGTYPE, image))
        out.write(tar_end())
    result = ingest(workdir, path)
    return judge(result, any("extended header" in (r["error"] or "") for r in result.rows))


def gnu_longname_chain(workdir: Path) -> str:
    """A tar of 5,000 chained GNU long-name headers before its one image."""
    path = workdir / "chain.tar"
    with path.open("wb") as out:
        for _ in range(5_000):
            out.write(raw_member("././@LongLink", tarfile.GNUTYPE_LONGNAME, b"n.jpg\0"))
        out.write(raw_member("a.jpg", tarfile.REGTYPE, jpeg(seed=1)))
        out.write(tar_end())
    result = ingest(workdir, path)
    return judge(result, any("truncated or corrupt tar" in (r["error"] or "") for r in result.rows))


# -- class 8: a bad name is one item's error row ---------------------------------------------------

def tar_member_bad_name(workdir: Path) -> str:
    path = write_tar(workdir / "a.tar", [(bad(b"x\xfe.jpg"), jpeg(seed=1)), ("y.jpg", jpeg(seed=2))],
                     format=tarfile.GNU_FORMAT)
    good = folder(workdir / "good", [("g.jpg", jpeg(seed=3))])
    result = ingest(workdir, path, good)
    return judge(result, result.ok("y") and result.ok("g") and "not valid UTF-8" in result.error_of("x\\xfe.jpg"))


def pax_member_bad_name(workdir: Path) -> str:
    path = write_tar(workdir / "a.tar", [(bad(b"p\xff.jpg"), jpeg(seed=1)), ("q.jpg", jpeg(seed=2))],
                     format=tarfile.PAX_FORMAT)
    result = ingest(workdir, path)
    return judge(result, result.ok("q") and "not valid UTF-8" in result.error_of("p\\xff.jpg"))


def folder_file_bad_name(workdir: Path) -> str:
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1)), (bad(b"b\xff.jpg"), jpeg(seed=2)),
                                   (bad(b"a.\xff"), b"x")])
    other = write_tar(workdir / "other.tar", [("o.jpg", jpeg(seed=3))])
    result = ingest(workdir, other, src)
    return judge(result, result.ok("a") and result.ok("o") and "not valid UTF-8" in result.error_of("b\\xff.jpg")
                 and "not valid UTF-8" in result.error_of("a.\\xff"))


def folder_subfolder_bad_name(workdir: Path) -> str:
    src = folder(workdir / "src", [("a.jpg", jpeg(seed=1)), (bad(b"s\xfe/c.jpg"), jpeg(seed=2))])
    result = ingest(workdir, src)
    return judge(result, result.ok("a") and "not valid UTF-8" in result.error_of("s\\xfe/c.jpg"))


def shard_file_bad_name(workdir: Path) -> str:
    """A shard file whose own name is not UTF-8 cannot be named by the catalog: one line, before any write."""
    shards = workdir / "shards"
    shards.mkdir()
    write_tar(shards / "good.tar", [("g.jpg", jpeg(seed=1))])
    write_tar(shards / bad(b"\xff.tar"), [("h.jpg", jpeg(seed=2))])
    result = ingest(workdir, shards)
    return judge(result, one_line_refusal(result, "not valid UTF-8", "\\udcff.tar"))


Probe = Callable[[Path], str]
CLASSES: dict[str, dict[str, Probe]] = {
    "1": {f.__name__: f for f in (folder_symlink_sidecar, folder_symlink_image, folder_symlink_dev_zero,
                                   folder_fifo, folder_symlink_folder, shard_symlink_in_folder,
                                   named_fifo_shard, deep_folder)},
    "3a": {f.__name__: f for f in (gz_sidecar_bomb, deep_json_sidecar, long_number_sidecar, pax_header_bomb,
                                    gnu_longname_chain)},
    "8": {f.__name__: f for f in (tar_member_bad_name, pax_member_bad_name, folder_file_bad_name,
                                   folder_subfolder_bad_name, shard_file_bad_name)},
}
PROBES: dict[str, Probe] = {name: probe for probes in CLASSES.values() for name, probe in probes.items()}


def run_case(name: str, workdir: Path) -> str:
    """The outcome of probe ``name``, run in ``workdir/name`` (made empty first)."""
    where = workdir / name
    where.mkdir(parents=True)
    return PROBES[name](where)


def run_all(workdir: Path) -> list[tuple[str, str]]:
    """``(probe name, outcome)`` of every probe, each in its own folder under ``workdir``."""
    return [(name, run_case(name, Path(workdir))) for name in PROBES]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for name, outcome in run_all(Path(scratch)):
            print(f"{outcome:<13} {name}")
