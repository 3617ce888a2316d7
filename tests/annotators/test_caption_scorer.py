"""Caption scorer: a test-size CLIP scores each caption of the round against its image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.clip_features import max_text_tokens, similarity01
from annotators.registry import annotator_class, build_annotator
from engine.annotate.stages import annotation_stages, runs_after
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_language import context_rows, save_clip

LONG = " ".join(["a red circle next to a blue square"] * 12)  # longer than the tiny text tower takes


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_clip(tmp_path_factory.mktemp("clip") / "ckpt")


@pytest.fixture(scope="module")
def scorer(clip_dir):
    return build_annotator("caption_scorer", model=str(clip_dir), batch_size=2)


def _caption(image_id, text, source="florence2", granularity="brief", **extra):
    return annotation_row(image_id=image_id, round_=1, source=source, source_version="t", kind="caption",
                          granularity=granularity, text=text, **extra)


def _items():
    rng = np.random.default_rng(5)
    items = []
    for i, (w, h) in enumerate([(80, 60), (50, 70), (64, 64)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows = context_rows(f"img{i}", w, h, 1)  # a florence2 brief caption and two detector regions
        rows += [_caption(f"img{i}", "a blue square", source="sidecar_captions"),
                 _caption(f"img{i}", LONG, source="caption_composer", granularity="detailed"),
                 _caption(f"img{i}", "   ", source="sidecar_captions", granularity="detailed"),  # no text
                 _caption(f"img{i}", "a child caption", parent_id="x"),  # not a top-level caption
                 annotation_row(image_id=f"img{i}", round_=1, source="caption_scorer", source_version="t",
                                kind="caption", granularity="brief", parent_id="y", score=0.5)]  # its own rows
        items.append(ImageItem(image_id=f"img{i}", image=image, width=w, height=h, context={"annotations": rows}))
    return items


def _expected_cosine(model, processor, image, text):
    """Independently: the model's own forward pass; logits_per_image = exp(logit_scale) * cosine."""
    import torch

    inputs = processor(text=[text], images=[image], return_tensors="pt", padding=True, truncation=True,
                       max_length=model.config.text_config.max_position_embeddings)
    with torch.inference_mode():
        return float(model(**inputs).logits_per_image[0, 0] / model.logit_scale.exp())


def test_one_row_per_top_level_caption_scored_by_the_model(scorer, clip_dir):
    items = _items()
    rows = scorer.annotate(ImageBatch(items, round=1))
    table_from_rows(rows, ANNOTATIONS).validate(full=True)
    captions = {r["annotation_id"]: (item, r) for item in items for r in scorer.captions(item)}
    assert len(captions) == 9 and sorted(r["parent_id"] for r in rows) == sorted(captions)
    scorer.load()
    for row in rows:
        item, cap = captions[row["parent_id"]]
        assert row["source"] == "caption_scorer" and row["kind"] == "caption" and row["round"] == 1
        assert row["source_version"] == checkpoint_version(clip_dir) and row["image_id"] == item.image_id
        assert row["granularity"] == cap["granularity"] and row.get("text") is None and row.get("bbox") is None
        cosine = _expected_cosine(scorer._model, scorer._processor, item.image, cap["text"])
        assert row["score"] == pytest.approx(similarity01(cosine), abs=1e-5)
        assert 0.0 <= row["score"] <= 1.0
    assert len({r["score"] for r in rows}) > 1


def test_scores_do_not_depend_on_batching(clip_dir, scorer):
    items = _items()
    one = build_annotator("caption_scorer", model=str(clip_dir), batch_size=1).annotate(ImageBatch(items, round=1))
    many = scorer.annotate(ImageBatch(items, round=1))
    assert [r["annotation_id"] for r in one] == [r["annotation_id"] for r in many]
    assert [r["score"] for r in one] == pytest.approx([r["score"] for r in many], abs=1e-5)


def test_sources_and_granularities_select_captions(clip_dir):
    items = _items()
    only = build_annotator("caption_scorer", model=str(clip_dir), sources=["sidecar_captions"])
    assert {c["text"] for c in only.captions(items[0])} == {"a blue square"}
    detailed = build_annotator("caption_scorer", model=str(clip_dir), granularities=["detailed"])
    assert [c["source"] for c in detailed.captions(items[0])] == ["caption_composer"]
    assert detailed.annotate(ImageBatch([ImageItem("e", Image.new("RGB", (9, 9)), 9, 9)])) == []


def test_embeddings_are_unit_length_and_truncated_to_the_text_tower(scorer):
    texts = scorer.embed_texts(["a red circle", LONG])
    images = scorer.embed_images([item.image for item in _items()])
    assert texts.shape[0] == 2 and images.shape == (3, texts.shape[1])
    assert np.linalg.norm(texts, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(images, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert max_text_tokens(scorer._model) == 32


def test_runs_after_every_caption_maker():
    names = ["caption_scorer", "sidecar_captions", "detector", "caption_composer", "florence2"]
    assert set(runs_after(names)["caption_scorer"]) == {"florence2", "caption_composer", "sidecar_captions"}
    stages = annotation_stages(names)
    stage_of = {n: i for i, stage in enumerate(stages) for n in stage}
    assert stage_of["caption_scorer"] > max(stage_of[n] for n in ("florence2", "caption_composer", "sidecar_captions"))
    assert annotator_class("caption_scorer").needs == ("annotations",)


def test_settings_are_validated(clip_dir, tmp_path):
    with pytest.raises(AnnotatorError, match="neither a local directory"):
        build_annotator("caption_scorer", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="granularities"):
        build_annotator("caption_scorer", model=str(clip_dir), granularities=["short"])
    with pytest.raises(ValueError, match="sources"):
        build_annotator("caption_scorer", model=str(clip_dir), sources="florence2")
    with pytest.raises(ValueError, match="unknown setting"):
        build_annotator("caption_scorer", model=str(clip_dir), threshold=0.5)
