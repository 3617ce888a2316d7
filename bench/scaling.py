"""Benchmark: DaskRunner scaling and memory of the annotate pipeline.

1. Speed-up: the same CPU-bound annotation (``dark_patch`` with a high ``repeat``) on a
   ``dask.distributed`` local cluster of 2 worker processes vs 1 (goal >= 1.7 on 2 cores).
2. Memory: peak RSS of the whole process tree (driver + cluster) annotating 40 shards vs 4
   shards of the same size (goal <= 1.2: memory does not grow with the dataset).
Each measurement runs in a fresh subprocess; RSS is sampled every 50 ms with psutil. The
workers import the engine before the clock starts (process start-up is not scaling).
Last line: the memory ratio; the line before it: the speed-up.
"""

from __future__ import annotations

import os

# one thread per process: the baseline is single-threaded, and on 2 cores two Dask workers
# with multi-threaded math libraries would oversubscribe the machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cli import json_child  # noqa: E402


def _warm_worker() -> None:
    """Import what the pipeline's steps import (Beam, the engine, the annotator registry)."""
    import apache_beam  # noqa: F401

    import engine.annotate.pipeline  # noqa: F401
    import tests.fake_annotators  # noqa: F401  (registers dark_patch)
    from annotators.registry import annotator_names

    annotator_names()


def child(root: str, workers: int, repeat: int) -> None:
    """Run one annotation on a fresh local cluster of ``workers`` processes; print JSON."""
    from distributed import Client, LocalCluster

    import tests.fake_annotators  # noqa: F401  (registers dark_patch)
    from engine.annotate.plan import AnnotateRequest, annotate
    from storage.layout import DataRoot

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:  # warm the workers: imports are start-up cost, not scaling
            client.run(_warm_worker)
        start = time.perf_counter()
        summary = annotate(DataRoot(root), AnnotateRequest(
            round=0, annotators={"dark_patch": {"repeat": repeat}}, runner="dask", progress=False,
            pipeline_args=[f"--dask_client_address={cluster.scheduler_address}"]))
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "images": summary["sources"]["dark_patch"]["images"]}))


def measure(root: Path, workers: int, repeat: int) -> dict:
    """Run :func:`child` in a subprocess; returns its JSON plus the tree's peak RSS (bytes)."""
    result, peak = json_child([sys.executable, "-m", "bench.scaling", "--child", str(root), str(workers), str(repeat)],
                              REPO, quiet=True)
    result["peak_rss"] = peak
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--speed-shards", type=int, default=16)
    parser.add_argument("--per-shard", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=1000, help="dark_patch searches per image (CPU cost)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return

    from bench.bench_data import ingested_root, write_shards

    work = Path(tempfile.mkdtemp(prefix="fld-bench-scaling-"))
    try:
        shards = write_shards(work / "shards", 40, args.per_shard, size=(320, 240))
        speed_root = ingested_root(work / "speed", shards[:args.speed_shards])
        one = measure(speed_root.path, 1, args.repeat)
        shutil.rmtree(speed_root.path / "annotations")
        two = measure(speed_root.path, 2, args.repeat)
        small = measure(ingested_root(work / "small", shards[:4]).path, 2, 1)
        large = measure(ingested_root(work / "large", shards).path, 2, 1)
        print(f"CPU-bound annotation of {one['images']} images: 1 Dask worker {one['seconds']:.2f} s, "
              f"2 workers {two['seconds']:.2f} s")
        print(f"peak RSS (driver + cluster): 4 shards {small['peak_rss'] / 2**20:,.0f} MiB "
              f"({small['images']} images), 40 shards {large['peak_rss'] / 2**20:,.0f} MiB ({large['images']} images)")
        print(f"DaskRunner speed-up, 2 workers over 1: {one['seconds'] / two['seconds']:.2f}")
        print(f"peak RSS ratio, 40 shards / 4 shards: {large['peak_rss'] / small['peak_rss']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
