"""Fine-tune the current Florence-2 model on a round's training examples.

Start point (:func:`resolve_start_model`): the newest model promoted by an earlier round (the
catalog's ``models`` table), else ``training.base_model`` (a checkpoint directory, or ``"tiny"``:
a random test-size model built once under ``models/base-tiny-<px>``).

Data streams from the image shards (:func:`stream_examples`): shards in a seeded order per
epoch, each read once front to back by its ``storage.readers`` reader, the wanted keys' bytes
passed through a seeded shuffle buffer; decoding (``storage.decode.decode_rgb``, upright RGB)
and collation with the processor run on ``loader_threads`` threads, a few batches ahead.

Optimisation: AdamW (no weight decay on biases and norms), linear warm-up over
``warmup_ratio`` of the steps then cosine decay to 0, gradient accumulation over
``grad_accum`` micro-batches (the loss is the token mean over the whole window), gradient
clipping, autocast bf16/fp16 on the GPU with fp32 master weights (a grad scaler for fp16).
The loss is :func:`florence2.loss.token_cross_entropy` on the unshifted labels; the
whole model trains, vision encoder included (freezing it costs region tasks dearly). With
``aux_loss_weight`` > 0 the auxiliary per-cell head of :mod:`engine.retrain.aux_head` adds its
loss (targets from the training split's OD examples); the head is kept in the trainer state
for resumes, never in the saved model.

Files: ``models/round=R/checkpoints/step-N/`` (safetensors weights, processor, and
``trainer_state.pt``: optimizer, scheduler, scaler, step, RNG), written to a temp folder and
renamed; a new run resumes from the newest one and skips the micro-batches already seen, so
it continues the same trajectory. The final model's files are written to a temp folder and
renamed into ``models/round=R/`` (weights last); ``train_summary.json`` is written last of all
and marks the round as trained.
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from engine.retrain.checkpoints import STATE_FILE, WEIGHTS_FILE, latest_checkpoint, save_checkpoint, save_final
from engine.retrain.config import TrainingConfig
from engine.retrain.examples import Example
from florence2.loss import (
    IGNORE_INDEX,
    decoder_input_ids,
    labels_from_ids,
    token_cross_entropy,
)
from storage.atomic import write_text_atomic
from storage.layout import DataRoot

SUMMARY_FILE = "train_summary.json"


# ----------------------------------------------------------------------- start model
def current_model(root: DataRoot, round_: int) -> Path | None:
    """The newest model promoted by a round before ``round_`` that still exists, or None."""
    from storage.catalog import Catalog

    if not root.has_catalog:
        return None
    with Catalog(root, read_only=True) as catalog:
        rows = catalog.query("select path from models where promoted and round < ? order by round desc", [round_])
    return next((Path(p) for (p,) in rows if (Path(p) / WEIGHTS_FILE).exists()), None)


def resolve_start_model(root: DataRoot, round_: int, config: TrainingConfig,
                        vocab_words: Iterable[str] = ()) -> Path:
    """Checkpoint directory training starts from (see the module docstring)."""
    from hf.loading import resolve_model_dir

    promoted = current_model(root, round_)
    if promoted is not None:
        return promoted
    if config.base_model == "tiny":
        from florence2.checkpoint import build_checkpoint

        out = root.model(round_).parent / f"base-tiny-{config.tiny_image_size}"
        if not (out / WEIGHTS_FILE).exists():
            tmp = out.parent / f".{out.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            build_checkpoint(tmp, size="tiny", vocab_words=vocab_words, seed=config.seed,
                             image_size=config.tiny_image_size)
            os.replace(tmp, out)
        return out
    if not config.base_model:
        raise ValueError(f"no model to fine-tune for round {round_}: no earlier round promoted one and "
                         f"training.base_model is not set (a checkpoint directory, or \"tiny\")")
    from hf.checkpoint_check import check_checkpoint

    model_dir = resolve_model_dir(config.base_model, "training.base_model")
    check_checkpoint(model_dir, "training.base_model", config.allow_pickle_weights)
    return model_dir


def vocabulary(examples: Iterable[Example]) -> list[str]:
    """Words of the targets (for the tokenizer of a freshly built tiny model)."""
    import re

    return sorted({w for e in examples for w in re.findall(r"[A-Za-z]+", e.target)})


def precision(config: TrainingConfig) -> tuple[Any, Any]:
    """``(torch.device, autocast dtype or None)``: autocast runs on the GPU only."""
    import torch

    from hf.loading import torch_device_dtype

    device, _ = torch_device_dtype(config.device, "fp32")
    if device.type != "cuda" or config.dtype == "fp32":
        return device, None
    if config.dtype == "fp16" or (config.dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return device, torch.float16
    return device, torch.bfloat16


def load_model(model_dir: Path, device: Any) -> tuple[Any, Any]:
    """``(model in fp32 on device, processor with right padding)`` loaded by path, offline."""
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    from hf.checkpoint_check import check_loading_info
    from hf.loading import from_pretrained_kwargs

    processor = Florence2Processor.from_pretrained(model_dir, **from_pretrained_kwargs())
    processor.tokenizer.padding_side = "right"
    model, info = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype="float32", output_loading_info=True,
                                                                    **from_pretrained_kwargs())
    check_loading_info(info, model_dir, "training.base_model")
    return model.to(device), processor


# ------------------------------------------------------------------------------ data
def stream_examples(examples: list[Example], seed: int, epoch: int, buffer: int) -> Iterator[tuple[Example, bytes]]:
    """``(example, image bytes)`` of every example whose image is found, read shard by shard.

    Shard order and the shuffle buffer (``buffer`` items; 1 = file order) are seeded with
    ``(seed, epoch)``, so an epoch's order is a pure function of its inputs.
    """
    from storage.readers import READERS

    rng = random.Random(f"{seed}:{epoch}")
    wanted: dict[str, dict[str, list[Example]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    formats: dict[str, str] = {}
    for e in examples:
        wanted[e.shard][e.key].append(e)
        formats[e.shard] = e.shard_format
    shards = sorted(wanted)
    rng.shuffle(shards)
    pool: list[tuple[Example, bytes]] = []
    for shard in shards:
        keys = wanted[shard]
        for record in READERS[formats[shard]](shard).records():
            if record.key not in keys or record.data is None:
                continue
            for e in keys[record.key]:
                pool.append((e, record.data))
                if len(pool) >= buffer:
                    i = rng.randrange(len(pool))
                    pool[i], pool[-1] = pool[-1], pool[i]
                    yield pool.pop()
    rng.shuffle(pool)
    yield from pool


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Collator:
    """Raw ``(example, bytes)`` batch -> CPU tensors: ``input_ids``, ``attention_mask``,
    ``pixel_values`` (processor-resized), ``decoder_input_ids``, ``labels`` (batch, length;
    -100 = pad), ``scored`` (flat indices of the non-pad label positions) and ``targets``
    (the labels there); with ``aux`` also the auxiliary head's cell targets."""

    processor: Any
    max_target_tokens: int = 1024
    aux: Any = None  # engine.retrain.aux_head.AuxTargets

    def __call__(self, items: list[tuple[Example, bytes]]) -> dict[str, Any]:
        from storage.decode import decode_rgb

        images = [decode_rgb(data) for _, data in items]
        inputs = self.processor(text=[e.prompt for e, _ in items], images=images, return_tensors="pt", padding=True)
        tokenizer = self.processor.tokenizer
        # truncated here, not by the tokenizer: a fast tokenizer keeps a truncation setting and
        # would save it with the checkpoint
        ids = tokenizer([e.target for e, _ in items], return_tensors="pt", padding=True).input_ids
        ids = ids[:, : self.max_target_tokens]
        labels = labels_from_ids(ids, tokenizer.pad_token_id)
        start = tokenizer.eos_token_id  # BART's decoder_start_token_id (</s>), as generation uses
        scored = (labels.flatten() != IGNORE_INDEX).nonzero().squeeze(1)
        out = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
               "pixel_values": inputs["pixel_values"], "labels": labels,
               "decoder_input_ids": decoder_input_ids(labels, start, tokenizer.pad_token_id),
               "scored": scored, "targets": labels.flatten()[scored]}
        if self.aux is not None:
            out.update(self.aux.collate([e.image_id for e, _ in items]))
        return out


def prefetched(batches: Iterable[list[Any]], collate: Callable[[list[Any]], Any], threads: int) -> Iterator[Any]:
    """Collated batches in order, up to ``2 * threads`` being decoded ahead on a thread pool."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="collate") as pool:
        pending: collections.deque[Future] = collections.deque()
        for batch in batches:
            pending.append(pool.submit(collate, batch))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def scored_logits(model: Any, batch: dict[str, Any], device: Any, amp: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(logits (scored, vocab), encoder output (B, L, d_model), the batch on device)``.

    Runs the encoder-decoder (``model.model``) and applies ``lm_head`` only at the scored
    positions (``batch["scored"]``, flat indices of labels != -100, found on the CPU so the
    GPU never waits): the same logits as ``model(...).logits`` there, without the
    vocabulary-wide matmul over padding.
    """
    import torch

    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    context = torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext()
    with context:
        out = model.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                          attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                          use_cache=False)
        logits = model.lm_head(out.last_hidden_state.flatten(0, 1).index_select(0, batch["scored"]))
    return logits, out.encoder_last_hidden_state, batch


def batch_losses(model: Any, batch: dict[str, Any], device: Any, amp: Any, head: Any = None) -> tuple[Any, Any]:
    """``(summed token cross-entropy, auxiliary loss or None)`` of one collated batch (0-d
    tensors on ``device``); the auxiliary loss needs ``head`` and the batch's aux targets."""
    logits, encoder_hidden, batch = scored_logits(model, batch, device, amp)
    loss = token_cross_entropy(logits[None], batch["targets"][None], reduction="sum")
    if head is None or "aux_classes" not in batch:
        return loss, None
    from engine.retrain.aux_head import aux_loss

    return loss, aux_loss(head, encoder_hidden, batch["input_ids"], model.config.image_token_id, batch)


def batch_loss(model: Any, batch: dict[str, Any], device: Any, amp: Any) -> Any:
    """Summed token cross-entropy of one collated batch (a 0-d tensor on ``device``)."""
    return batch_losses(model, batch, device, amp)[0]


def cosine_with_warmup(total_steps: int, warmup_ratio: float):
    """LR multiplier of optimizer step ``s``: linear 0 -> 1 over the warm-up, cosine 1 -> 0 after."""
    warmup = int(math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(model: Any, config: TrainingConfig, device: Any, head: Any = None) -> Any:
    """AdamW with weight decay on matrices only (biases, norms, 1-D params get none), over the
    model's parameters and those of the auxiliary ``head`` when there is one."""
    import torch

    params = [*model.parameters(), *(head.parameters() if head is not None else ())]
    decay = [p for p in params if p.requires_grad and p.ndim >= 2]
    plain = [p for p in params if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, fused=device.type == "cuda")


# ---------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What one call of :func:`train` did. ``samples_per_second`` excludes the first step."""

    model_dir: str
    start_model: str
    step: int = 0
    total_steps: int = 0
    resumed_from: int = 0
    steps_run: int = 0
    samples: int = 0
    samples_per_second: float | None = None
    losses: list[float] = field(default_factory=list)
    aux_losses: list[float] = field(default_factory=list)
    aux_classes: list[str] = field(default_factory=list)
    finished: bool = False
    already_trained: bool = False


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def average_with(model: Any, start: Path, weight: float) -> None:
    """Move ``model``'s floating-point weights in place to ``start + weight * (model - start)``
    (WiSE-FT weight averaging with the checkpoint at ``start``; ``weight`` in (0, 1])."""
    import torch

    start_weights = load_model(start, "cpu")[0].state_dict()
    done: set[int] = set()  # tied weights (embeddings and LM head) are one tensor: move it once
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and name in start_weights and tensor.data_ptr() not in done:
                done.add(tensor.data_ptr())
                origin = start_weights[name].to(tensor.device, tensor.dtype)
                tensor.copy_(origin + weight * (tensor - origin))


def is_trained(out_dir: Path) -> bool:
    return (out_dir / SUMMARY_FILE).exists() and (out_dir / WEIGHTS_FILE).exists()


def train(root: DataRoot, round_: int, examples: list[Example], config: TrainingConfig,
          stop_after: int = 0, log: Any = None) -> TrainResult:
    """Fine-tune on the ``train`` split of ``examples``; see the module docstring.

    ``stop_after`` > 0 stops this call after that many optimizer steps (a checkpoint is saved
    there; a later call resumes). ``log(step, loss, lr)`` is called after every step, and its
    ``begin(step, total)``, where it has one (``engine.retrain.step_log.StepLog``), before the first.
    """
    import torch

    out_dir = root.model(round_)
    train_set = [e for e in examples if e.split == "train"]
    if not train_set:
        raise ValueError(f"round {round_} has no training examples")
    start = resolve_start_model(root, round_, config, vocabulary(examples))
    result = TrainResult(model_dir=str(out_dir), start_model=str(start))
    if is_trained(out_dir):
        result.already_trained = result.finished = True
        return result
    device, amp = precision(config)
    checkpoints = out_dir / "checkpoints"
    resume = latest_checkpoint(checkpoints)
    torch.manual_seed(config.seed)
    model, processor = load_model(resume or start, device)
    model.requires_grad_(True).train()
    aux, head = None, None
    if config.aux_loss_weight > 0:
        from engine.retrain.aux_head import AuxTargets, grid_side, new_head

        aux = AuxTargets.from_examples(train_set, grid_side(processor), config.aux_max_classes, config.aux_max_words)
        result.aux_classes = list(aux.classes)
        head = new_head(model.config.text_config.d_model, len(aux.classes), config.seed,
                        len(aux.words)).to(device).train()
    optimizer = make_optimizer(model, config, device, head)
    per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * per_epoch / config.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, config.warmup_ratio))
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    step = 0
    if resume is not None:
        state = torch.load(resume / STATE_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if head is not None and "aux_head" in state:
            head.load_state_dict(state["aux_head"])
        step = result.resumed_from = int(state["step"])
    result.total_steps = total
    if hasattr(log, "begin"):
        log.begin(step, total)  # the pace of each step line: of how many, rate, ETA

    def micro_batches() -> Iterator[list[tuple[Example, bytes]]]:
        done = step * config.grad_accum  # micro-batches consumed before this call
        epoch, skip = divmod(done, per_epoch)
        while config.max_steps or epoch < config.epochs:
            seen = 0
            for seen, raw in enumerate(batched(stream_examples(train_set, config.seed, epoch, config.shuffle_buffer),
                                               config.batch_size), start=1):
                if seen > skip:
                    yield raw
            if not seen:  # no image of the split could be read: stop instead of looping
                raise ValueError(f"none of the {len(train_set)} training examples' images was found in its shard")
            epoch, skip = epoch + 1, 0

    collate = Collator(processor, config.max_target_tokens, aux)
    stream = prefetched(micro_batches(), collate, config.loader_threads)
    clock, clock_end, timed_samples, losses, aux_losses = None, 0.0, 0, [], []
    while step < total and not (stop_after and result.steps_run >= stop_after):
        window = [b for _, b in zip(range(config.grad_accum), stream)]
        if not window:  # fewer micro-batches than planned (images missing from their shards): done
            total = result.total_steps = step
            _synchronize(device)
            clock_end = time.perf_counter()
            break
        tokens = max(1, sum(len(b["targets"]) for b in window))
        step_loss, step_aux = 0.0, 0.0
        for batch in window:
            loss_sum, aux_part = batch_losses(model, batch, device, amp, head)
            total_part = loss_sum / tokens
            if aux_part is not None:  # the window's mean auxiliary loss, weighted
                total_part = total_part + config.aux_loss_weight * aux_part / len(window)
                step_aux = step_aux + aux_part.detach() / len(window)
            scaler.scale(total_part).backward()
            step_loss = step_loss + loss_sum.detach() / tokens  # stays on the device: no sync per step
        scaler.unscale_(optimizer)
        if config.max_grad_norm > 0:
            clipped = [*model.parameters(), *(head.parameters() if head is not None else ())]
            torch.nn.utils.clip_grad_norm_(clipped, config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples = sum(len(b["labels"]) for b in window)
        result.steps_run, result.samples, result.step = result.steps_run + 1, result.samples + samples, step
        losses.append(step_loss)
        if head is not None:
            aux_losses.append(step_aux)
        last = step >= total or bool(stop_after and result.steps_run >= stop_after)
        if clock is None:  # the first step (allocation, warm-up) is not timed
            _synchronize(device)
            clock = time.perf_counter()
        else:
            timed_samples += samples
        if log is not None:
            log(step, float(step_loss), scheduler.get_last_lr()[0])
        if last or (config.save_every and step % config.save_every == 0):
            _synchronize(device)
            clock_end = time.perf_counter() if last else clock_end
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "step": step}
            if head is not None:
                state["aux_head"] = head.state_dict()
            save_checkpoint(checkpoints, step, model, processor, state, config.keep_checkpoints)
    result.losses = [float(v) for v in losses]
    result.aux_losses = [float(v) for v in aux_losses]
    stream.close()
    if clock is not None and timed_samples and clock_end > clock:  # steps after the first; last save excluded
        result.samples_per_second = timed_samples / (clock_end - clock)
    if step >= total:
        if config.average_with_start < 1:
            average_with(model, start, config.average_with_start)
        save_final(model, processor, out_dir)
        result.finished = True
        summary = {**asdict(result), "config": asdict(config)}
        write_text_atomic(json.dumps(summary, indent=2, default=str), out_dir / SUMMARY_FILE)
    return result
