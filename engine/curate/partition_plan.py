"""The partitions of a round curated in parts: groups of whole image shards, every row of an
image (raw or the previous round's curated) in the same partition.

``fld annotate`` writes an image shard's rows as ``annotations/round=R/source=S/shard=K.parquet``
(``K`` an ingested shard: ``images/part-K.parquet`` exists), so a shard is a *keyed* piece;
partitioned curation writes the previous round's curated parts with each row group's shard in
the part's key-value metadata (:data:`KEYS_METADATA`), so those row groups are keyed too.
Every other row is *routed* one by one by its image: rows of a file that is not a shard
(people's corrections, ``shard=review-J``), row groups written without a key (the curated
parts of an in-process curation) and rows of images no shard holds.

The plan reads one column, ``image_id``, of every piece, hashed to 64 bits by DuckDB: shards
that share an image (the same bytes ingested twice) are joined into one *unit*; a routed row
goes to the unit of the shard that holds its image (in this round's pieces, else in the images
table), and rows of images found nowhere to one unit of their own. A hash collision can only
join units, never split an image. Units are packed, in shard order, into partitions of about
``partition_rows`` rows (a unit is never split). What each routed file's rows go to is saved
as one int32 unit per row (``routes/*.npy``, -1 for keyed rows); the plan itself is JSON
(``plan.json``). Memory: the 8-byte hashes of the round's distinct images and one file's ids
at a time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import write_text_atomic
from storage.layout import DataRoot

#: the key-value metadata of a partitioned curated part: JSON list, the shard key of each row group
KEYS_METADATA = "fld_keys"
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class PartitionSpec:
    """One partition: its units, the raw files it reads (index, routed: only its routed rows)
    and the previous parts (index, keyed row groups, routed rows too), its images parts and rows."""

    index: int
    units: tuple[int, ...]
    raw: tuple[tuple[int, bool], ...]
    previous: tuple[tuple[int, tuple[int, ...], bool], ...]
    image_parts: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class Plan:
    """A round's partitions. Files are relative to the root, in the order the in-process
    curation reads them (trails number raw rows, and previous rows a review replaced, by it);
    ``raw_unit`` / ``previous_unit``: the unit of a keyed file / row group, -1 routed;
    ``unit_keys``: the shard key each unit's curated rows are written under ("": none)."""

    round: int
    fingerprint: str
    raw_files: tuple[str, ...]
    raw_rows: tuple[int, ...]
    raw_unit: tuple[int, ...]
    previous_files: tuple[str, ...]
    previous_groups: tuple[tuple[int, ...], ...]
    previous_unit: tuple[tuple[int, ...], ...]
    unit_keys: tuple[str, ...]
    partitions: tuple[PartitionSpec, ...]

    @property
    def raw_offsets(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.raw_rows, dtype=np.int64)]

    @property
    def previous_offsets(self) -> np.ndarray:
        return np.r_[0, np.cumsum([sum(g) for g in self.previous_groups], dtype=np.int64)]

    def save(self, work: Path) -> None:
        write_text_atomic(json.dumps(asdict(self)), work / PLAN_FILE)

    @classmethod
    def load(cls, work: Path) -> "Plan | None":
        """The plan saved in ``work``, or None."""
        try:
            data = json.loads((work / PLAN_FILE).read_text())
        except (OSError, ValueError):
            return None
        parts = tuple(PartitionSpec(p["index"], tuple(p["units"]), tuple((f, r) for f, r in p["raw"]),
                                    tuple((f, tuple(g), r) for f, g, r in p["previous"]), tuple(p["image_parts"]),
                                    p["rows"]) for p in data.pop("partitions"))
        nested = {"previous_groups", "previous_unit"}
        return cls(**{k: tuple(tuple(x) for x in v) if k in nested else tuple(v) if isinstance(v, list) else v
                      for k, v in data.items()}, partitions=parts)


def route_file(work: Path, kind: str, index: int) -> Path:
    """The unit of every row of routed file ``index`` of ``kind`` (raw, previous), int32 .npy."""
    return work / "routes" / f"{kind}-{index:05d}.npy"


def shard_key(path: Path) -> str:
    """``K`` of ``shard=K.parquet`` (raw) or ``part-K.parquet`` (images)."""
    return path.name.removesuffix(".parquet").split("=", 1)[-1].removeprefix("part-")


def row_group_keys(path: Path) -> tuple[list[int], list[str] | None]:
    """Rows per row group of a curated part and their shard keys (None: written without them)."""
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    stored = (meta.metadata or {}).get(KEYS_METADATA.encode())
    keys = json.loads(stored) if stored else None
    return groups, keys if keys is not None and len(keys) == len(groups) else None


class _Hasher:
    """64-bit DuckDB hashes of the ``image_id`` column of Parquet files (DuckDB reads the one
    column, on every core)."""

    def __init__(self) -> None:
        self.con = duckdb.connect()

    def keyed(self, ranges: list[tuple[str, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct ``(key, hash)`` pairs of the row ranges ``(file, first, end, key)``."""
        if not ranges:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        files, first, end, key = zip(*ranges)
        self.con.register("ranges", pa.table({"f": files, "lo": first, "hi": end, "k": key}))
        found = self.con.execute(
            "select distinct r.k as k, hash(p.image_id) as h from read_parquet(?, filename = true, "
            "file_row_number = true, union_by_name = true) p join ranges r on p.filename = r.f "
            "and p.file_row_number >= r.lo and p.file_row_number < r.hi", [sorted(set(files))]).fetchnumpy()
        self.con.unregister("ranges")
        return found["k"].astype(np.int64), found["h"].astype(np.uint64)

    def rows(self, path: Path) -> np.ndarray:
        """The hash of every row of ``path``, in file order."""
        found = self.con.execute("select file_row_number as n, hash(image_id) as h from read_parquet(?, "
                                 "file_row_number = true)", [str(path)]).fetchnumpy()
        out = np.zeros(len(found["n"]), np.uint64)
        out[found["n"].astype(np.int64)] = found["h"]
        return out


def _find(parent: list[int], k: int) -> int:
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


def make_plan(root: DataRoot, round_: int, partition_rows: int, fingerprint: str, work: Path) -> Plan:
    """Plan round ``round_`` in partitions of about ``partition_rows`` raw + previous rows (see
    the module docstring); routes are written under ``work``."""
    hasher = _Hasher()
    raw = sorted(root.annotations(round_).glob("source=*/shard=*.parquet"), key=str)
    previous = sorted(root.curated(round_ - 1).glob("part-*.parquet"), key=str) if round_ > 0 else []
    raw_rows = [pq.ParquetFile(p).metadata.num_rows for p in raw]
    raw_key = [shard_key(p) if root.images_part(shard_key(p)).exists() else None for p in raw]
    groups, group_key = zip(*(row_group_keys(p) for p in previous)) if previous else ((), ())
    group_key = [keys or [""] * len(g) for g, keys in zip(groups, group_key)]
    keys = sorted({k for k in raw_key if k} | {k for ks in group_key for k in ks if k})
    key_index = {k: i for i, k in enumerate(keys)}
    starts = [np.r_[0, np.cumsum(g)] for g in groups]
    ranges = [(str(path), 0, rows, key_index[key]) for path, rows, key in zip(raw, raw_rows, raw_key) if key]
    ranges += [(str(path), int(at[g]), int(at[g + 1]), key_index[key]) for path, at, ks in zip(previous, starts, group_key)
               for g, key in enumerate(ks) if key]
    pairs_k, pairs_h = hasher.keyed(ranges)
    parent = list(range(len(keys)))
    order = np.lexsort((pairs_k, pairs_h))
    pairs_h, pairs_k = pairs_h[order], pairs_k[order]
    shared = np.flatnonzero(pairs_h[1:] == pairs_h[:-1])  # the same image under two shards: one unit
    for i in shared:
        a, b = _find(parent, int(pairs_k[i])), _find(parent, int(pairs_k[i + 1]))
        parent[max(a, b)] = min(a, b)
    roots = sorted({_find(parent, k) for k in range(len(keys))})
    unit_keys = [keys[r] for r in roots]  # a unit is written under its first shard key
    unit_of_root = {r: u for u, r in enumerate(roots)}
    unit_of_key = np.array([unit_of_root[_find(parent, k)] for k in range(len(keys))], np.int64)
    members = [[keys[k] for k in range(len(keys)) if unit_of_key[k] == u] for u in range(len(roots))]
    image_hash, first = np.unique(pairs_h, return_index=True)
    image_unit = unit_of_key[pairs_k[first]] if len(first) else np.zeros(0, np.int64)
    del pairs_h, pairs_k

    routed = [("raw", i, p, None) for i, (p, k) in enumerate(zip(raw, raw_key)) if not k]
    group_key = [[k or ("" if n else "-") for k, n in zip(ks, g)] for ks, g in zip(group_key, groups)]  # "-": empty
    routed += [("previous", i, p, [g for g, k in enumerate(ks) if not k]) for i, (p, ks) in enumerate(zip(previous, group_key))
               if not all(ks)]
    unknown: set[int] = set()
    for kind, i, path, g in routed:  # pass 1: each routed row's image hash, saved; the images no piece holds
        live = _routed_rows(groups[i] if kind == "previous" else None, g, raw_rows[i] if kind == "raw" else 0)
        h = hasher.rows(path)
        unknown.update(np.unique(h[live][_lookup(image_hash, image_unit, h[live]) < 0]).tolist())
        route_file(work, kind, i).parent.mkdir(parents=True, exist_ok=True)
        np.save(route_file(work, kind, i), h)
    home = _image_homes(root, hasher, np.array(sorted(unknown), np.uint64)) if unknown else {}
    extra_keys = sorted({k for k in home.values() if k not in key_index} | ({""} if len(home) < len(unknown) else set()))
    unit_of_extra = {k: len(unit_keys) + j for j, k in enumerate(extra_keys)}  # shards only routed rows reach;
    unit_keys += extra_keys  # "": the images found nowhere
    members += [[k] if k else [] for k in extra_keys]
    raw_unit = [int(unit_of_key[key_index[k]]) if k else -1 for k in raw_key]
    previous_unit = [[int(unit_of_key[key_index[k]]) if k in key_index else -1 for k in ks] for ks in group_key]
    keyed = [(u, r) for u, r in zip(raw_unit, raw_rows) if u >= 0]
    keyed += [(u, r) for units, rows in zip(previous_unit, groups) for u, r in zip(units, rows) if u >= 0]
    unit_rows = np.bincount(np.array([u for u, _ in keyed], np.int64), np.array([r for _, r in keyed], np.float64),
                            minlength=len(unit_keys)).astype(np.int64)
    routed_units: dict[tuple[str, int], set[int]] = {}
    for kind, i, path, g in routed:  # pass 2: each routed row's unit
        live = _routed_rows(groups[i] if kind == "previous" else None, g, raw_rows[i] if kind == "raw" else 0)
        h = np.load(route_file(work, kind, i))[live]
        mine = _lookup(image_hash, image_unit, h)
        for j in np.flatnonzero(mine < 0):  # few: the images only routed rows name
            key = home.get(int(h[j]), "")
            mine[j] = unit_of_key[key_index[key]] if key in key_index else unit_of_extra[key]
        unit = np.full(len(live), -1, np.int32)
        unit[live] = mine
        np.save(route_file(work, kind, i), unit)
        present = np.bincount(mine, minlength=len(unit_keys))
        unit_rows += present
        routed_units[(kind, i)] = set(np.flatnonzero(present).tolist())
    groups_of_units = _pack(unit_keys, unit_rows, partition_rows)
    specs = []
    for p, units in enumerate(groups_of_units):
        mine = set(units)
        raw_entries = tuple((i, raw_unit[i] < 0) for i in range(len(raw))
                            if raw_unit[i] in mine or mine & routed_units.get(("raw", i), set()))
        prev_entries = tuple((i, tuple(g for g, u in enumerate(previous_unit[i]) if u in mine),
                              bool(mine & routed_units.get(("previous", i), set()))) for i in range(len(previous)))
        parts = tuple(sorted(str(root.images_part(k).relative_to(root.path)) for u in units for k in members[u]
                             if root.images_part(k).exists()))  # in the order the whole round reads them
        specs.append(PartitionSpec(p, tuple(units), raw_entries, tuple(e for e in prev_entries if e[1] or e[2]), parts,
                                   int(unit_rows[list(units)].sum())))
    rel = lambda paths: tuple(str(p.relative_to(root.path)) for p in paths)  # noqa: E731
    return Plan(round_, fingerprint, rel(raw), tuple(raw_rows), tuple(raw_unit), rel(previous),
                tuple(tuple(g) for g in groups), tuple(tuple(u) for u in previous_unit), tuple(unit_keys), tuple(specs))


def _routed_rows(groups: tuple[int, ...] | None, routed_groups: list[int] | None, rows: int) -> np.ndarray:
    """Bool per row of a file: routed (every row of a raw file; the rows of ``routed_groups``
    of a previous part whose row groups hold ``groups`` rows)."""
    if groups is None or routed_groups is None:
        return np.ones(rows, bool)
    starts = np.r_[0, np.cumsum(groups)]
    mask = np.zeros(int(starts[-1]), bool)
    for g in routed_groups:
        mask[starts[g]:starts[g + 1]] = True
    return mask


def _lookup(image_hash: np.ndarray, image_unit: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The unit of each hash ``h`` in the sorted ``image_hash`` (int64, -1 where absent)."""
    if not len(image_hash):
        return np.full(len(h), -1, np.int64)
    at = np.minimum(np.searchsorted(image_hash, h), len(image_hash) - 1)
    return np.where(image_hash[at] == h, image_unit[at], -1).astype(np.int64)


def _image_homes(root: DataRoot, hasher: _Hasher, wanted: np.ndarray) -> dict[int, str]:
    """Hash -> the ingested shard holding that image (status ok; the first in file order)."""
    files = sorted(str(p) for p in root.images.glob("part-*.parquet"))
    if not files:
        return {}
    hasher.con.register("wanted", pa.table({"h": wanted}))
    found = hasher.con.execute(
        "select h, first(filename order by filename, file_row_number) as f from (select hash(image_id) as h, "
        "filename, file_row_number from read_parquet(?, filename = true, file_row_number = true) "
        "where status = 'ok' and image_id is not null) where h in (select h from wanted) group by h", [files]).fetchall()
    hasher.con.unregister("wanted")
    return {int(h): shard_key(Path(f)) for h, f in found}


def _pack(unit_keys: list[str], unit_rows: np.ndarray, partition_rows: int) -> list[list[int]]:
    """Units (in shard key order) packed greedily into partitions of about ``partition_rows`` rows."""
    out: list[list[int]] = []
    filled = 0
    for u in sorted(range(len(unit_keys)), key=lambda u: unit_keys[u]):
        if unit_rows[u] == 0:
            continue
        if not out or (filled > 0 and filled + unit_rows[u] > partition_rows):
            out.append([])
            filled = 0
        out[-1].append(u)
        filled += int(unit_rows[u])
    return out
