"""Benchmark: the Beam annotate pipeline with a no-op annotator vs a bare read+decode loop.

Both read the same ingested shards and decode every image to upright RGB; the pipeline also
checks each image against its ingested id, batches, runs RunInference (no-op) and writes the
per-shard files and markers. DirectRunner, in this process.

The pipeline decodes each batch on ``decode_threads`` threads (default: the cores, at most 4);
it also runs with one decode thread, which shows what the engine itself adds.
This machine's speed drifts by 20-40% within minutes (shared hosts), more than the gaps being
measured, so the three loops run back to back ``--repeat`` times, each in turn going first, and
each ratio is the median over those rotations (the loops of one rotation share the machine's state).
Last line: that median, pipeline images/s (default decode threads) divided by bare-loop images/s
(goal >= 0.9).
"""

from __future__ import annotations

import os

# one thread per process: the baseline is single-threaded, and on 2 cores two Dask workers
# with multi-threaded math libraries would oversubscribe the machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import itertools
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

import tests.fake_annotators  # noqa: F401  (registers the noop annotator)
from bench.bench_data import ingested_root, write_shards
from engine.annotate.decoding import decode_thread_count
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
    parser.add_argument("--repeat", type=int, default=6)
    args = parser.parse_args()
    configure_decode_memory()  # the setting every annotation worker uses, for both loops
    work = Path(tempfile.mkdtemp(prefix="fld-bench-pipeline-"))
    try:
        shards = write_shards(work / "shards", args.shards, args.per_shard)
        root = ingested_root(work / "root", shards)
        images = bare_loop(shards)  # warm the page cache
        times: dict[str, list[float]] = {"bare": [], "pipeline": [], "pipeline_1": []}
        rounds = itertools.count()

        def run(name: str) -> None:
            start = time.perf_counter()
            if name == "bare":
                bare_loop(shards)
            else:
                threads = 1 if name == "pipeline_1" else 0
                summary = annotate(root, AnnotateRequest(round=next(rounds), annotators={"noop": {}},
                                                         progress=False, decode_threads=threads))
                assert summary["sources"]["noop"]["images"] == images, summary
            times[name].append(time.perf_counter() - start)

        names = list(times)
        for attempt in range(args.repeat):  # each loop goes first, second and third in turn
            turn = attempt % len(names)
            for name in names[turn:] + names[:turn]:
                run(name)

        def median_ratio(name: str) -> float:
            return statistics.median(b / p for b, p in zip(times["bare"], times[name]))

        def span(name: str) -> str:
            return f"{images / min(times[name]):,.1f} images/s at best ({min(times[name]):.2f}-{max(times[name]):.2f} s)"

        print(f"images: {images} ({args.shards} shards, 1024x768 JPEG), {args.repeat} rotations")
        print(f"bare read+decode loop, one thread: {span('bare')}")
        print(f"Beam annotate pipeline, no-op annotator, DirectRunner, decode on one thread: {span('pipeline_1')}")
        print(f"the same, decode on {decode_thread_count(0)} threads (the default): {span('pipeline')}")
        print(f"pipeline with one decode thread / bare loop (median of rotations): {median_ratio('pipeline_1'):.2f}")
        print(f"pipeline / bare loop throughput ratio (median of rotations): {median_ratio('pipeline'):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
