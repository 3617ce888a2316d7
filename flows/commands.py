"""The ``fld`` subcommands that run Prefect flows: round, loop, deploy (and demo, release)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli import UsageError, add_root_argument, command, data_root
from engine.config import EngineConfig
from engine.demo.styles import DEMO_STYLE, STYLES
from engine.preflight import preflight
from engine.rounds.lock import refuse_if_busy
from engine.rounds.loop import check_round_number
from engine.rounds.summary import round_markdown


def _print_round(result: dict) -> None:
    if result.get("skipped"):
        print(f"round {result['round']} is already done")
    else:
        print(round_markdown(result))


@command("round", help="run (or resume) one annotate-refine round as a Prefect flow")
def declare_round(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--config", help="engine TOML config (default: built-in defaults)")
    parser.add_argument("--round", type=int, help="round number (default: resume the unfinished one, else the next)")

    def run(args: argparse.Namespace) -> int:
        from flows.round_flow import round_flow

        preflight(EngineConfig.load(args.config))  # a bad key or path fails here, before Prefect starts
        refuse_if_busy(data_root(args.root))  # and a busy root, at once
        if args.round is not None:
            check_round_number(data_root(args.root), args.round)  # and a gap in the numbering
        _print_round(round_flow(root=str(data_root(args.root).path), config_path=args.config,
                                round_number=args.round, progress=True))
        return 0

    return run


@command("loop", help="run N rounds as a Prefect flow, stopping early when the metric stops improving")
def declare_loop(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--config", help="engine TOML config")
    parser.add_argument("--rounds", type=int, help="rounds to run (default: the config's loop.rounds)")

    def run(args: argparse.Namespace) -> int:
        from flows.round_flow import loop_flow

        preflight(EngineConfig.load(args.config))  # a bad key or path fails here, before Prefect starts
        refuse_if_busy(data_root(args.root))  # and a busy root, at once
        for result in loop_flow(root=str(data_root(args.root).path), config_path=args.config,
                                rounds=args.rounds, progress=True):
            _print_round(result)
            if "stopped_early" in result:
                print(f"stopped early: {result['stopped_early']}")
        return 0

    return run


@command("deploy", help="serve the round flow as a Prefect deployment on a cron schedule")
def declare_deploy(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--config", required=True, help="engine TOML config the scheduled rounds use")
    parser.add_argument("--cron", required=True, help='cron schedule, e.g. "0 2 * * *" (02:00 every day)')
    parser.add_argument("--timezone", default="UTC", help="timezone of the schedule (default UTC)")
    parser.add_argument("--name", default="fld-round", help="deployment name (default fld-round)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the deployment, do not serve")

    def run(args: argparse.Namespace) -> int:
        from flows.deploy import build_deployment, serve_deployment

        deployment = build_deployment(args.root, args.config, args.cron, args.name, args.timezone)
        print(json.dumps({"name": deployment.name, "flow": "fld-round", "cron": args.cron,
                          "timezone": args.timezone, "parameters": deployment.parameters}, indent=2))
        if not args.dry_run:
            print("serving; Ctrl-C to stop (set PREFECT_API_URL to register with a Prefect server)")
            serve_deployment(deployment)
        return 0

    return run


@command("demo", help="the main job on the embedded default: sample data with ground truth, 3 offline rounds")
def declare_demo(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--images", type=int, default=96, help="synthetic images to generate (default 96)")
    parser.add_argument("--rounds", type=int, default=3, help="annotate-refine rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    parser.add_argument("--style", default=DEMO_STYLE, choices=list(STYLES),
                        help=f"scene style of the sample (default {DEMO_STYLE}: not the plain style the shipped "
                             f"model was pre-trained on, as a pre-trained Florence-2 meets your own images)")
    parser.add_argument("--fresh", action="store_true",
                        help="empty the demo's data root first (only a root fld demo created)")
    parser.add_argument("--model", help="Florence-2 checkpoint directory the loop starts from (default: the shipped "
                                        "OD-only model; experiments/multitask-demo-model does every task)")
    parser.add_argument("--tasks", default="OD",
                        help="Florence-2 tasks the model annotates and is fine-tuned on: comma-separated names, "
                             "or 'all' (default OD, all the shipped model was pre-trained for)")

    def run(args: argparse.Namespace) -> int:
        from engine.demo.fresh import DEMO_KIND, clear_demo_root
        from engine.demo.loop_report import format_loop, format_verdict, loop_figures
        from engine.demo.model_quality import RoundModels, sample_style
        from engine.demo.report import (
            demo_round_report,
            demo_tasks,
            demo_training,
            format_demo_report,
            format_quality_trend,
            prepare_demo,
        )
        from engine.demo.review_value import format_review_value, review_value
        from flows.round_flow import loop_flow

        tasks = demo_tasks(args.tasks)
        if args.model is not None and not Path(args.model).is_dir():
            raise UsageError(f"--model {args.model} is not a checkpoint directory")
        training = demo_training(args.model, tasks)
        root = data_root(args.root)
        if args.fresh:  # refuses, in its own words, a folder that is not a demo root, and a busy one
            deleted = clear_demo_root(root)
            if deleted:
                print(f"[demo] --fresh: emptied the demo root {root.path} ({', '.join(deleted)})")
        refuse_if_busy(root)  # a folder that is not a data root (or a new one to make), a busy root
        root.ensure(kind=DEMO_KIND)
        config_path = prepare_demo(root, args.images, args.seed, args.rounds, training, args.style)
        config = EngineConfig.load(config_path)
        preflight(config)
        models = RoundModels(config, sample_style(root.path / "sample"))
        print(f"[demo] sample data and ground truth in {root.path / 'sample'}; config {config_path}")
        results = loop_flow(root=str(root.path), config_path=str(config_path), rounds=args.rounds, progress=True)
        reports, figures = [], []
        for result in results:
            reports.append(demo_round_report(root, result["round"], root.path / "sample" / "ground_truth.json"))
            figures.append(loop_figures(root, result["round"], root.path / "sample", models=models))
            print(format_demo_report(reports[-1]))
            print(format_loop(figures[-1]))
        print(format_quality_trend(reports))
        if results:
            value = review_value(root, root.path / "sample" / "ground_truth.json", fraction=0.1, draws=5)
            print(f"[demo] {format_review_value(value)}")
        last = results[-1]["round"] if results else 0
        print(f"[demo] dashboard: {root.report(last)}   (or: fld serve --root {args.root})")
        print(f'[demo] query it: cd {root.path} && duckdb -readonly catalog.duckdb '
              f'"select source, count(*) from annotations group by 1"')  # its views name files relative to the root
        print(f"[demo] {format_verdict(figures)}")
        return 0

    return run
