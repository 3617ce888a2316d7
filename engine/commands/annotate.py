"""``fld annotate``: run annotators over the ingested shards of a round, on Apache Beam."""

from __future__ import annotations

import argparse
import json

from engine.annotate.plan import AnnotateRequest, annotate
from engine.annotate.runners import RUNNERS
from engine.cli import UsageError, accept_pass_through, add_root_argument, catalog_root, command
from engine.config import EngineConfig
from storage.decode import DecodeLimits

EPILOG = """
Annotator settings come from the config's [annotators.NAME] tables; an annotator that needs
none (ocr, sidecar_captions) runs without a config; your own annotators register from the
modules named in FLD_PLUGINS. Any option not listed above is passed to
Beam as a pipeline option, e.g.:
  fld annotate --round 0 --annotator ocr --runner dask --dask_client_address=tcp://10.0.0.5:8786
  fld annotate --round 0 --annotator ocr --runner flink --flink_master=localhost:8081 --environment_type=LOOPBACK
  fld annotate --round 0 --annotator ocr --runner dataflow --project=P --region=R --temp_location=gs://B/tmp
"""


@command("annotate", help="annotate the ingested images of a round with one or more annotators (Beam)")
def declare(parser: argparse.ArgumentParser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_root_argument(parser)
    accept_pass_through(parser)
    parser.add_argument("--round", type=int, default=0, help="round number (default 0)")
    parser.add_argument("--annotator", action="append", default=[], metavar="NAME",
                        help="annotator to run (repeatable; default: every [annotators.*] table of --config)")
    parser.add_argument("--config", help="engine TOML config (annotator settings, runner, limits)")
    parser.add_argument("--runner", choices=sorted(RUNNERS), help="Beam runner (default: config's, else direct)")
    parser.add_argument("--workers", type=int, help="worker processes for direct-multiprocess")
    parser.add_argument("--wave-size", type=int, default=0,
                        help="shards per pipeline run; a killed run loses at most one wave (default: no limit)")
    parser.add_argument("--wave-images", type=int, default=None,
                        help="images per pipeline run, which bounds memory (default: the config's [runner] "
                             "wave_images, 10,000; 0: no limit)")
    parser.add_argument("--decode-threads", type=int, default=None,
                        help="threads each worker decodes a batch's images on (default: the config's [runner] "
                             "decode_threads, 0: the worker's cores, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        config = EngineConfig.load(args.config)
        names = args.annotator or list(config.annotators)
        if not names:
            raise UsageError("name an annotator with --annotator NAME (see `fld annotators`) or give a --config")
        root = catalog_root(args.root)
        request = AnnotateRequest(
            round=args.round, annotators={n: config.annotators.get(n, {}) for n in names},
            runner=args.runner or config.runner.name, workers=args.workers or config.runner.workers,
            pipeline_args=[*config.runner.options, *args.extra],
            limits=DecodeLimits(config.ingest.max_pixels, config.ingest.min_side), progress=not args.quiet,
            wave_size=args.wave_size or config.runner.wave_size,
            wave_images=config.runner.wave_images if args.wave_images is None else args.wave_images,
            decode_threads=config.runner.decode_threads if args.decode_threads is None else args.decode_threads)
        summary = annotate(root, request)
        print(json.dumps(summary, indent=2))
        return 0

    return run
