"""Caption composer: a test-size GPT-2 writes detailed captions from the brief one and regions."""

from __future__ import annotations

import pytest
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.annotators.builders_language import context_rows, save_gpt2

BRIEFS = ["a red circle", "the word hello next to a big blue square and two green triangles on a white sign",
          "a dog near a tree"]
MAX_NEW = {"detailed": 6, "more_detailed": 10}


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_gpt2(tmp_path_factory.mktemp("gpt2") / "ckpt")


@pytest.fixture(scope="module")
def composer(gpt2_dir):
    return build_annotator("caption_composer", model=str(gpt2_dir), batch_size=4, max_new_tokens=MAX_NEW)


def _items(round_=4):
    items = []
    for i, brief in enumerate(BRIEFS):
        w, h = 40 + 10 * i, 30
        rows = context_rows(f"img{i}", w, h, round_, caption=brief)
        rows.append(annotation_row(image_id=f"img{i}", round_=round_, source="region_captioner", source_version="t",
                                   kind="region", region_type="object", text="unvetted candidate",
                                   bbox=[1, 1, 5, 5], parent_id=rows[1]["annotation_id"]))
        items.append(ImageItem(f"img{i}", Image.new("RGB", (w, h)), w, h, context={"annotations": rows}))
    no_brief = context_rows("nobrief", 20, 20, round_)[1:]  # regions only
    items.append(ImageItem("nobrief", Image.new("RGB", (20, 20)), 20, 20, context={"annotations": no_brief}))
    return items


def test_prompt_holds_brief_and_vetted_regions(composer, gpt2_dir):
    item = _items()[1]
    prompt = composer.prompt(item, "detailed")
    assert BRIEFS[1] in prompt and "circle; square" in prompt and "unvetted" not in prompt
    assert composer.prompt(_items()[-1], "detailed") is None
    boxed = build_annotator("caption_composer", model=str(gpt2_dir), region_format="{text} [{x0},{y0},{x1},{y1}]",
                            max_regions=1, prompts={"detailed": "{regions} | {brief}"})
    w, h = item.width, item.height
    assert boxed.prompt(item, "detailed") == f"circle [{round(0.1 * w)},{round(0.2 * h)},{round(0.5 * w)},{round(0.7 * h)}] | {BRIEFS[1]}"


def test_rows_per_image_and_granularity_batched_equals_single(composer, gpt2_dir):
    items = _items()
    rows = composer.annotate(ImageBatch(items, round=4))
    table_from_rows(rows, ANNOTATIONS)
    assert composer.stats["empty_generations"] == 0
    assert sorted((r["image_id"], r["granularity"]) for r in rows) == sorted(
        (f"img{i}", g) for i in range(len(BRIEFS)) for g in ("detailed", "more_detailed"))
    for row in rows:
        item = next(it for it in items if it.image_id == row["image_id"])
        assert row["kind"] == "caption" and row["source"] == "caption_composer" and row["round"] == 4
        assert row["source_version"] == checkpoint_version(gpt2_dir)
        # one-at-a-time generation (no padding) gives the same text as the left-padded batch
        single = composer.generate([composer.prompt(item, row["granularity"])], MAX_NEW[row["granularity"]])
        assert row["text"] == single[0] and row["text"] == row["text"].strip() and row["text"]
    assert len({r["text"] for r in rows if r["granularity"] == "detailed"}) > 1  # the prompt matters


def test_empty_generations_are_counted_not_emitted(gpt2_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(gpt2_dir)
    eos = model.config.eos_token_id
    with torch.no_grad():  # final hidden state = constant ones; the eos embedding (tied head) wins
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[eos] = 5.0
    model.save_pretrained(tmp_path / "eos")
    AutoTokenizer.from_pretrained(gpt2_dir).save_pretrained(tmp_path / "eos")
    composer = build_annotator("caption_composer", model=str(tmp_path / "eos"), max_new_tokens=MAX_NEW)
    assert composer.annotate(ImageBatch(_items())) == []
    assert composer.stats["empty_generations"] == 2 * len(BRIEFS)


def test_load_is_idempotent_and_errors(composer, gpt2_dir, tmp_path):
    composer.load()
    model = composer._model
    composer.load()
    assert composer._model is model
    with pytest.raises(AnnotatorError, match="neither a local directory"):
        build_annotator("caption_composer", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="prompts\\['detailed'\\]"):
        build_annotator("caption_composer", model=str(gpt2_dir), prompts={"detailed": "no brief field"})
    with pytest.raises(ValueError, match="max_new_tokens"):
        build_annotator("caption_composer", model=str(gpt2_dir), max_new_tokens={"detailed": 0})
    with pytest.raises(ValueError, match="unknown granularities"):
        build_annotator("caption_composer", model=str(gpt2_dir), prompts={"brief": "{brief}"})
    with pytest.raises(ValueError, match="region_format"):
        build_annotator("caption_composer", model=str(gpt2_dir), region_format="{label}")


def test_a_chat_tuned_model_reads_its_own_chat_template(gpt2_dir, tmp_path):
    import json
    import shutil

    chat_dir = tmp_path / "chat"
    shutil.copytree(gpt2_dir, chat_dir)
    config_path = chat_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    config_path.write_text(json.dumps(config))
    chat = build_annotator("caption_composer", model=str(chat_dir), batch_size=4, max_new_tokens=MAX_NEW)
    chat.load()
    plain = build_annotator("caption_composer", model=str(gpt2_dir), batch_size=4, max_new_tokens=MAX_NEW)
    plain.load()
    prompt = plain.prompt(_items()[0], "detailed")
    assert plain.chat_text(prompt) == prompt  # no template: a raw completion prompt, as before
    assert chat.chat_text(prompt) == f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    sent = []
    real = chat._processor.__class__.__call__

    def spy(self, texts, *args, **kwargs):
        sent.extend(texts)
        return real(self, texts, *args, **kwargs)

    chat._processor.__class__.__call__ = spy
    try:
        rows = chat.annotate(ImageBatch(_items()[:1], round=4))
    finally:
        chat._processor.__class__.__call__ = real
    assert sent and all(text.startswith("<|im_start|>user\n") for text in sent)
    assert {r["granularity"] for r in rows} <= {"detailed", "more_detailed"}
