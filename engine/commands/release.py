"""``fld release build|verify``: immutable, reproducible dataset releases of a curated round."""

from __future__ import annotations

import argparse
import json

from engine.cli import UsageError, add_root_argument, command, existing_root
from storage.layout import DataRoot


def _build(args: argparse.Namespace) -> int:
    from engine.release.batching import ReleaseBatching
    from engine.release.build import ReleaseConfig, build_release

    if args.round < 0:
        raise UsageError(f"--round must be >= 0, got {args.round}")
    config = ReleaseConfig(rows_per_file=args.rows_per_file, row_group_size=args.row_group_size,
                           images=args.images, images_per_shard=args.images_per_shard,
                           eval_fraction=args.eval_fraction, seed=args.seed, pipeline=args.pipeline)
    batching = ReleaseBatching(images=args.batch_images, sql_memory_mib=args.sql_memory_mib, sort_rows=args.sort_rows)
    manifest = build_release(DataRoot(args.root), args.round, args.name, config, batching)
    print(f"release {args.name}: {manifest['path']}")
    print(f"  manifest sha256 {manifest['manifest_sha256']}, {len(manifest['files'])} files, "
          f"{manifest['images']} images ({manifest['annotated_images']} annotated)")
    print("  " + json.dumps(manifest["row_counts"]))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from engine.release.build import verify_release

    problems = verify_release(DataRoot(args.root), args.release)
    for problem in problems:
        print(f"FAILED {problem}")
    print(f"release {args.release}: " + ("verified, every file matches its sha256" if not problems
                                         else f"{len(problems)} problems"))
    return 1 if problems else 0


#: action -> handler
ACTIONS = {"build": _build, "verify": _verify}


@command("release", help="build an immutable dataset release of a curated round, or verify one")
def declare(parser: argparse.ArgumentParser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write ROOT/releases/NAME from a curated round (never overwrites)")
    add_root_argument(build)
    build.add_argument("--round", type=int, required=True, help="the curated round to release")
    build.add_argument("--name", required=True, help="release name: letters, digits, '.', '_', '-'")
    build.add_argument("--images", choices=("webdataset", "reference"), default="webdataset",
                       help="copy image bytes into WebDataset tars (default) or reference the source shards")
    build.add_argument("--rows-per-file", type=int, default=100_000, help="Parquet rows per file (default 100000)")
    build.add_argument("--row-group-size", type=int, default=10_000, help="Parquet rows per row group (default 10000)")
    build.add_argument("--images-per-shard", type=int, default=1000, help="images per WebDataset tar (default 1000)")
    build.add_argument("--eval-fraction", type=float, default=0.1,
                       help="validation share of the Florence-2 export, by image id (default 0.1)")
    build.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    build.add_argument("--pipeline", help="spaCy pipeline for the card's Table 3 (default: the round's)")
    build.add_argument("--batch-images", type=int, default=1000,
                       help="images whose rows the build holds at once (default 1000; the release is the same)")
    build.add_argument("--sql-memory-mib", type=int, default=512,
                       help="DuckDB's memory for the build's queries in MiB, spilling beyond it (default 512)")
    build.add_argument("--sort-rows", type=int, default=1_000_000,
                       help="the most curated rows sorted at once: more are sorted by ranges of image ids "
                            "(default 1,000,000; the release is the same)")
    verify = actions.add_parser("verify", help="re-hash every file of a release against its manifest")
    add_root_argument(verify)
    verify.add_argument("release", help="the release name (or its folder, which must be under ROOT/releases)")

    def run(args: argparse.Namespace) -> int:
        existing_root(args.root)
        return ACTIONS[args.action](args)

    return run
