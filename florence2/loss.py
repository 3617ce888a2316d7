"""The Florence-2 training loss: token cross-entropy on the *unshifted* labels.

Florence-2's text side is BART, an encoder-decoder: the decoder reads ``decoder_input_ids``
= the labels shifted one to the right (``decoder_start_token_id`` first), so the logits at
position ``t`` already predict ``labels[t]``. Some transformers releases also shift the
labels inside the loss (as for a causal LM), scoring position ``t`` against ``labels[t+1]``:
an off-by-one that trains the model to skip a token. We never pass ``labels`` to the model;
we build the decoder inputs here and score the logits against the labels as they are.

Shapes: ``logits`` (batch, length, vocab), ``labels`` (batch, length) with ``-100`` where a
position is padding (ignored).
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def decoder_input_ids(labels: Any, decoder_start_token_id: int, pad_token_id: int) -> Any:
    """``labels`` shifted right by one, ``decoder_start_token_id`` first; ignored positions
    (``-100``) become ``pad_token_id``. Shape (batch, length), same as ``labels``."""
    import torch

    shifted = torch.full_like(labels, pad_token_id)
    shifted[:, 0] = decoder_start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


def labels_from_ids(input_ids: Any, pad_token_id: int) -> Any:
    """Tokenized targets -> labels: padding positions become ``-100``."""
    return input_ids.masked_fill(input_ids == pad_token_id, IGNORE_INDEX)


def token_cross_entropy(logits: Any, labels: Any, reduction: str = "mean") -> Any:
    """Cross-entropy of ``logits[b, t]`` against ``labels[b, t]`` (no shift), ignoring -100.

    ``reduction``: ``"mean"`` over the counted tokens, or ``"sum"`` (use with
    :func:`count_tokens` to average over a whole gradient-accumulation window). Computed in
    float32 whatever the logits' dtype.
    """
    import torch.nn.functional as F

    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (batch, length)")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def token_cross_entropy_per_position(logits: Any, targets: Any) -> Any:
    """Cross-entropy (nats, float32) of each scored position: ``logits`` (n, vocab) against
    ``targets`` (n,), no shift, nothing ignored (the positions were chosen already)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), targets, reduction="none")


def count_tokens(labels: Any) -> int:
    """Number of scored (non-ignored) label positions."""
    return int((labels != IGNORE_INDEX).sum())
