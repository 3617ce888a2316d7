"""Validation losses of a Florence-2 model: the token cross-entropy over validation examples,
overall, per image and per (task, image) — the paired evidence promotion bootstraps over.

Data streams and collates exactly as training does (:mod:`engine.retrain.train`); eval mode, no
gradients; losses are nats per target token.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from engine.retrain.config import TrainingConfig
from engine.retrain.examples import Example
from engine.retrain.train import Collator, batched, prefetched, scored_logits, stream_examples
from florence2.loss import token_cross_entropy_per_position


@dataclass(frozen=True)
class ValidationLosses:
    """Token-mean cross-entropy of a model on validation examples (nats per target token):
    ``mean`` over every target token (None without examples), ``per_image`` {image_id: mean of
    that image's tokens} (the paired evidence promotion bootstraps over) and ``per_task``
    {task: {image_id: mean of that image's tokens of that task}}."""

    mean: float | None
    per_image: dict[str, float]
    per_task: dict[str, dict[str, float]]


def validation_losses(model: Any, processor: Any, examples: list[Example], config: TrainingConfig, device: Any,
                      amp: Any) -> ValidationLosses:
    """The :class:`ValidationLosses` of ``model`` on ``examples`` (eval mode, no gradients)."""
    import torch

    if not examples:
        return ValidationLosses(None, {}, {})
    was_training = model.training
    model.eval()
    sums: dict[tuple[str, str], float] = collections.defaultdict(float)
    counts: dict[tuple[str, str], int] = collections.defaultdict(int)
    collate = Collator(processor, config.max_target_tokens)

    def with_ids(chunk: list[Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return collate(chunk), [(e.task, e.image_id) for e, _ in chunk]

    with torch.inference_mode():
        raw = batched(stream_examples(examples, config.seed, 0, 1), config.eval_batch_size)
        for batch, ids in prefetched(raw, with_ids, config.loader_threads):
            logits, _, on_device = scored_logits(model, batch, device, amp)
            losses = token_cross_entropy_per_position(logits, on_device["targets"])
            rows = (on_device["scored"] // on_device["decoder_input_ids"].shape[1]).tolist()
            for row, loss in zip(rows, losses.tolist()):
                sums[ids[row]] += loss
                counts[ids[row]] += 1
    model.train(was_training)
    image_sums: dict[str, float] = collections.defaultdict(float)
    image_counts: dict[str, int] = collections.defaultdict(int)
    per_task: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for (task, image), total in sorted(sums.items()):
        image_sums[image] += total
        image_counts[image] += counts[task, image]
        per_task[task][image] = total / counts[task, image]
    tokens = sum(counts.values())
    return ValidationLosses(sum(sums.values()) / max(tokens, 1),
                            {i: image_sums[i] / image_counts[i] for i in sorted(image_sums)}, dict(per_task))


def mean_loss(model: Any, processor: Any, examples: list[Example], config: TrainingConfig, device: Any,
              amp: Any) -> float | None:
    """Token-mean cross-entropy of ``model`` over ``examples`` (eval mode, no gradients)."""
    return validation_losses(model, processor, examples, config, device, amp).mean
