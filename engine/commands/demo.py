"""``fld demo``: the main job on the embedded default (synthetic data, offline specialists)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from engine.cli import add_root_argument, command
from engine.image_stats import format_image_stats, image_stats
from engine.ingest import IngestConfig, ingest
from engine.sample_data import SampleConfig, write_sample
from storage.catalog import Catalog
from storage.layout import DataRoot


@command("demo", help="generate sample data and run the engine on it, end to end, offline")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--images", type=int, default=96, help="sample images to generate (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    parser.add_argument("--fresh", action="store_true", help="delete the data root first")

    def run(args: argparse.Namespace) -> int:
        root = DataRoot(args.root)
        if args.fresh and root.path.exists():
            shutil.rmtree(root.path)
        root.ensure()
        sample_dir = root.path / "sample"
        print(f"[demo] writing {args.images} synthetic images with ground truth to {sample_dir}")
        summary = write_sample(sample_dir, SampleConfig(images=args.images, seed=args.seed, progress=True))
        print(f"[demo] ingesting {len(summary['shards'])} shards into {root.path}")
        result = ingest(root, [str(Path(p)) for p in summary["shards"]], IngestConfig())
        print(json.dumps(result.as_dict()))
        with Catalog(root) as catalog:
            print(format_image_stats(image_stats(catalog)))
        print(f"[demo] done; query it with: duckdb {root.catalog} \"select status, count(*) from images group by 1\"")
        return 0

    return run
