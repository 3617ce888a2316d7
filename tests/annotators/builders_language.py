"""Test-size checkpoints and builders of the language-side annotators.

``save_*`` functions write a random-weight, test-size checkpoint (model + locally built
tokenizer/processor) into a folder with ``save_pretrained``; the ``@tiny_builder`` functions
build the annotator from that folder through ``build_annotator`` exactly as production does.
``context_rows`` makes the rows earlier stages would have written for an image (a brief
caption and object regions), for ``ImageItem.context["annotations"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from annotators.base import Annotator
from annotators.registry import build_annotator
from storage.schema import annotation_row
from tests.annotators.builders import tiny_builder
from tests.annotators.tiny_tokenizers import bert_wordpiece, clip_bpe, gpt2_bpe

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may ever reach a hub

BRIEF = "a red circle and a blue square next to the word hello"


def context_rows(image_id: str, width: int, height: int, round_: int = 0,
                 caption: str = BRIEF) -> list[dict[str, Any]]:
    """A brief caption row and two object region rows (from ``detector``) inside the image."""
    caption_row = annotation_row(image_id=image_id, round_=round_, source="florence2", source_version="t",
                                 kind="caption", granularity="brief", text=caption)
    regions = [
        annotation_row(image_id=image_id, round_=round_, source="detector", source_version="t", kind="region",
                       region_type="object", text=text, bbox=bbox, score=0.9)
        for text, bbox in (
            ("circle", [0.1 * width, 0.2 * height, 0.5 * width, 0.7 * height]),
            ("square", [0.55 * width, 0.05 * height, 0.95 * width, 0.45 * height]),
        )
    ]
    return [caption_row, *regions]


def _widen_init(model: Any, std: float) -> None:
    """Redraw every weight matrix from N(0, std): random tiny models then react to their input."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.normal_(0.0, std)


def save_grounding_dino(out_dir: Path, seed: int = 0) -> Path:
    """A ~0.1M-parameter Grounding DINO (tiny Swin + 1-layer BERT, 5 queries) with processor."""
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = bert_wordpiece()
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=256)
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, num_queries=5, encoder_layers=1, decoder_layers=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, max_text_len=256,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def save_blip(out_dir: Path, seed: int = 0) -> Path:
    """A test-size BLIP captioner (1-layer ViT on 32 px, 1-layer BERT decoder) with processor."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    tokenizer = bert_wordpiece(model_max_length=64)
    config = BlipConfig(
        vision_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, encoder_hidden_size=16,
                         bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    _widen_init(model, std=0.3)  # so captions depend visibly on the crop
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def save_clip(out_dir: Path, seed: int = 0) -> Path:
    """A test-size CLIP (1-layer ViT on 32 px, 1-layer text encoder, 16-d projections) with processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = clip_bpe()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def save_gpt2(out_dir: Path, seed: int = 0) -> Path:
    """A test-size GPT-2 (2 layers, 32-d) with a locally trained byte-level BPE tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_bpe()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    _widen_init(model, std=0.2)  # so continuations depend visibly on the prompt
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@tiny_builder("grounding")
def tiny_grounding(tmp_path: Path) -> Annotator:
    return build_annotator("grounding", model=str(save_grounding_dino(tmp_path / "grounding")),
                           box_threshold=0.0, text_threshold=0.0)


@tiny_builder("region_captioner")
def tiny_region_captioner(tmp_path: Path) -> Annotator:
    return build_annotator("region_captioner", model=str(save_blip(tmp_path / "blip")), prompt="",
                           max_new_tokens=6)


@tiny_builder("region_text_matcher")
def tiny_region_text_matcher(tmp_path: Path) -> Annotator:
    return build_annotator("region_text_matcher", model=str(save_clip(tmp_path / "clip")))


@tiny_builder("caption_composer")
def tiny_caption_composer(tmp_path: Path) -> Annotator:
    return build_annotator("caption_composer", model=str(save_gpt2(tmp_path / "gpt2")),
                           max_new_tokens={"detailed": 8, "more_detailed": 12})


@tiny_builder("caption_scorer")
def tiny_caption_scorer(tmp_path: Path) -> Annotator:
    return build_annotator("caption_scorer", model=str(save_clip(tmp_path / "clip")), batch_size=2)
