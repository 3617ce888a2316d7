"""Benchmark: a whole ``fld round`` against its annotators' bare inference on the same images.

Writes ``--images`` synthetic scenes (``fld sample``'s writer, ``--per-shard`` per tar; not
timed) and a config whose round is what matters: ingest the shards (``[sources]``), annotate
with RapidOCR (``[annotators.ocr]``, its shipped weights) and the demo's Florence-2
(``engine/demo/checkpoint`` as the current model from round 0: ``[model] annotate_from_round =
0``, ``[model.annotator]`` the demo's table: OD with the hflip and vflip views fused), curate
with every default rule. What a round cannot skip is made tiny and named in the output: the
review step is off (``[review] budget_fraction = 0``), training runs 1 step of 1 example,
evaluation generates for 1 validation example per task, promotion is ``always`` (no
bootstrap), Prefect retries are off; the dashboard is built as always.

Then ``fld round --root R --config C`` runs as a child process (``bench.measure``: wall, CPU,
peak RSS), and its own records (``rounds/round=0/round.json`` and ``steps/*.json``: a step's
time is its ``finished_at`` minus the previous one's, the first step's from the round's
``started_at``) split its time into start-up (process start to the round's record: imports,
Prefect's API, the config and preflight), each step, and shut-down. The baseline, in this
process afterwards: every image decoded as the pipeline decodes it, the same annotator classes
built from the registry with the settings the round gives them, ``load``-ed, and ``annotate``
called on batches of their batch size cut within each shard (``bench.bare_inference``).

Last line: the round's annotate step seconds divided by the annotators' bare ``annotate``
seconds (1.0: the engine adds nothing; the line before: the whole round over the same).

    .venv/bin/python -m bench.round --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from bench.bare_inference import bare_annotate, decoded_images
from bench.cli import OneLineParser, positive_int
from bench.measure import measured_run
from engine.demo.report import DEMO_CHECKPOINT, demo_annotator_table
from engine.demo.sample_data import SampleConfig, write_sample
from storage.layout import DataRoot

REPO = Path(__file__).resolve().parents[1]
#: the round's tiny train / evaluate / promote (they cannot be turned off; ingest, annotate and curate are measured)
TINY_TRAINING = {
    "base_model": str(DEMO_CHECKPOINT), "tasks": ["OD"], "target_format": "per_box", "max_steps": 1, "batch_size": 1,
    "device": "cpu", "dtype": "fp32", "eval_fraction": 0.05, "eval_batch_size": 1, "eval_max_examples": 1,
    "max_new_tokens": 16, "image_dependence_examples": 1, "min_image_dependence": 0.0, "promote": "always",
}


def model_table() -> dict:
    """The florence2 settings the round annotates with (its ``model``: the demo checkpoint)."""
    return {**demo_annotator_table(), "model": str(DEMO_CHECKPOINT)}


def write_config(path: Path, shards: Path) -> Path:
    value = json.dumps  # JSON scalars, strings and arrays are TOML values
    lines = ["[sources]", f"paths = {value([str(shards)])}", "", "[annotators.ocr]", "",
             "[model]", "annotate_from_round = 0", "", "[model.annotator]",
             *(f"{k} = {value(v)}" for k, v in demo_annotator_table().items()), "",
             "[training]", *(f"{k} = {value(v)}" for k, v in TINY_TRAINING.items()), "",
             "[review]", "budget_fraction = 0", "", "[flow]", "retries = 0", ""]
    path.write_text("\n".join(lines))
    return path


def round_parts(root: DataRoot, started: float, ended: float) -> dict[str, tuple[float, float]]:
    """``(start, end)`` in seconds since the epoch of start-up, each step (from the round's records)
    and shut-down; ``started`` and ``ended``: the process's start and end."""
    folder = root.round_folder(0)
    record = json.loads((folder / "round.json").read_text())
    begin = datetime.fromisoformat(record["started_at"]).timestamp()
    steps = [json.loads(p.read_text()) for p in (folder / "steps").glob("*.json")]
    steps.sort(key=lambda s: s["finished_at"])
    parts, last = {"start-up": (started, begin)}, begin
    for step in steps:
        finished = datetime.fromisoformat(step["finished_at"]).timestamp()
        parts[step["step"]] = (last, finished)
        last = finished
    parts["shut-down"] = (last, ended)
    return parts


def main() -> None:
    parser = OneLineParser(prog="bench/round.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=positive_int, default=1000, help="synthetic scenes (default 1000)")
    parser.add_argument("--per-shard", type=positive_int, default=100, help="images per tar shard (default 100)")
    parser.add_argument("--work", type=Path, help="folder for the sample and the root, kept (default: a temp folder)")
    args = parser.parse_args()
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty; name a new or empty folder")
    work = args.work or Path(tempfile.mkdtemp(prefix="fld-bench-round-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        sample = write_sample(work / "sample", SampleConfig(images=args.images, images_per_shard=args.per_shard,
                                                            seed=1, noise=False))
        config, root = write_config(work / "round.toml", work / "sample" / "shards"), DataRoot(work / "root")
        fld = Path(sys.executable).with_name("fld")
        command = [str(fld), "round", "--root", str(root.path), "--config", str(config)]
        env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}  # a fresh Prefect database, as a new user's
        result = measured_run(command, work / "round.log", env=env, cwd=REPO)
        if result.returncode != 0:
            sys.exit(f"bench/round.py: fld round failed (exit {result.returncode}); see {work / 'round.log'}")
        parts = round_parts(root, result.started_at, result.ended_at)
        times = {name: end - start for name, (start, end) in parts.items()}
        cpu = {name: result.cpu_at(end) - result.cpu_at(start) for name, (start, end) in parts.items()}
        annotated = json.loads((root.round_folder(0) / "steps" / "annotate.json").read_text())
        engine_rows = {s: v["rows"] for s, v in json.loads(annotated["summary"])["sources"].items()}

        shard_items, decode_s = decoded_images([Path(p) for p in sample["shards"]])
        bare = [bare_annotate("ocr", {}, shard_items), bare_annotate("florence2", model_table(), shard_items)]
        bare_s = sum(b.annotate_s for b in bare)
        images = sum(len(items) for items in shard_items)

        print(f"{images} images ({len(sample['shards'])} shards), annotators ocr + florence2 "
              f"(demo checkpoint, views {', '.join(demo_annotator_table()['views'])}); "
              f"fld round: {result.wall_s:.1f} s wall, {result.cores:.2f} cores, peak RSS {result.peak / 2**30:.2f} GiB")
        print("off or tiny: review (budget_fraction 0), train 1 step of 1 example, evaluate 1 example per task, "
              "promote always, retries 0")
        print(f"\n{'round part':<12} {'seconds':>8} {'share':>6} {'CPU s':>7}")
        for name, seconds in times.items():
            print(f"{name:<12} {seconds:>8.1f} {seconds / result.wall_s:>6.1%} {cpu[name]:>7.1f}")
        print(f"\n{'bare, in one process':<32} {'seconds':>8} {'CPU s':>7} {'rows':>7} {'engine rows':>11}")
        print(f"{'decode (as the pipeline does)':<32} {decode_s:>8.1f}")
        for run in bare:
            print(f"{run.name + ' build + load':<32} {run.build_s + run.load_s:>8.1f}")
            print(f"{run.name + ' annotate':<32} {run.annotate_s:>8.1f} {run.annotate_cpu_s:>7.1f} {run.rows:>7} "
                  f"{engine_rows.get(run.name, 0):>11}")
        bare_cpu = sum(b.annotate_cpu_s for b in bare)
        loads = sum(b.build_s + b.load_s for b in bare)
        print(f"\nannotate step {times['annotate']:.1f} s = bare annotate {bare_s:.1f} s + {times['annotate'] - bare_s:.1f} s "
              f"(bare decode {decode_s:.1f} s, bare model loads {loads:.1f} s)")
        print(f"CPU seconds: annotate step {cpu['annotate']:.1f} / bare annotate {bare_cpu:.1f} = "
              f"{cpu['annotate'] / bare_cpu:.2f}; whole round {result.cpu_s:.1f} / bare {bare_cpu:.1f} = "
              f"{result.cpu_s / bare_cpu:.2f}")
        print(f"whole round / bare inference: {result.wall_s / bare_s:.2f}")
        print(f"round annotate step / bare inference: {times['annotate'] / bare_s:.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
