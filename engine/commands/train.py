"""``fld train``: fine-tune the current Florence-2 model on a round, evaluate, promote."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from engine.cli import UsageError, add_root_argument, command
from engine.config import EngineConfig
from engine.retrain.config import TrainingConfig
from engine.typed_config import to_plain
from florence2.settings import Florence2Settings
from storage.layout import DataRoot

#: command-line flags that override keys of the [training] table
OVERRIDES = {"base_model": str, "max_steps": int, "epochs": int, "batch_size": int, "device": str, "dtype": str,
             "lr": float, "promote": str, "ground_truth": str}


def load_training_config(path: str | None, overrides: dict[str, object]) -> tuple[TrainingConfig, Florence2Settings]:
    """The ``[training]`` table of the engine config ``path`` (None: defaults), with overrides,
    and the current model's settings (``EngineConfig.current_model_settings``, as ``fld round`` has them)."""
    engine_config = EngineConfig.load(path)
    table = to_plain(dataclasses.asdict(engine_config.training))
    table.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainingConfig.from_dict(table), engine_config.current_model_settings()
    except ValueError as exc:
        raise UsageError(f"{path or 'command line'}: {exc}") from None


@command("train", help="fine-tune the current Florence-2 model on a round's curated set, evaluate it and "
                       "promote it when it is better")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--round", type=int, required=True, help="the curated round to train on")
    parser.add_argument("--config", help="engine TOML config; its [training] table is read")
    for key, kind in OVERRIDES.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None,
                            help=f"override training.{key}")
    parser.add_argument("--quiet", action="store_true", help="no per-step log lines")

    def run(args: argparse.Namespace) -> int:
        from transformers.utils import logging as hf_logging

        from engine.retrain.round import retrain_round
        from engine.retrain.step_log import StepLog

        hf_logging.disable_progress_bar()  # "Loading weights" bars for every checkpoint load
        config, settings = load_training_config(args.config, {k: getattr(args, k) for k in OVERRIDES})
        root = DataRoot(args.root)
        if not root.curated(args.round).is_dir():
            raise UsageError(f"round {args.round} has no curated set under {root.curated(args.round)}")

        log = StepLog(lambda step, loss, lr: f"step {step}  loss {loss:.4f}  lr {lr:.3g}",
                      lambda line: print(line, file=sys.stderr))
        summary = retrain_round(root, args.round, config, log=None if args.quiet else log, settings=settings)
        result = summary["train"]
        if result["already_trained"]:
            print(f"round {args.round} was already trained: {result['model_dir']}")
        else:
            speed = result["samples_per_second"]
            print(f"trained {result['steps_run']} steps (resumed from {result['resumed_from']}) from "
                  f"{result['start_model']}; {speed and round(speed, 2)} samples/s")
        promotion = summary.get("promotion")
        if promotion:
            print(json.dumps({"new": promotion["new"], "current": promotion["current"]}, sort_keys=True))
            print(f"{'promoted' if promotion['promoted'] else 'not promoted'}: {promotion['reason']}")
        return 0

    return run
