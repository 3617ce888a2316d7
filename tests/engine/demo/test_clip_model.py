"""The demo's CLIP: built offline, loads through the caption scorer, and can be fitted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from engine.demo.clip_model import POOL_SEED, build_demo_clip, build_model, build_processor, build_tokenizer, clip_vocabulary, fit_clip
from engine.demo.scenes import render_scene
from storage.schema import annotation_row


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    return build_demo_clip(tmp_path_factory.mktemp("clip") / "ckpt", seed=1)


def test_tokenizer_spells_the_caption_grammar_in_whole_words():
    tokenizer = build_tokenizer(clip_vocabulary())
    caption = render_scene(POOL_SEED).caption
    pieces = tokenizer.tokenize('A red circle, an orange square and a green diamond with the word "hello".')
    assert pieces[:4] == ["a</w>", "red</w>", "circle</w>", ",</w>"] and "with</w>" in pieces and "hello</w>" in pieces
    assert tokenizer.unk_token not in tokenizer.tokenize(caption + ' the word "museum"')  # (CLIP's unk is its eos)


def test_checkpoint_loads_through_the_caption_scorer_and_scores_demo_scenes(demo_clip):
    scorer = build_annotator("caption_scorer", model=str(demo_clip))
    items = []
    for k in range(3):
        scene = render_scene(k)
        caption = annotation_row(image_id=f"s{k}", round_=0, source="sidecar_captions", source_version="t",
                                 kind="caption", granularity="brief", text=scene.caption)
        items.append(ImageItem(f"s{k}", scene.image, *scene.image.size, context={"annotations": [caption]}))
    rows = scorer.annotate(ImageBatch(items))
    assert len(rows) == 3 and all(0 <= r["score"] <= 1 for r in rows)
    embeddings = scorer.embed_images([Image.new("RGB", (300, 200), "red")])  # squashed, not cropped
    assert embeddings.shape == (1, 64)


def test_same_seed_same_checkpoint(demo_clip, tmp_path):
    again = build_demo_clip(tmp_path / "again", seed=1)
    assert (again / "model.safetensors").read_bytes() == (demo_clip / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="train_steps"):
        build_demo_clip(tmp_path / "bad", train_steps=-1)


def test_fitting_lowers_the_contrastive_loss_on_its_pool():
    import torch

    tokenizer = build_tokenizer(clip_vocabulary())
    processor, model = build_processor(tokenizer), build_model(tokenizer, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    losses = fit_clip(model, processor, steps=40, pool_images=8, batch_size=8, lr=3e-3)  # 25 steps: too close to call
    assert len(losses) == 40 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < losses[0] - 0.3  # 8 pairs: memorised quickly (chance: ln 8 = 2.08 nats)
    assert not model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
