"""Benchmark: `fld ingest` throughput over a bare Pillow decode loop of the same shards.

Generates sample shards, then times (best of ``--repeat``) in this one process:
  baseline  stream every tar member and fully decode each image with Pillow (one thread);
  ingest    engine.ingest.shards.ingest() into a fresh data root (what `fld ingest` runs): stream,
            decode-check, hash, dedupe, write Parquet parts and the DuckDB catalog.
Last line: ingest images/s divided by baseline images/s (goal >= 0.8).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from engine.demo.sample_data import SampleConfig, write_sample
from engine.ingest.shards import IngestConfig, ingest
from storage.layout import DataRoot
from storage.readers.base import IMAGE_EXTENSIONS, split_key


def bare_decode_loop(shards: list[Path]) -> int:
    """Read every member of every tar and fully decode the images; returns images decoded."""
    count = 0
    for shard in shards:
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                data = archive.extractfile(member).read()
                if split_key(member.name)[1] in IMAGE_EXTENSIONS:
                    Image.open(io.BytesIO(data)).load()
                    count += 1
    return count


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--per-shard", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="ingest decode threads")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fld-bench-ingest-"))
    try:
        summary = write_sample(work / "sample", SampleConfig(images=args.images, images_per_shard=args.per_shard,
                                                             seed=1, noise=False))
        shards = [Path(p) for p in summary["shards"]]
        images = bare_decode_loop(shards)  # also warms the page cache

        def run_ingest() -> None:
            root = work / "root"
            shutil.rmtree(root, ignore_errors=True)
            result = ingest(DataRoot(root), [str(p) for p in shards],
                            IngestConfig(progress=False, workers=args.workers))
            assert result.ok == images, result.as_dict()

        baseline = best_of(args.repeat, lambda: bare_decode_loop(shards))
        pipeline = best_of(args.repeat, run_ingest)
        print(f"images: {images} in {len(shards)} shards")
        print(f"bare decode loop: {images / baseline:,.0f} images/s ({baseline:.2f} s)")
        print(f"fld ingest ({args.workers} decode threads): {images / pipeline:,.0f} images/s ({pipeline:.2f} s)")
        print(f"ingest / bare decode throughput ratio: {baseline / pipeline:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
