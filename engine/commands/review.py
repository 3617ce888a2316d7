"""``fld review plan|export|import``: people look at what most needs it, and their corrections come back."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli import UsageError, add_root_argument, command, existing_root
from storage.layout import DataRoot


def _config(args: argparse.Namespace):
    from engine.config import EngineConfig

    return EngineConfig.load(args.config)


def _plan(args: argparse.Namespace) -> int:
    from engine.review.plan import plan_queue, round_thresholds

    config = _config(args)
    root = DataRoot(args.root)
    plan = plan_queue(root, args.round, args.budget, round_thresholds(root, args.round, config.curation.confidence),
                      config.review)
    rows = plan.queue.to_pylist()
    print(f"{plan.line(args.round)} -> {root.review_queue(args.round)}")
    for row in rows[:args.show]:
        print(f"  {row['rank']:>4}  {row['image_id'][:12]}  priority {row['priority']:.1f}  "
              + "; ".join(row["reasons"][:3]) + (" ..." if len(row["reasons"]) > 3 else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from engine.review.export import export_label_studio

    summary = export_label_studio(DataRoot(args.root), args.round, Path(args.out), args.image_url_prefix)
    print(f"label studio review of round {args.round}: {summary['tasks']} tasks, {summary['rows']} rows shown, "
          f"{summary['labels']} labels -> {summary['out']} (tasks.json, label_config.xml, images/, README.md)")
    if summary["missing_images"]:
        print(f"  {summary['missing_images']} queued images could not be read back from their shards")
    return 0


def _import(args: argparse.Namespace) -> int:
    from engine.review.importing import import_review
    from engine.rounds.lock import RoundLock

    root = DataRoot(args.root)
    with RoundLock(root, purpose="review import"):  # a round's curation must not see half an import
        print(import_review(root, Path(args.file)).line())
    return 0


ACTIONS = {"plan": _plan, "export": _export, "import": _import}


@command("review", help="rank images for a human look, export them to Label Studio, import the corrections")
def declare(parser: argparse.ArgumentParser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    plan = actions.add_parser("plan", help="rank a round's images by how much a human look would change the data")
    add_root_argument(plan)
    plan.add_argument("--round", type=int, required=True, help="the curated round to review")
    plan.add_argument("--budget", type=int, help="how many images people will look at (default: [review] budget_fraction)")
    plan.add_argument("--config", help="engine TOML config: its [review] weights and [curation.confidence] thresholds")
    plan.add_argument("--show", type=int, default=10, help="queue rows to print (default 10)")
    export = actions.add_parser("export", help="write the round's review queue as Label Studio tasks")
    add_root_argument(export)
    export.add_argument("--round", type=int, required=True, help="the round whose queue to export")
    export.add_argument("--to", choices=("label-studio",), default="label-studio", help="the annotation tool")
    export.add_argument("--out", required=True, help="folder for tasks.json, label_config.xml and images/")
    export.add_argument("--image-url-prefix", default="/data/local-files/?d=",
                        help="what image URLs start with (default: Label Studio's local files, OUT as document root)")
    imported = actions.add_parser("import", help="bring a Label Studio JSON export back as people's corrections")
    add_root_argument(imported)
    imported.add_argument("file", help="the JSON export of the Label Studio project")

    def run(args: argparse.Namespace) -> int:
        existing_root(args.root)
        if getattr(args, "round", 0) < 0:
            raise UsageError(f"--round must be >= 0, got {args.round}")
        return ACTIONS[args.action](args)

    return run
