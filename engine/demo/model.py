"""The demo's small Florence-2 ("s128"): a native checkpoint that can learn to look at pixels.

:func:`build_demo_checkpoint` writes a complete checkpoint directory (``config.json``,
``generation_config.json``, ``model.safetensors``, tokenizer and processor files) that
``Florence2ForConditionalGeneration.from_pretrained`` / ``Florence2Processor.from_pretrained``
load offline; the tokenizer and processor come from :mod:`florence2.checkpoint`.
The recipe is the one measured in ``shared/notes/demo-model.md``:

- **Size** (:data:`S128`, about 2M parameters): square 128 px input; DaViT with 3 stages,
  embed_dim (32, 64, 128), patch size/stride/padding (7, 3, 3)/(4, 2, 2)/(3, 1, 1), window 8,
  so an image becomes an 8x8 grid of tokens (row-major, cell (r, c) covering rows
  ``r/8..(r+1)/8`` and columns ``c/8..(c+1)/8`` of the *whole* image, which the processor
  resizes to 128x128 without keeping its aspect ratio) plus one pooled token; BART with
  d_model 128, 2 encoder + 2 decoder layers, 4 heads, ffn 512 and no dropout.
- **Init** (:func:`init_weights`): every matrix N(0, 0.02), biases 0, LayerNorms 1/0; the
  image projector's 2-D row/column position embeddings set to sinusoids of the cell index
  (periods 2..64 cells, rms 1.0); the 1,000 ``<loc_k>`` token embeddings (tied with the output
  layer) set to centred sinusoids of the bin ``k`` (periods 4..2000 bins, rms 0.05), so nearby
  bins start out similar.

Left to itself such a model learns the output format and ignores the image (its text encoder
collapses); training keeps it seeing with the auxiliary per-cell head of
:mod:`engine.retrain.aux_head` (``training.aux_loss_weight``), which is never saved with it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from florence2.checkpoint import ModelSize, build_config, build_processor, build_tokenizer, generation_config
from florence2.format import LOC_TOKENS
from hf.loading import quiet_progress_bars

#: the demo model's dimensions (see the module docstring)
S128 = ModelSize(d_model=128, layers=2, heads=4, ffn=512, max_positions=1024, depths=(1, 1, 1),
                 patch_size=(7, 3, 3), patch_stride=(4, 2, 2), patch_padding=(3, 1, 1),
                 patch_prenorm=(False, True, True), embed_dim=(32, 64, 128), num_heads=(1, 2, 4),
                 num_groups=(1, 2, 4), image_size=128, window_size=8)
INIT_STD = 0.02
#: periods (in grid cells) of the image position sinusoids, and their rms
CELL_PERIODS, CELL_RMS = (2.0, 64.0), 1.0
#: periods (in location bins) of the ``<loc_k>`` embedding sinusoids, and their rms
BIN_PERIODS, BIN_RMS = (4.0, 2000.0), 0.05


def demo_vocabulary() -> list[str]:
    """Words of the demo's labels and captions (shape, colour and rendered-word names, the
    caption grammar), so the tokenizer spells them in few tokens."""
    from engine.demo.scenes import COLORS, SHAPES, WORDS

    return sorted({*SHAPES, *COLORS, *WORDS, "text", "word", "with", "and", "an", "empty", "background"})


def sinusoids(positions: int, dim: int, periods: tuple[float, float], rms: float) -> Any:
    """A ``(positions, dim)`` float tensor: sin/cos pairs of ``2 pi p / T`` with ``dim // 2``
    periods ``T`` spaced geometrically over ``periods`` (an odd last column stays 0), scaled
    to root-mean-square ``rms``."""
    import torch

    pairs = dim // 2
    low, high = periods
    period = low * (high / low) ** (torch.arange(pairs, dtype=torch.float64) / max(1, pairs - 1))
    angle = 2 * math.pi * torch.arange(positions, dtype=torch.float64)[:, None] / period[None, :]
    out = torch.zeros(positions, dim, dtype=torch.float64)
    out[:, 0:2 * pairs:2], out[:, 1:2 * pairs:2] = torch.sin(angle), torch.cos(angle)
    return (out * rms / out.pow(2).mean().sqrt()).float()


def init_weights(model: Any, loc_token_ids: list[int]) -> None:
    """The recipe's init (module docstring), in place; ``loc_token_ids[k]`` is ``<loc_k>``'s id."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, INIT_STD)
            elif "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.zero_()
        position = model.model.multi_modal_projector.image_position_embed
        for table in (position.row_embeddings, position.column_embeddings):
            rows, dim = table.weight.shape
            table.weight.copy_(sinusoids(rows, dim, CELL_PERIODS, CELL_RMS))
        embeddings = model.get_input_embeddings().weight
        bins = sinusoids(len(loc_token_ids), embeddings.shape[1], BIN_PERIODS, 1.0)
        bins = bins - bins.mean(dim=0, keepdim=True)
        embeddings[torch.as_tensor(loc_token_ids)] = bins * BIN_RMS / bins.pow(2).mean().sqrt()


def build_demo_checkpoint(out_dir: str | os.PathLike[str], vocab_words: Iterable[str] = (), seed: int = 0,
                          size: ModelSize = S128) -> Path:
    """Write the randomly initialised demo model (``size``, default :data:`S128`) with its
    tokenizer (trained on :func:`demo_vocabulary` plus ``vocab_words``) and processor to
    ``out_dir``; deterministic for a ``seed``. Returns the directory."""
    import torch
    from transformers import Florence2ForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, [*demo_vocabulary(), *vocab_words])
    config = build_config(size, vocab_size=len(tokenizer), image_token_id=tokenizer.image_token_id,
                          image_size=size.image_size)
    config.text_config.dropout = 0.0
    build_processor(tokenizer, size, size.image_size).save_pretrained(out)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG is left alone
        torch.manual_seed(seed)
        model = Florence2ForConditionalGeneration(config)
        init_weights(model, tokenizer.convert_tokens_to_ids(list(LOC_TOKENS)))
    model.generation_config = generation_config()
    with quiet_progress_bars():
        model.save_pretrained(out)
    return out


def parameter_count(model: Any) -> int:
    """Distinct parameters of ``model`` (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
