"""Benchmark (GPU): Florence-2 in the Beam annotate pipeline vs a plain per-image generate loop.

Builds a Florence-2 checkpoint of ``--size`` (base: Florence-2-B dimensions, random weights)
offline, renders ``--images`` synthetic scenes into shards, then measures in this process:
  baseline  load the model once, then for each image: processor -> generate -> decode;
  pipeline  `fld annotate` (DirectRunner) with the florence2 annotator, batched generation.
Both run one task (``--task``, default CAPTION) with greedy decoding and the same
``--max-new-tokens`` on ``--device`` in ``--dtype``. Last line: pipeline images/s divided by
baseline images/s. ``--size tiny --device cpu --dtype fp32`` is a quick smoke run on a CPU.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.bench_data import ingested_root, write_shards
from engine.annotate.plan import AnnotateRequest, annotate
from florence2.checkpoint import build_checkpoint
from florence2.format import task_spec
from hf.loading import torch_device_dtype


def plain_loop(model_dir: Path, shards: list[Path], task: str, max_new_tokens: int, device: str, dtype: str) -> int:
    import torch
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    torch_device, torch_dtype = torch_device_dtype(device, dtype)
    processor = Florence2Processor.from_pretrained(model_dir, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype=torch_dtype,
                                                              local_files_only=True).to(torch_device).eval()
    prompt = task_spec(task).token
    count = 0
    for shard in shards:
        with tarfile.open(shard) as archive:
            for member in archive:
                image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                inputs = processor(text=[prompt], images=[image], return_tensors="pt")
                inputs = {k: v.to(torch_device) for k, v in inputs.items()}
                inputs["pixel_values"] = inputs["pixel_values"].to(torch_dtype)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
                processor.batch_decode(out, skip_special_tokens=False)
                count += 1
    if torch_device.type == "cuda":
        torch.cuda.synchronize()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=["tiny", "base", "large"])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--task", default="CAPTION")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fld-bench-florence2-"))
    try:
        model_dir = build_checkpoint(work / "model", size=args.size, seed=0)
        shards = write_shards(work / "shards", max(1, args.images // 64), min(64, args.images), size=(640, 480))
        root = ingested_root(work / "root", shards)
        images = sum(1 for shard in shards for _ in tarfile.open(shard))
        plain_loop(model_dir, shards[:1], args.task, args.max_new_tokens, args.device, args.dtype)  # warm-up
        start = time.perf_counter()
        plain_loop(model_dir, shards, args.task, args.max_new_tokens, args.device, args.dtype)
        baseline = time.perf_counter() - start
        settings = {"model": str(model_dir), "device": args.device, "dtype": args.dtype, "tasks": [args.task],
                    "max_new_tokens": args.max_new_tokens, "num_beams": 1, "batch_size": args.batch_size}
        start = time.perf_counter()
        summary = annotate(root, AnnotateRequest(round=0, annotators={"florence2": settings}, progress=False))
        pipeline = time.perf_counter() - start
        assert summary["sources"]["florence2"]["images"] == images, summary
        print(f"Florence-2 {args.size} ({args.dtype} on {args.device}), {images} images 640x480, task {args.task}, "
              f"max_new_tokens {args.max_new_tokens}")
        print(f"plain per-image generate loop: {images / baseline:.2f} images/s ({baseline:.1f} s)")
        print(f"Beam annotate pipeline, batch {args.batch_size}: {images / pipeline:.2f} images/s ({pipeline:.1f} s, "
              f"model load included)")
        print(f"pipeline / plain loop throughput ratio: {baseline / pipeline:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
