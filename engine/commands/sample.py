"""``fld sample``: write synthetic WebDataset shards with COCO ground truth."""

from __future__ import annotations

import argparse
import json

from engine.cli import command
from engine.demo.sample_data import SampleConfig, write_sample
from engine.demo.styles import STYLES


@command("sample", help="write synthetic image shards (shapes and words) with COCO ground truth")
def declare(parser: argparse.ArgumentParser):
    parser.add_argument("--out", required=True, help="output folder (shards/, ground_truth.json, ...)")
    parser.add_argument("--images", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--images-per-shard", type=int, default=16, help="images per tar shard (default 16)")
    parser.add_argument("--no-noise", action="store_true", help="do not write noisy_labels.json")
    parser.add_argument("--style", default="plain", choices=list(STYLES),
                        help="scene background: plain (what the demo model was pre-trained on), grid, textured")

    def run(args: argparse.Namespace) -> int:
        config = SampleConfig(images=args.images, seed=args.seed, images_per_shard=args.images_per_shard,
                              noise=not args.no_noise, progress=True, style=args.style)
        summary = write_sample(args.out, config)
        print(json.dumps(summary, indent=2))
        return 0

    return run
