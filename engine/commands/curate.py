"""``fld curate``: merge and filter a round's annotations, recording every decision.

A round too large for one process is curated in partitions of whole image shards
(``--partition-rows`` or ``[curation] partition_rows``), one after another here or side by
side on a Beam runner (``--runner``); any option not listed is passed to Beam, e.g.::

  fld curate --round 3 --partition-rows 2000000 --runner dask --dask_client_address=tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from engine.annotate.runners import RUNNERS
from engine.cli import UsageError, accept_pass_through, add_root_argument, catalog_root, command
from engine.config import EngineConfig
from engine.curate.config import LOCAL_RUNNER
from engine.curate.round_curation import curate_configured
from engine.rounds.lock import RoundLock
from storage.catalog import publish_views


@command("curate", help="merge every source of a round, apply the filters, write curated/ and decisions/")
def declare(parser: argparse.ArgumentParser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "Any option not listed above is passed to Beam as a pipeline option, e.g.:\n" \
                    "  fld curate --round 3 --partition-rows 2000000 --runner dask --dask_client_address=tcp://10.0.0.5:8786"
    add_root_argument(parser)
    accept_pass_through(parser)
    parser.add_argument("--round", type=int, required=True, help="round to curate")
    parser.add_argument("--config", help="engine TOML config; its [curation] table sets rules and thresholds")
    parser.add_argument("--partition-rows", type=int, metavar="N",
                        help="a round of more than N rows (raw + previous curated) is curated in partitions of "
                             "about N raw rows (0: always in one process; default: the config's, 2000000)")
    parser.add_argument("--runner", choices=[LOCAL_RUNNER, *sorted(RUNNERS)],
                        help="where partitions run: local (one after another here) or a Beam runner "
                             "(default: the config's [curation] partition_runner)")
    parser.add_argument("--workers", type=int, help="worker processes of the Beam runner (default: [runner] workers)")

    def run(args: argparse.Namespace) -> int:
        root = catalog_root(args.root)
        if not root.annotations(args.round).exists():
            raise UsageError(f"round {args.round} has no annotations; run `fld annotate --round {args.round}` first")
        config = EngineConfig.load(args.config)
        changes = {k: v for k, v in (("partition_rows", args.partition_rows), ("partition_runner", args.runner))
                   if v is not None}
        try:
            curation = dataclasses.replace(config.curation, **changes)
        except ValueError as exc:
            raise UsageError(str(exc).replace("curation.partition_rows", "--partition-rows")) from None
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {args.workers}")
        with RoundLock(root, purpose=f"curation of round {args.round}"):  # never beside a round or an import
            summary = curate_configured(root, args.round, curation, args.workers or config.runner.workers,
                                        [*config.runner.options, *args.extra])
            publish_views(root)  # curation added Parquet files only
        print(json.dumps(summary, indent=2))
        return 0

    return run
