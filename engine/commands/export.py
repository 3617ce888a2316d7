"""``fld export``: a round's curated set in a training format (``florence2``: JSON lines)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from engine.cli import UsageError, add_root_argument, command
from engine.retrain.examples import build_examples, write_jsonl
from storage.layout import DataRoot


def _florence2(root: DataRoot, round_: int, out: Path, args: argparse.Namespace) -> str:
    examples, summary = build_examples(root, round_, args.eval_fraction, args.seed)
    write_jsonl(examples, out)
    lines = [f"{summary['examples']} examples of {summary['images']} images -> {out}"]
    lines += [f"  {count:>7}  {name}" for name, count in summary["by_split_task"].items()]
    if summary["images_not_found"]:
        lines.append(f"  {summary['images_not_found']} images of the curated set are not in the images table")
    return "\n".join(lines)


#: format name -> writer(root, round, out file, args) -> report text
EXPORTERS: dict[str, Callable[[DataRoot, int, Path, argparse.Namespace], str]] = {"florence2": _florence2}


@command("export", help="export a round's curated annotations as training examples (florence2 JSON lines)")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("--round", type=int, required=True, help="the curated round to export")
    parser.add_argument("--format", choices=sorted(EXPORTERS), default="florence2",
                        help="output format (default florence2: image_id, task, prompt, target, width, height, "
                             "shard, key, shard_format, split per line)")
    parser.add_argument("--out", required=True, help="output file (.jsonl)")
    parser.add_argument("--eval-fraction", type=float, default=0.1,
                        help="share of images in the validation split, by image id (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    def run(args: argparse.Namespace) -> int:
        root = DataRoot(args.root)
        if not root.path.is_dir():
            raise UsageError(f"data root {root.path} does not exist")
        if not 0 <= args.eval_fraction < 1:
            raise UsageError(f"--eval-fraction must be in [0, 1), got {args.eval_fraction}")
        if args.round < 0:
            raise UsageError(f"--round must be >= 0, got {args.round}")
        print(EXPORTERS[args.format](root, args.round, Path(args.out), args))
        return 0

    return run
