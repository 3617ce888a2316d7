"""``fld stats``: what the data root holds."""

from __future__ import annotations

import argparse
import json

from engine.cli import add_root_argument, catalog_root, command
from engine.ingest.image_stats import format_image_stats, image_stats
from engine.report.stats import format_round_stats, round_stats
from storage.catalog import Catalog


@command("stats", help="print counts of the data root (images by status, format, size); with --round, the "
                       "paper's Table 2 / Table 3 for that round and its drops per rule")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--round", type=int, help="also the round's Table 2 / Table 3 (FLD-5B paper) and drops")
    parser.add_argument("--pipeline", help="spaCy pipeline for Table 3 (default: the round's curation.text.pipeline)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")

    def run(args: argparse.Namespace) -> int:
        root = catalog_root(args.root)
        with Catalog(root, read_only=True) as catalog:  # a snapshot of the engine's state: no round waits for it
            stats = {"images": image_stats(catalog)}
            if args.round is not None:
                stats["round"] = round_stats(catalog, args.round, args.pipeline)
        if args.json:
            print(json.dumps(stats, indent=2, default=str))
        else:
            print(format_image_stats(stats["images"]))
            if "round" in stats:
                print()
                print(format_round_stats(stats["round"]))
        return 0

    return run
