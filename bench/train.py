"""Benchmark of ``fld train``'s loop against a plain transformers ``Trainer`` on the same
model and data.

Builds synthetic shards (``engine.demo.sample_data``), ingests them, writes a curated set from
their ground truth (``tests/engine/retrain/data.py``: what curation keeps with perfect
specialists), builds the Florence-2 examples, then trains the same start checkpoint for
``--steps`` optimizer steps twice:

1. :func:`engine.retrain.train.train` (streams images from the tar shards, collates on
   ``--threads`` threads ahead of the model, autocast on GPU, own unshifted loss);
2. ``transformers.Trainer`` over a map-style dataset of the same training examples whose
   image bytes are held in memory (decoded and collated by the processor in the main
   process, the model's own ``labels`` loss, the same batch size, lr schedule and precision).

Both rates leave out the first step (allocation, warm-up) and checkpoint saving; each loop runs
``--repeats`` times, interleaved, and its fastest run counts (the machine may be shared). Prints
both samples/s and, as the last line, the ratio fld / Trainer (goal >= 1.0).

    .venv/bin/python bench/train.py --images 48 --steps 60                      # CPU, tiny model
    .venv/bin/python bench/train.py --size base --device cuda --batch-size 16   # GPU, Florence-2-B dims
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from engine.retrain.config import TrainingConfig  # noqa: E402
from engine.retrain.examples import build_examples  # noqa: E402
from engine.retrain.train import Collator, precision, train, vocabulary  # noqa: E402
from florence2.checkpoint import build_checkpoint  # noqa: E402
from storage.readers import READERS  # noqa: E402
from tests.engine.retrain.data import curated_rows, make_root, write_curated  # noqa: E402


def trainer_rate(model_dir: Path, examples, config: TrainingConfig, steps: int, out: Path) -> float:
    """Samples/s of ``transformers.Trainer`` on ``examples`` (steps after the first)."""
    import torch
    from transformers import (
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    device, amp = precision(config)
    processor = Florence2Processor.from_pretrained(model_dir, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True, dtype="float32")
    images = {}
    for shard, fmt in {(e.shard, e.shard_format) for e in examples}:
        for record in READERS[fmt](shard).records():
            images[(shard, record.key)] = record.data
    items = [(e, images[(e.shard, e.key)]) for e in examples if (e.shard, e.key) in images]
    collate = Collator(processor, config.max_target_tokens)

    def collate_fn(batch):  # the model's own loss: it gets `labels` and shifts them itself
        tensors = collate(batch)
        for key in ("decoder_input_ids", "scored", "targets"):
            tensors.pop(key)
        return tensors

    class Clock(TrainerCallback):
        start, end, samples = 0.0, 0.0, 0

        def on_step_end(self, args, state, control, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if state.global_step == 1:
                Clock.start = now
            else:
                Clock.end, Clock.samples = now, Clock.samples + config.batch_size

    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr, weight_decay=config.weight_decay,
        warmup_steps=math.ceil(steps * config.warmup_ratio), lr_scheduler_type="cosine",
        max_grad_norm=config.max_grad_norm, bf16=amp == torch.bfloat16, fp16=amp == torch.float16,
        use_cpu=device.type == "cpu", save_strategy="no", report_to=[], logging_strategy="no",
        disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0, seed=config.seed)
    Trainer(model=model, args=args, train_dataset=items, data_collator=collate_fn, callbacks=[Clock()]).train()
    return Clock.samples * config.grad_accum / (Clock.end - Clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", choices=("tiny", "base", "large"), default="tiny")
    parser.add_argument("--image-size", type=int, default=0, help="model input side (default: the size's own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=max(1, min(4, (os.cpu_count() or 2) - 1)),
                        help="fld collate threads (default: one core left for the model, at most 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop; the fastest counts (default 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, truth = make_root(tmp, images=args.images, seed=0, per_shard=16)
        write_curated(root, curated_rows(root, truth))
        examples, summary = build_examples(root, 1, eval_fraction=0.0)
        config = TrainingConfig(base_model="unused", device=args.device, batch_size=args.batch_size, lr=1e-4,
                                eval_fraction=0.0, promote="always", max_steps=args.steps, loader_threads=args.threads,
                                shuffle_buffer=1)
        start = build_checkpoint(tmp / "start", size=args.size, vocab_words=vocabulary(examples),
                                 image_size=args.image_size or None)
        config = dataclasses.replace(config, base_model=str(start))
        print(f"{summary['examples']} examples of {summary['images']} images; model {args.size}; "
              f"device {precision(config)[0]}; batch {args.batch_size}; {args.steps} steps")
        ours_runs, theirs_runs = [], []
        for _ in range(args.repeats):  # interleaved, so a busy spell of the machine hits both
            shutil.rmtree(root.model(1), ignore_errors=True)
            ours_runs.append(train(root, 1, examples, config).samples_per_second)
            theirs_runs.append(trainer_rate(start, [e for e in examples if e.split == "train"], config, args.steps,
                                            tmp / "trainer"))
        ours, theirs = max(ours_runs), max(theirs_runs)
        print(f"fld train: {ours:.1f} samples/s (runs: {', '.join(f'{v:.1f}' for v in ours_runs)})")
        print(f"transformers Trainer: {theirs:.1f} samples/s (runs: {', '.join(f'{v:.1f}' for v in theirs_runs)})")
        print(f"{ours / theirs:.3f}")


if __name__ == "__main__":
    main()
