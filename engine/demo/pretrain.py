"""Pre-train the demo's Florence-2 on a separate synthetic pool, with the engine's training code.

Rebuild the committed checkpoint, and the multi-task attempt built on it, with
``bash scripts/pretrain_demo_model.sh`` (``--device cuda`` trains on a GPU):

1. ``<OD>`` from a fresh s128 (``--tasks OD --steps 3000``: the committed, OD-only checkpoint,
   about 65 minutes on one shared CPU thread, 1.3 s a step);
2. every task of :data:`engine.demo.pretrain_examples.PRETRAIN_TASKS` continued from stage 1
   (``--start`` its checkpoint; OD examples repeated ``od_repeat`` times so boxes keep their share):
   ``experiments/multitask-demo-model``, not shipped (its README has the figures: it detects worse
   and does not see colour yet).

What it does, all reproducible from the settings in :class:`PretrainConfig`:

1. **Pool**: ``images`` scenes written by :func:`engine.demo.sample_data.write_sample` with
   sample seed ``pool_seed`` (default 10,000) and its *noisy* label copy (boxes dropped,
   jittered, classes swapped: the labels the engine starts from). ``fld demo --seed S`` renders
   scene ``S * 1_000_003 + i``, so demo seeds below 10,000 never meet the pool's scenes.
2. **Examples** (:mod:`engine.demo.pretrain_examples`): each image's noisy boxes become the
   engine's own ``<OD>`` example, its scene texts and geometry every other task's
   (:func:`florence2.targets.image_targets` over curated-style rows).
3. **Model**: :func:`engine.demo.model.build_demo_checkpoint` (s128, sinusoidal inits), or the
   checkpoint ``start`` names.
4. **Training**: :func:`engine.retrain.train.train` with the auxiliary per-cell head
   (``aux_loss_weight`` 1; AdamW lr 1e-3, batch 16, warm-up then cosine, grad-clip 1).
5. **Held-out check**: ``heldout_images`` unseen scenes of sample seed ``heldout_seed``
   (default 20,000), greedy ``<OD>`` through the ``florence2`` annotator, scored per box
   against their ground truth (class-aware, IoU >= 0.5; evaluation only, nothing is decided
   from it) and :func:`engine.retrain.evaluate.image_dependence`.

``--out`` receives the model files (safetensors, config, tokenizer, processor), ``metrics.json``
and ``train_log.tsv`` (step, token loss, auxiliary loss). ``--work`` keeps the pool and the
trainer's checkpoints, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.dataset.curated import CURATED_COLUMNS
from engine.demo.pretrain_examples import pool_examples
from engine.retrain.examples import Example
from florence2.targets import image_targets

#: sample seeds of the pre-training pool and of the held-out check (the demo's default is 0)
POOL_SEED, HELDOUT_SEED = 10_000, 20_000
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
               "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of the pre-training (counts are images / optimizer steps; ``lr`` is the peak)."""

    images: int = 8000
    heldout_images: int = 200
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    aux_loss_weight: float = 1.0
    #: words of the region descriptions the auxiliary head predicts per cell (0: shape classes and boxes only)
    aux_words: int = 0
    seed: int = 0
    #: the committed checkpoint's: a label before every box (``florence2.format.TARGET_FORMATS``)
    target_format: str = "per_box"
    pool_seed: int = POOL_SEED
    heldout_seed: int = HELDOUT_SEED
    images_per_shard: int = 250
    max_new_tokens: int = 96
    device: str = "cpu"
    loader_threads: int = 1
    #: the tasks trained (comma-separated on the command line)
    tasks: tuple[str, ...] = ("OD",)
    #: a checkpoint folder to continue from ("" = a fresh s128)
    start: str = ""
    #: how many times each OD example is repeated in the pool's examples (its share of the steps)
    od_repeat: int = 1

    def __post_init__(self) -> None:
        for name in ("images", "heldout_images", "steps", "batch_size", "images_per_shard", "max_new_tokens",
                     "loader_threads", "od_repeat"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps!r}")
        if not isinstance(self.aux_words, int) or self.aux_words < 0:
            raise ValueError(f"aux_words must be an integer >= 0, got {self.aux_words!r}")
        if not self.lr > 0 or not self.aux_loss_weight >= 0:
            raise ValueError(f"lr must be > 0 and aux_loss_weight >= 0, got {self.lr!r}, {self.aux_loss_weight!r}")
        from florence2.format import task_names

        object.__setattr__(self, "tasks", task_names("tasks", list(self.tasks)))
        if self.start and not (Path(self.start) / "model.safetensors").is_file():
            raise ValueError(f"start must be a checkpoint folder with model.safetensors, got {self.start!r}")
        if len({self.pool_seed, self.heldout_seed}) < 2 or min(self.pool_seed, self.heldout_seed) < POOL_SEED:
            raise ValueError(f"pool_seed and heldout_seed must differ and be >= {POOL_SEED} (the demo's seeds "
                             f"are below), got {self.pool_seed!r}, {self.heldout_seed!r}")


def od_examples(sample_dir: Path, labels_file: str, images_per_shard: int, split: str = "train",
                target_format: str = "per_box") -> list[Example]:
    """One ``<OD>`` example per image of a ``write_sample`` folder, from the COCO file
    ``labels_file`` in it (the noisy copy or the ground truth), built by the engine's own
    example builder; images without boxes give none."""
    coco = json.loads((sample_dir / labels_file).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    boxes: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        row = {**dict.fromkeys(CURATED_COLUMNS), "kind": "region", "region_type": "object",
               "text": names[ann["category_id"]], "bbox": [x, y, x + w, y + h]}
        boxes.setdefault(ann["image_id"], []).append(row)
    out = []
    for image in coco["images"]:
        key = image["file_name"].rsplit(".", 1)[0]
        shard = sample_dir / "shards" / f"shard-{(image['id'] - 1) // images_per_shard:05d}.tar"
        for task, prompt, target in image_targets(boxes.get(image["id"], []), image["width"], image["height"],
                                                  ("OD",), target_format=target_format):
            out.append(Example(f"{sample_dir.name}-{image['id']}", task, prompt, target, image["width"],
                               image["height"], str(shard), key, "tar", split))
    return out


def write_pool(folder: Path, images: int, seed: int, per_shard: int, noise: bool) -> Path:
    """The synthetic scenes of sample seed ``seed`` (kept when already complete)."""
    from engine.demo.sample_data import SampleConfig, write_sample

    if not (folder / "ground_truth.json").exists() or (noise and not (folder / "noisy_labels.json").exists()):
        write_sample(folder, SampleConfig(images=images, seed=seed, images_per_shard=per_shard, noise=noise,
                                          progress=True))
    return folder


def heldout_metrics(model_dir: Path, examples: list[Example], config: PretrainConfig) -> dict[str, Any]:
    """Per-box precision/recall (class-aware, IoU >= 0.5) of greedy ``<OD>`` against the
    examples' targets, for shapes and for every class, and the image dependence."""
    from engine.demo.scenes import SHAPES
    from engine.retrain.evaluate import _decoded, _pairs, image_dependence, matched_pairs, run_examples
    from florence2.model import Florence2Model
    from florence2.settings import Florence2Settings

    model = Florence2Model(Florence2Settings(model=str(model_dir), device=config.device, dtype="fp32", batch_size=16,
                                             max_new_tokens=config.max_new_tokens, num_beams=1, tasks=("OD",)))
    model.load()
    items = _decoded(examples)
    counts = {"shapes": [0, 0, 0], "all": [0, 0, 0]}  # hits, predicted, reference
    for (e, _), payloads in zip(items, run_examples(model, items)):
        truth = _pairs(model.parse("OD", e.target, e.width, e.height))
        pred = _pairs(payloads)
        for name, keep in (("shapes", lambda label: label in SHAPES), ("all", lambda label: True)):
            p, t = [b for b in pred if keep(b[0])], [b for b in truth if keep(b[0])]
            c = counts[name]
            c[0], c[1], c[2] = c[0] + matched_pairs(p, t), c[1] + len(p), c[2] + len(t)
    out: dict[str, Any] = {"images": len(items)}
    for name, (hits, predicted, reference) in counts.items():
        out[f"{name}_box_recall"] = hits / reference if reference else 0.0
        out[f"{name}_box_precision"] = hits / predicted if predicted else 0.0
        out[f"{name}_boxes"] = {"matched": hits, "predicted": predicted, "reference": reference}
    out["image_dependence"] = image_dependence(model.torch_model, model.processor, examples[:64])
    return out


def pretrain(out: Path, work: Path, config: PretrainConfig, log: Any = print) -> dict[str, Any]:
    """Build, train and check the demo model (module docstring); returns the metrics."""
    from engine.demo.model import build_demo_checkpoint, parameter_count
    from engine.retrain.config import TrainingConfig
    from engine.retrain.train import load_model, train
    from storage.layout import DataRoot

    started = time.perf_counter()
    pool = write_pool(work / "pool", config.images, config.pool_seed, config.images_per_shard, noise=True)
    examples = pool_examples(pool, config.images_per_shard, config.tasks, target_format=config.target_format)
    examples = [e for e in examples for _ in range(config.od_repeat if e.task == "OD" else 1)]
    init = Path(config.start) if config.start else work / "init"
    if not (init / "model.safetensors").exists():
        build_demo_checkpoint(init, seed=config.seed)
    training = TrainingConfig(
        base_model=str(init), tasks=config.tasks, max_steps=config.steps, batch_size=config.batch_size, lr=config.lr,
        warmup_ratio=config.warmup_steps / config.steps, weight_decay=0.01, max_grad_norm=1.0,
        device=config.device, dtype="fp32", seed=config.seed, eval_fraction=0.0, promote="always",
        min_image_dependence=0.0, aux_loss_weight=config.aux_loss_weight, aux_max_words=config.aux_words,
        loader_threads=config.loader_threads,
        shuffle_buffer=1024, save_every=500, keep_checkpoints=1)
    clock = time.perf_counter()

    def step_log(step: int, loss: float, lr: float) -> None:
        if step == 1 or step % 100 == 0:
            log(f"step {step}/{config.steps}  loss {loss:.4f}  lr {lr:.3g}  {time.perf_counter() - clock:.0f} s")

    root = DataRoot(work / "train")
    result = train(root, 0, examples, training, log=step_log)
    train_seconds = time.perf_counter() - clock
    heldout = write_pool(work / "heldout", config.heldout_images, config.heldout_seed, config.images_per_shard,
                         noise=False)
    metrics = heldout_metrics(root.model(0), od_examples(heldout, "ground_truth.json", config.images_per_shard,
                                                         "validation"), config)
    kinds = kind_metrics(root.model(0), config) if set(config.tasks) - {"OD"} else None
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copyfile(root.model(0) / name, out / name)
    model, _ = load_model(out, "cpu")
    metrics = {
        "heldout": {**metrics, "sample_seed": config.heldout_seed, "labels": "ground truth (evaluation only)"},
        "training": {"examples": len(examples), "pool_images": config.images, "pool_seed": config.pool_seed,
                     "labels": "noisy copy (drop/jitter/swap)", "steps": result.step,
                     "resumed_from": result.resumed_from, "samples_per_second": result.samples_per_second,
                     "seconds_this_run": round(train_seconds, 1), "aux_classes": result.aux_classes,
                     "final_loss_mean_100": _tail_mean(result.losses),
                     "final_aux_loss_mean_100": _tail_mean(result.aux_losses)},
        "model": {"parameters": parameter_count(model),
                  "safetensors_bytes": (out / "model.safetensors").stat().st_size},
        "kinds": kinds,
        "config": asdict(config),
        "start_metrics": _start_metrics(config.start),
        "total_seconds_this_run": round(time.perf_counter() - started, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    lines = ["step\tloss\taux_loss"] + [f"{i}\t{loss:.5f}\t{aux:.5f}" for i, (loss, aux)
                                        in enumerate(zip(result.losses, result.aux_losses or [0.0] * len(result.losses)),
                                                     start=result.resumed_from + 1)]
    (out / "train_log.tsv").write_text("\n".join(lines) + "\n")
    return metrics


def kind_metrics(model_dir: Path, config: PretrainConfig, images: int = 48) -> dict[str, Any]:
    """Every kind the model produces on unseen scenes of the pre-training style and of the demo's
    (:mod:`engine.demo.model_kinds`; evaluation only), annotating every trained task greedily."""
    from engine.demo.model_kinds import model_kinds
    from engine.demo.styles import DEMO_STYLE
    from florence2.settings import Florence2Settings

    settings = Florence2Settings(model=str(model_dir), device=config.device, dtype="fp32", batch_size=16, num_beams=1,
                                 max_new_tokens=256, tasks=config.tasks)
    return {style: model_kinds(model_dir, settings, style, images) for style in ("plain", DEMO_STYLE)}


def _start_metrics(start: str) -> dict[str, Any] | None:
    """The metrics of the checkpoint this run continued from (its ``metrics.json``), if any."""
    path = Path(start) / "metrics.json" if start else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _tail_mean(values: list[float], n: int = 100) -> float | None:
    tail = values[-n:]
    return round(sum(tail) / len(tail), 5) if tail else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.demo.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="where the checkpoint, metrics.json and train_log.tsv go")
    parser.add_argument("--work", default="/tmp/fld-demo-pretrain", help="pool, trainer checkpoints (resumable)")
    for name, default in asdict(PretrainConfig()).items():
        kind = (lambda text: tuple(t for t in text.split(",") if t)) if isinstance(default, tuple) else type(default)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    args = vars(parser.parse_args(argv))
    out, work = Path(args.pop("out")), Path(args.pop("work"))
    config = PretrainConfig(**args)
    metrics = pretrain(out, work, config, log=lambda line: print(line, flush=True))
    print(json.dumps(metrics["heldout"], indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
