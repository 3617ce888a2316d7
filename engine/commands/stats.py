"""``fld stats``: what the data root holds."""

from __future__ import annotations

import argparse
import json

from engine.cli import UsageError, add_root_argument, command
from engine.image_stats import format_image_stats, image_stats
from storage.catalog import Catalog
from storage.layout import DataRoot


@command("stats", help="print counts of the data root (images by status, format and size)")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")

    def run(args: argparse.Namespace) -> int:
        root = DataRoot(args.root)
        if not root.catalog.exists():
            raise UsageError(f"no catalog at {root.catalog}; run `fld ingest --root {args.root} SRC...` first")
        with Catalog(root) as catalog:
            stats = {"images": image_stats(catalog)}
        print(json.dumps(stats, indent=2) if args.json else format_image_stats(stats["images"]))
        return 0

    return run
