"""``fld ingest``: register shards and images in the data root."""

from __future__ import annotations

import argparse

from engine.cli import UsageError, add_root_argument, command
from engine.ingest.shards import IngestConfig, ingest
from storage.layout import DataRoot
from storage.readers import SourceError


@command("ingest", help="register image shards (tar, .tar.gz, image folders, Parquet) in the data root")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)
    parser.add_argument("sources", nargs="+", metavar="SRC",
                        help="shard files, folders (searched recursively) or glob patterns")
    parser.add_argument("--max-pixels", type=int, default=IngestConfig.max_pixels,
                        help=f"refuse images above this many pixels (default {IngestConfig.max_pixels})")
    parser.add_argument("--min-side", type=int, default=IngestConfig.min_side,
                        help=f"refuse images with a side below this (default {IngestConfig.min_side} px)")
    parser.add_argument("--max-member-bytes", type=int, default=IngestConfig.max_member_bytes,
                        help=f"refuse image files or members above this size unread (default {IngestConfig.max_member_bytes})")
    parser.add_argument("--max-sidecar-bytes", type=int, default=IngestConfig.max_sidecar_bytes,
                        help=f"refuse .json/.txt sidecars above this size unread (default {IngestConfig.max_sidecar_bytes})")
    parser.add_argument("--workers", type=int, default=IngestConfig.workers, help="decode threads (default 2)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="judge again the shards with refused or unreadable images (a changed limit does this itself)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        config = IngestConfig(max_pixels=args.max_pixels, min_side=args.min_side, workers=args.workers,
                              progress=not args.quiet, max_member_bytes=args.max_member_bytes,
                              max_sidecar_bytes=args.max_sidecar_bytes, retry_errors=args.retry_errors)
        try:
            root = DataRoot(args.root).ensure()
        except OSError as exc:
            raise UsageError(f"cannot write the data root {args.root}: {exc.strerror or exc}") from None
        try:
            summary = ingest(root, args.sources, config)
        except SourceError as exc:
            raise UsageError(str(exc)) from None
        again = f" ({summary.shards_rejudged} of them judged again)" if summary.shards_rejudged else ""
        print(f"shards: {summary.shards_ingested} ingested{again}, {summary.shards_skipped} already there")
        print(f"images: {summary.ok} ok, {summary.duplicate} duplicates, {summary.error} errors")
        for reason, count in summary.errors_by_reason.most_common():
            print(f"  error {count:>6}  {reason}")
        return 0

    return run
