"""``fld export``: a round's curated set in a training format (``florence2``: JSON lines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from engine.cli import UsageError, add_root_argument, command, existing_root
from engine.retrain.examples import build_examples
from storage.atomic import write_text_atomic
from storage.layout import DataRoot


def _florence2(root: DataRoot, round_: int, out: Path, args: argparse.Namespace) -> str:
    """``OUT/{train,validation}.jsonl`` in the release's schema (``image`` relative to the file,
    ``prefix``, ``suffix``, ``image_id``, ``task``, ``width``, ``height``) and each image as
    ``OUT/images/IMAGEID.ext``, the bytes as ingested."""
    from engine.dataset.locations import image_locations as locate
    from engine.dataset.locations import read_images
    from engine.release.exports import florence2_line
    from storage.atomic import write_bytes_atomic
    from storage.catalog import Catalog

    examples, summary = build_examples(root, round_, args.eval_fraction, args.seed)
    with Catalog(root, read_only=True) as catalog:
        locations = locate(catalog, {e.image_id for e in examples})
    names = {}
    for location, data in read_images(locations):
        names[location.image_id] = f"images/{location.image_id}.{location.extension}"
        write_bytes_atomic(data, out / names[location.image_id])
    by_split: dict[str, list[str]] = {}
    for e in examples:
        line = florence2_line(names[e.image_id], e.image_id, e.task, e.prompt, e.target, e.width, e.height)
        by_split.setdefault(e.split, []).append(json.dumps(line, ensure_ascii=False, sort_keys=True))
    for split, lines in sorted(by_split.items()):
        write_text_atomic("".join(line + "\n" for line in lines), out / f"{split}.jsonl")
    lines = [f"{summary['examples']} examples of {summary['images']} images -> {out}/{{{','.join(sorted(by_split))}}}.jsonl"]
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
                        help="output format (default florence2: OUT/{train,validation}.jsonl with image, prefix, "
                             "suffix, image_id, task, width, height per line, and OUT/images/, as in a release)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--eval-fraction", type=float, default=0.1,
                        help="share of images in the validation split, by image id (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    def run(args: argparse.Namespace) -> int:
        root = existing_root(args.root)
        if not 0 <= args.eval_fraction < 1:
            raise UsageError(f"--eval-fraction must be in [0, 1), got {args.eval_fraction}")
        if args.round < 0:
            raise UsageError(f"--round must be >= 0, got {args.round}")
        print(EXPORTERS[args.format](root, args.round, Path(args.out), args))
        return 0

    return run
