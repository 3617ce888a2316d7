"""Benchmark: the Beam annotate pipeline with a no-op annotator vs a bare read+decode loop.

Both read the same ingested shards and decode every image to upright RGB; the pipeline also
checks each image against its ingested id, batches, runs RunInference (no-op) and writes the
per-shard files and markers. DirectRunner, in this process, best of ``--repeat``.
Last line: pipeline images/s divided by bare-loop images/s (goal >= 0.9).
"""

from __future__ import annotations

import os

# one thread per process: the baseline is single-threaded, and on 2 cores two Dask workers
# with multi-threaded math libraries would oversubscribe the machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

import tests.fake_annotators  # noqa: F401  (registers the noop annotator)
from bench.bench_data import ingested_root, write_shards
from engine.annotate.handler import configure_decode_memory
from engine.annotate.plan import AnnotateRequest, annotate


def bare_loop(shards: list[Path]) -> int:
    count = 0
    for shard in shards:
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                data = archive.extractfile(member).read()
                Image.open(io.BytesIO(data)).convert("RGB")
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--per-shard", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    configure_decode_memory()  # the setting every annotation worker uses, for both loops
    work = Path(tempfile.mkdtemp(prefix="fld-bench-pipeline-"))
    try:
        shards = write_shards(work / "shards", args.shards, args.per_shard)
        root = ingested_root(work / "root", shards)
        images = bare_loop(shards)  # warm the page cache
        best_bare = best_pipe = float("inf")
        for attempt in range(args.repeat):
            start = time.perf_counter()
            bare_loop(shards)
            best_bare = min(best_bare, time.perf_counter() - start)
            start = time.perf_counter()
            summary = annotate(root, AnnotateRequest(round=attempt, annotators={"noop": {}}, progress=False))
            best_pipe = min(best_pipe, time.perf_counter() - start)
            assert summary["sources"]["noop"]["images"] == images, summary
        print(f"images: {images} ({args.shards} shards, 1024x768 JPEG)")
        print(f"bare read+decode loop: {images / best_bare:,.1f} images/s ({best_bare:.2f} s)")
        print(f"Beam annotate pipeline, no-op annotator, DirectRunner: {images / best_pipe:,.1f} images/s "
              f"({best_pipe:.2f} s)")
        print(f"pipeline / bare loop throughput ratio: {best_bare / best_pipe:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
