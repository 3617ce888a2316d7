"""Benchmark: scale on paper, from measurement: ingest -> annotate -> curate -> release at two
sizes, their growth exponents, and the projection to FLD-5B's 126M images.

For each size of ``--sizes N1,N2`` (images; default 10000,100000) it writes that many small
unique JPEGs (``--image-size``, default 128x96) in WebDataset tars of ``--per-shard`` images
(``bench.scale_data``; not timed), then runs the real commands, each as its own process on a
fresh data root: ``fld ingest``, ``fld annotate`` (the ``fld5b_dense`` annotator of
``bench.dense_annotator``, a bench-only plugin named in the config's ``plugins``: ~40 rows of
every FLD-5B kind per image without looking at the pixels, so the engine's own cost is what
grows), ``fld curate`` (every default rule; a round of more than ``--partition-rows`` rows in
partitions of about that many, default 500,000: 10k images curate in one process, 100k in 8
partitions) and ``fld release build``. Each stage is measured
by ``bench.measure``: wall seconds, CPU seconds of its whole process tree (cores used = CPU /
wall) and peak RSS (the larger of the sampled process-tree sum and the kernel's peak of its
largest process).

Printed: per stage, seconds per 1k images and peak RSS at each size; the growth exponents
``log(x2 / x1) / log(N2 / N1)`` (1 = linear, 0 = flat) of what grows: wall seconds less ``fld``
start-up (best of three ``fld --help``) and peak RSS less a started ``fld``'s; and the projection
to FLD-5B's 126M images: core-hours (the growing wall seconds at N2 scaled to 126M linearly, and
with the time exponent when above 1, plus start-up, times the cores used at N2) and peak memory
(scaled with the memory exponent, taken as 0 when negative). Last line: whole-pipeline seconds
per 1k images at N2 divided by at N1 (1.0 = linear; above 1: it grows faster than the data).

    .venv/bin/python -m bench.scale --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import OneLineParser, positive_int
from bench.measure import Measured, measured_run
from bench.scale_data import write_small_shards

REPO = Path(__file__).resolve().parents[1]
FLD5B_IMAGES = 126_000_000
STAGES = ("ingest", "annotate", "curate", "release")
GIB = 2**30


def parse_sizes(text: str) -> tuple[int, int]:
    """``"N1,N2"``: two image counts, 1 <= N1 < N2."""
    parts = text.split(",")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or not 1 <= sizes[0] < sizes[1]:
        raise argparse.ArgumentTypeError(f"two increasing image counts expected, e.g. 1000,10000; got {text!r}")
    return sizes  # type: ignore[return-value]


def parse_image_size(text: str) -> tuple[int, int]:
    """``"WxH"`` pixels, each 32..1024."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        width = height = 0
    if not (32 <= width <= 1024 and 32 <= height <= 1024):
        raise argparse.ArgumentTypeError(f"WxH expected, sides of 32..1024 pixels; got {text!r}")
    return width, height


def fld_command() -> list[str]:
    """The ``fld`` console script of this venv (the one ``python`` runs from)."""
    script = Path(sys.executable).with_name("fld")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.main"]


def write_config(path: Path, runner: str, workers: int, wave_size: int) -> Path:
    path.write_text("\n".join([
        'plugins = ["bench.dense_annotator"]', "",
        "[annotators.fld5b_dense]", "",
        "[runner]", f'name = "{runner}"', f"workers = {workers}", f"wave_size = {wave_size}", "",
    ]))
    return path


def run_size(work: Path, images: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Measured]:
    """Every stage on ``images`` images in a fresh root under ``work``; refuses (exit) on a failure."""
    shards = work / "shards"
    write_small_shards(shards, images, args.per_shard, args.image_size)
    root, log = work / "root", work / "stages.log"
    config = write_config(work / "scale.toml", args.runner, args.workers, args.wave_size)
    fld = fld_command()
    commands = {
        "ingest": [*fld, "ingest", "--root", str(root), "--quiet", str(shards)],
        "annotate": [*fld, "annotate", "--root", str(root), "--round", "0", "--config", str(config), "--quiet"],
        "curate": [*fld, "curate", "--root", str(root), "--round", "0", "--config", str(config),
                   "--partition-rows", str(args.partition_rows)],
        "release": [*fld, "release", "build", "--root", str(root), "--round", "0", "--name", "scale"],
    }
    results = {}
    for stage, command in commands.items():
        result = measured_run(command, log, env=env, cwd=REPO)
        if result.returncode != 0:
            sys.exit(f"bench/scale.py: {stage} of {images} images failed (exit {result.returncode}); see {log}")
        results[stage] = result
    annotated = json.loads(results["annotate"].stdout)["sources"]["fld5b_dense"]
    curated = json.loads(results["curate"].stdout)
    if annotated.get("errors") or annotated.get("images") != images:
        sys.exit(f"bench/scale.py: annotate of {images} images: {annotated}; see {log}")
    print(f"{images:,} images: {annotated['rows'] / images:.1f} rows/image annotated, "
          f"{curated.get('curated_rows', 0) / images:.1f} kept by curation")
    return results


def exponent(first: float, second: float, n1: int, n2: int) -> float:
    """Growth exponent of ``first`` (at n1) to ``second`` (at n2): log ratio over log size ratio
    (nan unless both are positive)."""
    return math.log(second / first) / math.log(n2 / n1) if first > 0 and second > 0 else float("nan")


def grown(base: float, variable: float, ratio: float, power: float, unknown: float) -> float:
    """``base + variable * ratio ** power``; a negative ``power`` is taken as 0 and a nan one (no
    variable part measured) as ``unknown``."""
    power = unknown if math.isnan(power) else max(power, 0.0)
    return base + variable * ratio ** power


def shown(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def report(runs: dict[int, dict[str, Measured]], n1: int, n2: int, startup: Measured) -> float:
    """Print the tables; returns whole-pipeline seconds per 1k images at n2 over at n1.

    Exponents are of what grows: a stage's wall seconds less ``fld`` start-up (``startup``'s wall),
    its peak RSS less the started process's (``startup``'s peak)."""
    lines = [(stage, runs[n1][stage].wall_s, runs[n2][stage].wall_s, runs[n2][stage].cores,
              runs[n1][stage].peak, runs[n2][stage].peak) for stage in STAGES]
    walls = {n: sum(runs[n][s].wall_s for s in STAGES) for n in (n1, n2)}
    lines.append(("total", walls[n1], walls[n2], sum(runs[n2][s].cpu_s for s in STAGES) / walls[n2],
                  max(runs[n1][s].peak for s in STAGES), max(runs[n2][s].peak for s in STAGES)))
    base_s, base_rss = startup.wall_s, startup.peak
    head = (f"{'stage':<9} {f's/1k @{n1:,}':>13} {f's/1k @{n2:,}':>14} {'time exp':>8} {'cores':>5} "
            f"{f'RSS @{n1:,}':>12} {f'RSS @{n2:,}':>13} {'mem exp':>7}")
    print(head)
    print("-" * len(head))
    ratio, projected = FLD5B_IMAGES / n2, []
    for stage, wall1, wall2, cores, peak1, peak2 in lines:
        starts = len(STAGES) if stage == "total" else 1  # the total started fld once per stage
        time_exp = exponent(wall1 - starts * base_s, wall2 - starts * base_s, n1, n2)
        mem_exp = exponent(peak1 - base_rss, peak2 - base_rss, n1, n2)
        print(f"{stage:<9} {wall1 * 1000 / n1:>13.2f} {wall2 * 1000 / n2:>14.2f} {shown(time_exp):>8} {cores:>5.2f} "
              f"{peak1 / GIB:>10.2f} G {peak2 / GIB:>11.2f} G {shown(mem_exp):>7}")
        variable = max(wall2 - starts * base_s, 0.0)
        projected.append((stage, grown(starts * base_s, variable, ratio, 1.0, 1.0) * cores / 3600,
                          grown(starts * base_s, variable, ratio, max(time_exp, 1.0), 1.0) * cores / 3600,
                          grown(base_rss, max(peak2 - base_rss, 0), ratio, mem_exp, 0.0) / GIB))
    print(f"exponents: log(x2 / x1) / log({n2:,} / {n1:,}) of wall seconds less fld start-up ({base_s:.1f} s each) "
          f"and of peak RSS less a started fld's ({base_rss / GIB:.2f} G); -: no more than that at one size "
          f"(projected as linear time, flat memory); cores: CPU s / wall s at {n2:,}")
    if any(runs[n2][s].wall_s < 10 * base_s for s in STAGES):
        print(f"caution: a stage took under 10 x fld start-up at {n2:,} images: fixed costs hide the growth "
              f"(sizes of 10,000 and more measure it)")
    print(f"\nprojection to FLD-5B's {FLD5B_IMAGES:,} images (from {n2:,}; core-hours = projected wall x cores; "
          f"a time exponent below 1 is taken as 1, the work per image cannot shrink):")
    head = f"{'stage':<9} {'core-h (linear)':>16} {'core-h (time exp)':>18} {'peak memory (mem exp)':>22}"
    print(head)
    print("-" * len(head))
    stages = projected[:-1]  # the total: the stages' core-hours summed, their largest peak
    projected[-1] = ("total", sum(p[1] for p in stages), sum(p[2] for p in stages), max(p[3] for p in stages))
    for stage, linear, by_exponent, memory in projected:
        print(f"{stage:<9} {linear:>16,.0f} {by_exponent:>18,.0f} {memory:>20,.1f} G")
    return (walls[n2] / n2) / (walls[n1] / n1)


def main() -> None:
    parser = OneLineParser(prog="bench/scale.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=(10_000, 100_000),
                        help="two image counts N1,N2 (default 10000,100000)")
    parser.add_argument("--per-shard", type=positive_int, default=1000, help="images per tar shard (default 1000)")
    parser.add_argument("--image-size", type=parse_image_size, default=(128, 96), help="WxH pixels (default 128x96)")
    parser.add_argument("--runner", default="direct", help="fld annotate's Beam runner (default direct)")
    parser.add_argument("--workers", type=positive_int, default=2, help="workers of direct-multiprocess (default 2)")
    parser.add_argument("--wave-size", type=int, default=0, help="shards per annotate pipeline run (default 0: all)")
    parser.add_argument("--partition-rows", type=int, default=500_000,
                        help="fld curate --partition-rows: a round of more rows is curated in partitions of about "
                             "this many (default 500000; 0: in one process)")
    parser.add_argument("--work", type=Path, help="folder for shards and roots, kept (default: a temp folder, removed)")
    args = parser.parse_args()
    from engine.annotate.runners import RUNNERS

    if args.runner not in RUNNERS:
        parser.error(f"--runner must be one of {', '.join(RUNNERS)}, got {args.runner!r}")
    if args.partition_rows < 0:
        parser.error(f"--partition-rows must be >= 0, got {args.partition_rows}")
    if args.wave_size < 0:
        parser.error(f"--wave-size must be >= 0, got {args.wave_size}")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty; name a new or empty folder")
    work = args.work or Path(tempfile.mkdtemp(prefix="fld-bench-scale-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        started = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        starts = [measured_run([*fld_command(), "--help"], work / "startup.log", env=env, cwd=REPO) for _ in range(3)]
        startup = min(starts, key=lambda m: m.wall_s)  # the least disturbed of three
        print(f"fld start-up (fld --help, best of 3): {startup.wall_s:.2f} s, {startup.peak / 2**20:,.0f} MiB "
              f"(in every stage's time and memory)")
        n1, n2 = args.sizes
        runs = {}
        for n in (n1, n2):
            runs[n] = run_size(work / f"n{n}", n, args, env)
            if args.work is None:  # a temp folder: its shards, root and release are not needed again
                shutil.rmtree(work / f"n{n}", ignore_errors=True)
        print(f"{args.image_size[0]}x{args.image_size[1]} JPEG, {args.per_shard} per shard, runner {args.runner}, "
              f"bench minutes {(time.perf_counter() - started) / 60:.1f}\n")
        ratio = report(runs, n1, n2, startup)
        print(f"\nwhole pipeline seconds per 1k images at {n2:,} / at {n1:,}: {ratio:.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
