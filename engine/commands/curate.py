"""``fld curate``: merge and filter a round's annotations, recording every decision."""

from __future__ import annotations

import argparse
import json

from engine.cli import UsageError, add_root_argument, catalog_root, command
from engine.config import EngineConfig
from engine.curate.curation import curate_round
from engine.rounds.lock import RoundLock
from storage.catalog import publish_views


@command("curate", help="merge every source of a round, apply the filters, write curated/ and decisions/")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--round", type=int, required=True, help="round to curate")
    parser.add_argument("--config", help="engine TOML config; its [curation] table sets rules and thresholds")

    def run(args: argparse.Namespace) -> int:
        root = catalog_root(args.root)
        if not root.annotations(args.round).exists():
            raise UsageError(f"round {args.round} has no annotations; run `fld annotate --round {args.round}` first")
        config = EngineConfig.load(args.config)
        with RoundLock(root, purpose=f"curation of round {args.round}"):  # never beside a round or an import
            summary = curate_round(root, args.round, config.curation)
            publish_views(root)  # curation added Parquet files only
        print(json.dumps(summary, indent=2))
        return 0

    return run
