"""Benchmark of curation: synthetic region rows -> ``curate_round``, against a DuckDB scan.

Generates ``--rows`` region annotations over ``--images`` images (about 4 objects per
image, each seen by several sources with jittered boxes, so NMS has work to do), written as
Parquet shards ``annotations/round=0/source=S/shard=K.parquet`` plus ``images/part-bench.parquet``
in a temp data root (generation runs in a child process so it does not count in peak RSS).
``--layout shards`` (default) writes the files as ``fld annotate`` does: one per source and
image shard of ``--images-per-shard`` images, each image's rows together; ``--layout random``
puts every source's rows in random image order (250k rows per file), the worst case for
memory locality. A ``--root`` is reused only with the options it was generated with.
Then it times ``curate_round`` (read + filters + NMS + agreement + writing curated and
decisions) and DuckDB scans of the same shards, and prints rows/s, peak RSS and, as the
last line, the ratio curation time / scan time for the scan named by ``--scan``:

* ``all`` (default): ``select *`` fetched as an Arrow table: every column decoded, which is
  what curation must read, since it writes every column of the rows it keeps;
* ``full``: aggregates over the ids, labels, boxes and scores (5 of the 18 columns);
* ``plain``: ``count(*), sum(score)`` (DuckDB answers it mostly from Parquet metadata).

The scans are timed warm (best of 5: timings here vary by 20 %, and a slow scan would
flatter the ratio) and curation as the best of ``--repeat`` runs (default 5, as the
scans; the ratio is then of two best-of-5 timings), after warming pyarrow's
numpy conversion (a one-time ~0.4 s lazy import on the first ``pa.array`` call of a
process); the first run also loads (or, on a fresh checkout, compiles: ~12 s) the numba
kernels of ``filters/kernels.py``, so it is printed but rarely the best. Peak RSS covers
every curation run. Run it without ``OMP_NUM_THREADS=1``: Arrow sizes its thread pool by it.

    .venv/bin/python bench/curate.py --rows 200000 --images 20000
    .venv/bin/python bench/curate.py --root /tmp/bench-random --layout random
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import engine  # noqa: E402,F401 (first, as in ``fld``: it sets the allocator default before pyarrow loads)
from engine.curate.config import CurationConfig  # noqa: E402
from engine.curate.curation import curate_round  # noqa: E402
from engine.curate.parquet_io import conform  # noqa: E402
from storage.atomic import write_parquet_atomic  # noqa: E402
from storage.layout import DataRoot  # noqa: E402
from storage.schema import ANNOTATIONS, IMAGES  # noqa: E402

SOURCES = ("detector", "florence2", "grounding")
LABELS = np.array([f"class_{i}" for i in range(20)], dtype=object)
WIDTH, HEIGHT = 640, 480
#: how rows are laid out in the shard files: ``shards`` as ``fld annotate`` writes them (one file
#: per source and image shard, each image's rows together, images in shard order); ``random``
#: 250k-row files per source with rows in random image order (the worst case for locality)
LAYOUTS = ("shards", "random")
#: version of how the shard files are written (2: ``storage.atomic.write_parquet_atomic``, ids
#: DELTA_LENGTH_BYTE_ARRAY-encoded, as ``fld annotate`` writes them; 3: with layout ``shards``,
#: one images part per shard, as ``fld ingest`` writes them); a root of another version is
#: generated again
SHARD_FORMAT = 3
SCANS = {
    "all": "select * from read_parquet(?, hive_partitioning = false)",
    "plain": "select count(*), sum(score) from read_parquet(?, hive_partitioning = false)",
    "full": """select count(*), sum(score), count(distinct image_id), sum(length(annotation_id)),
                      sum(length(text)), sum(bbox[1] + bbox[2] + bbox[3] + bbox[4])
               from read_parquet(?, hive_partitioning = false)""",
}


def hex_ids(rng: np.random.Generator, n: int, chars: int) -> pa.StringArray:
    """``n`` random lowercase hex strings of ``chars`` characters, built without a Python loop."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    data = digits[rng.integers(0, 16, size=n * chars)].tobytes()
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * chars).buffers()[1]
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(data))


def shard_rows(rows: np.ndarray, image: np.ndarray, layout: str, images_per_shard: int,
               rows_per_file: int = 250_000) -> list[np.ndarray]:
    """One source's ``rows`` split into shard files (see ``LAYOUTS``)."""
    if layout == "random":
        return [rows[k:k + rows_per_file] for k in range(0, len(rows), rows_per_file)]
    rows = rows[np.argsort(image[rows], kind="stable")]  # image order inside each shard, as annotated
    shard = image[rows] // images_per_shard
    bounds = np.searchsorted(shard, np.arange(int(image.max()) // images_per_shard + 2))
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def generate(root: DataRoot, rows: int, images: int, layout: str = "shards", images_per_shard: int = 10_000,
             seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    image_ids = hex_ids(rng, images, 64)
    image = rng.integers(0, images, rows)
    obj = rng.integers(0, 4, rows)
    centers = rng.uniform([60, 60], [WIDTH - 60, HEIGHT - 60], size=(images, 4, 2))
    sizes = rng.uniform(20, 120, size=(images, 4, 2))
    c = centers[image, obj] + rng.normal(0, 3, (rows, 2))
    half = sizes[image, obj] * rng.uniform(0.9, 1.1, (rows, 2)) / 2
    boxes = np.concatenate([c - half, c + half], axis=1).astype(np.float32)
    source = rng.integers(0, len(SOURCES), rows)
    score = rng.beta(5, 2, rows).astype(np.float32)
    label = pa.array(LABELS[(image * 7 + obj) % len(LABELS)], pa.string())
    created = pa.scalar(0, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
    for s, name in enumerate(SOURCES):
        for k, take in enumerate(shard_rows(np.flatnonzero(source == s), image, layout, images_per_shard)):
            m = len(take)
            t = pa.table({
                "annotation_id": hex_ids(rng, m, 32), "image_id": image_ids.take(pa.array(image[take])),
                "round": pa.array(np.zeros(m, np.int32)), "source": pa.repeat(pa.scalar(name), m),
                "source_version": pa.repeat(pa.scalar(f"{name}-bench"), m), "kind": pa.repeat(pa.scalar("region"), m),
                "region_type": pa.repeat(pa.scalar("object"), m), "text": label.take(pa.array(take)),
                "bbox": pa.ListArray.from_arrays(pa.array(np.arange(m + 1, dtype=np.int32) * 4),
                                                 pa.array(boxes[take].reshape(-1))),
                "score": pa.array(score[take]), "created_at": pa.repeat(created, m),
            })
            if layout == "shards":  # named as its image shard (a shard with no rows of this source has no file)
                k = int(image[take[0]]) // images_per_shard
            path = root.annotation_shard(0, name, f"{k:05d}")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet_atomic(conform(t, ANNOTATIONS), path)  # the writer (and encodings) of fld annotate
    root.images.mkdir(parents=True, exist_ok=True)
    # as ``fld ingest`` writes them: one images part per shard, named as the shard the annotations name
    shards = [(f"{k:05d}", k * images_per_shard, min(images, (k + 1) * images_per_shard))
              for k in range(-(-images // images_per_shard))] if layout == "shards" else [("bench", 0, images)]
    for shard, lo, hi in shards:
        n = hi - lo
        img = pa.table({
            "image_id": image_ids.slice(lo, n), "shard_id": pa.repeat(pa.scalar(shard), n),
            "shard": pa.repeat(pa.scalar(f"/{shard}"), n), "key": pa.array(np.arange(lo, hi).astype(str)),
            "width": pa.array(np.full(n, WIDTH, np.int32)), "height": pa.array(np.full(n, HEIGHT, np.int32)),
            "status": pa.repeat(pa.scalar("ok"), n), "ingested_at": pa.repeat(created, n),
        })
        write_parquet_atomic(conform(img, IMAGES), root.images_part(shard))


def scan_seconds(root: DataRoot, query: str, repeat: int = 5) -> float:
    import duckdb

    files = sorted(str(p) for p in root.annotations(0).glob("source=*/shard=*.parquet"))
    best = float("inf")
    with duckdb.connect() as con:
        for _ in range(repeat):
            started = time.perf_counter()
            result = con.sql(query, params=[files])
            result.to_arrow_table() if query.startswith("select *") else result.fetchall()
            best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--layout", choices=LAYOUTS, default="shards",
                        help="row order in the shard files (default: as fld annotate writes them)")
    parser.add_argument("--images-per-shard", type=int, default=10_000, help="images per shard file (layout shards)")
    parser.add_argument("--scan", choices=sorted(SCANS), default="all")
    parser.add_argument("--repeat", type=int, default=5,
                        help="curation runs; the best counts (default 5, as the scans' best of 5)")
    parser.add_argument("--root", type=Path, help="data root to (re)use; default a temp folder")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    params = {"rows": args.rows, "images": args.images, "layout": args.layout,
              "images_per_shard": args.images_per_shard, "shard_format": SHARD_FORMAT}
    if args.generate_only:
        generate(DataRoot(args.root), args.rows, args.images, args.layout, args.images_per_shard)
        (args.root / "bench.json").write_text(json.dumps(params))
        return
    with tempfile.TemporaryDirectory(prefix="fld-bench-") as tmp:
        root = DataRoot(args.root or Path(tmp) / "data")
        marker = root.path / "bench.json"
        if not root.annotations(0).exists():
            started = time.perf_counter()
            options = [f"--{k.replace('_', '-')}={v}" for k, v in params.items() if k != "shard_format"]
            subprocess.run([sys.executable, __file__, "--generate-only", "--root", str(root.path), *options], check=True)
            print(f"generated {args.rows} rows over {args.images} images ({args.layout} layout) "
                  f"in {time.perf_counter() - started:.1f} s")
        elif not marker.exists() or json.loads(marker.read_text()) != params:
            found = json.loads(marker.read_text()) if marker.exists() else "unknown parameters"
            sys.exit(f"--root {root.path} holds data generated with {found}, not {params}: "
                     "pass the same options or a new --root")
        pa.array(np.zeros(1))  # warm-up: pyarrow's first numpy conversion imports lazily
        runs = []
        for _ in range(args.repeat):  # curate_round rewrites the same round: runs are identical
            started = time.perf_counter()
            summary = curate_round(root, 0, CurationConfig())
            runs.append(time.perf_counter() - started)
        curate_s = min(runs)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
        scans = {name: scan_seconds(root, query) for name, query in SCANS.items()}
        print(f"curated {summary['input_rows']} rows -> {summary['curated_rows']} kept, "
              f"{summary['decision_rows']} decisions, dropped by rule {summary['dropped_by_rule']}")
        print(f"curation: {curate_s:.2f} s (best of {', '.join(f'{r:.2f}' for r in runs)}), "
              f"{summary['input_rows'] / curate_s:,.0f} rows/s")
        print(f"peak RSS: {peak_gib:.2f} GiB")
        for name, seconds in scans.items():
            print(f"duckdb {name} scan: {seconds:.3f} s (ratio {curate_s / seconds:.1f})")
        print(f"curation / {args.scan} scan time ratio: {curate_s / scans[args.scan]:.1f}")


if __name__ == "__main__":
    main()
