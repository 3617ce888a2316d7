"""florence2: token format, offline checkpoint builder, parsing and the annotator, on CPU.

Every checkpoint is built here (tiny dims, locally trained tokenizer) and loaded by path
through ``build_annotator("florence2", model=DIR)``. One of them is first fitted for a few
hundred steps to answer each task with targets written by ``florence2_format``, so the
end-to-end test can check real geometry and text, not just that something ran.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from florence2 import format as ff
from florence2.checkpoint import SIZES, build_checkpoint, build_config, image_seq_length
from florence2.payloads import output_payloads
from florence2.settings import Florence2Settings
from storage.masks import decode_rle, rle_bbox
from storage.schema import ANNOTATIONS, table_from_rows

FAST = dict(device="cpu", num_beams=1, max_new_tokens=24)
#: the tasks ``trained_dir`` is fitted on (what it answers to an untrained task prompt is arbitrary)
TRAINED_TASKS = ("CAPTION", "DETAILED_CAPTION", "OD", "REGION_TO_DESCRIPTION", "OCR_WITH_REGION",
                 "CAPTION_TO_PHRASE_GROUNDING", "REGION_TO_SEGMENTATION")

# two drawn scenes of different sizes: (width, height, square box, colour, caption, phrase)
SCENES = [(96, 64, (10, 8, 50, 40), "red", "a red square", "red square"),
          (48, 80, (20, 30, 44, 70), "blue", "a big blue square on white", "blue square")]


def _detailed(caption: str) -> str:
    """A scene's detailed caption (the trained model's DETAILED_CAPTION answer)."""
    return f"{caption} on plain ground"


def _description(colour: str) -> str:
    """A scene's square described (the trained model's REGION_TO_DESCRIPTION answer)."""
    return f"a {colour} square"


def _tol(size: int) -> float:
    """One location bin, plus the processor's truncation to whole pixels."""
    return size / ff.NUM_BINS + 1.0


def _close(got, want, width, height) -> bool:
    return all(abs(g - w) <= _tol(width if i % 2 == 0 else height) for i, (g, w) in enumerate(zip(got, want)))


def _quad(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _scene_image(width, height, box, colour) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    return image


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("f2") / "tiny", seed=0)


@pytest.fixture(scope="module")
def annotator(tiny_dir):
    annotator = build_annotator("florence2", model=str(tiny_dir), **FAST)
    annotator.load()
    return annotator


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A tiny checkpoint (32 px images) fitted to answer every task about the two SCENES."""
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    out = build_checkpoint(tmp_path_factory.mktemp("f2t") / "trained", image_size=32, seed=1,
                           vocab_words=["square", "red", "blue", "big", "white", "STOP", "on", "plain", "ground"])
    processor = Florence2Processor.from_pretrained(out, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(out, local_files_only=True)
    parser = build_annotator("florence2", model=str(out), **FAST)
    images, prompts, targets = [], [], []
    for width, height, box, colour, caption, phrase in SCENES:
        od = ff.regions_target([("square", box)], width, height)
        # segmentation is prompted with the OD box as the annotator parses it back
        od_box = parser.model.parse("OD", od, width, height)[0]["bbox"]
        for prompt, target in [
            ("<CAPTION>", caption), ("<DETAILED_CAPTION>", _detailed(caption)), ("<OD>", od),
            ("<OCR_WITH_REGION>", ff.ocr_target([("STOP", _quad(box))], width, height)),
            (ff.task_prompt("CAPTION_TO_PHRASE_GROUNDING", text=caption),
             ff.grounding_target([(phrase, [box])], width, height)),
            (ff.task_prompt("CAPTION_TO_PHRASE_GROUNDING", text=_detailed(caption)),
             ff.grounding_target([(phrase, [box])], width, height)),
            (ff.task_prompt("REGION_TO_DESCRIPTION", bbox=od_box, width=width, height=height), _description(colour)),
            (ff.task_prompt("REGION_TO_SEGMENTATION", bbox=od_box, width=width, height=height),
             ff.segmentation_target([_quad(box)], width, height)),
        ]:
            images.append(_scene_image(width, height, box, colour))
            prompts.append(prompt)
            targets.append(target)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    labels = processor.tokenizer(targets, return_tensors="pt", padding=True).input_ids
    decoder_inputs = torch.cat([torch.full((len(targets), 1), 2), labels[:, :-1]], dim=1)
    labels = labels.masked_fill(labels == processor.tokenizer.pad_token_id, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(1200):
        logits = model(**inputs, decoder_input_ids=decoder_inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # every target token is the argmax after its true prefix: greedy decoding reproduces it
        if bool((logits.argmax(-1) == labels)[labels != -100].all()) and loss < 0.01:
            break
    else:
        pytest.fail(f"the tiny model did not fit the targets (loss {float(loss):.3f})")
    model.save_pretrained(out)
    return out


def _items(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [ImageItem(image_id=f"img{i}", image=Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                      width=w, height=h) for i, (w, h) in enumerate(sizes)]


def _assert_valid(rows, items):
    table_from_rows(rows, ANNOTATIONS).validate(full=True)
    sizes = {item.image_id: (item.width, item.height) for item in items}
    for row in rows:
        width, height = sizes[row["image_id"]]
        assert row["source"] == "florence2" and row["round"] == 2
        for column in ("bbox", "quad", *(["polygons"] if row.get("polygons") else [])):
            values = row.get(column) or []
            flat = [v for p in values for v in p] if column == "polygons" else values
            assert all(0 <= v <= (width if i % 2 == 0 else height) for i, v in enumerate(flat)), row
        if row.get("bbox"):
            x0, y0, x1, y1 = row["bbox"]
            assert x0 < x1 and y0 < y1
        assert row.get("score") is None or 0.0 < row["score"] <= 1.0


# ---------------------------------------------------------------------------- format
def test_quantize_round_trip_within_one_bin_and_clamps():
    rng = np.random.default_rng(0)
    for size in (37, 480, 1000, 4096):
        for x in rng.uniform(0, size, 200):
            assert abs(ff.dequantize(ff.quantize(x, size), size) - x) <= size / ff.NUM_BINS / 2 + 1e-9
    assert ff.quantize(-3, 50) == 0 and ff.quantize(50, 50) == 999 and ff.quantize(10**6, 50) == 999
    assert ff.box_tokens([0, 25, 50, 50], 100, 50) == "<loc_0><loc_500><loc_500><loc_999>"
    with pytest.raises(ValueError, match="3 x, y points"):
        ff.polygon_tokens([[1, 2, 3, 4]], 10, 10)


def test_task_table_matches_the_transformers_processor(annotator):
    processor = annotator.model.processor
    for name, spec in ff.TASKS.items():
        assert processor.tasks_answer_post_processing_type[spec.token] == spec.parse_type, name
        table = processor.task_prompts_with_input if spec.input else processor.task_prompts_without_inputs
        assert spec.token in table, name
    # prompts with input go through the processor's template, with the region as loc tokens
    prompt = ff.task_prompt("REGION_TO_SEGMENTATION", bbox=[0, 0, 50, 50], width=100, height=100)
    assert processor._construct_prompts([prompt]) == [
        "What is the polygon mask of region <loc_0><loc_0><loc_500><loc_500>"]


# ------------------------------------------------------------------ parse -> rows mapping
@pytest.mark.parametrize("width,height", [(640, 480), (37, 91)])
def test_written_targets_parse_back_to_rows(annotator, width, height):
    car = [0.1 * width, 0.2 * height, 0.6 * width, 0.9 * height]
    sign = [0.5 * width, 0.05 * height, width, 0.3 * height]
    far_car = [0.7 * width, 0.5 * height, 0.95 * width, 0.7 * height]
    od_text = "</s><s>" + ff.regions_target([("car", car), ("stop sign", sign), ("car", far_car)], width, height) + "</s>"
    od = annotator.model.parse("OD", od_text, width, height)  # the cars grouped, as released models write
    assert [p["text"] for p in od] == ["car", "car", "stop sign"] and [p["region_type"] for p in od] == ["object"] * 3
    assert all(_close(p["bbox"], box, width, height) for p, box in zip(od, [car, far_car, sign]))

    quad = [0.1 * width, 0.1 * height, 0.8 * width, 0.15 * height,
            0.78 * width, 0.4 * height, 0.12 * width, 0.35 * height]
    ocr_text = ff.ocr_target([("OPEN 24h", quad)], width, height)
    ocr = annotator.model.parse("OCR_WITH_REGION", ocr_text, width, height)
    assert len(ocr) == 1 and ocr[0]["text"] == "OPEN 24h" and ocr[0]["region_type"] == "ocr"
    assert _close(ocr[0]["quad"], quad, width, height)
    assert ocr[0]["bbox"] == [min(ocr[0]["quad"][0::2]), min(ocr[0]["quad"][1::2]),
                              max(ocr[0]["quad"][0::2]), max(ocr[0]["quad"][1::2])]

    caption = "A red car parks next to a stop sign."
    grounded = ff.grounding_target([("red car", [car]), ("stop sign", [sign, car]), ("a boat", [car])], width, height)
    phrases = annotator.model.parse("CAPTION_TO_PHRASE_GROUNDING", grounded, width, height, caption=caption)
    assert [(p["text"], caption[p["span_start"]:p["span_end"]]) for p in phrases] == [
        ("red car", "red car"), ("stop sign", "stop sign"), ("stop sign", "stop sign")]  # "a boat" is not in it
    assert _close(phrases[1]["bbox"], sign, width, height) and _close(phrases[2]["bbox"], car, width, height)

    triangle, square = [0.1 * width, 0.1 * height, 0.5 * width, 0.1 * height, 0.3 * width, 0.5 * height], _quad(car)
    seg_text = ff.segmentation_target([triangle, square], width, height)
    seg = annotator.model.parse("REGION_TO_SEGMENTATION", seg_text, width, height)
    assert len(seg) == 1 and len(seg[0]["polygons"]) == 2
    assert _close(seg[0]["polygons"][0], triangle, width, height)
    assert _close(seg[0]["polygons"][1], square, width, height)
    mask = decode_rle(seg[0]["mask_rle"], height, width)
    assert mask.shape == (height, width) and mask.sum() > 0
    union_box = [0.1 * width, 0.1 * height, 0.6 * width, 0.9 * height]  # triangle and car square together
    assert _close(rle_bbox(seg[0]["mask_rle"], height, width), union_box, width, height)
    assert annotator.stats["parse_failures"] == 0


def test_garbage_generations_count_parse_failures(annotator):
    before = annotator.stats["parse_failures"]
    garbage = [("OD", "</s><s>just words and no boxes</s>"),
               ("OD", "cat<loc_5><loc_5><loc_5><loc_5>"),  # a box of zero width
               ("CAPTION", "</s><s><loc_3><loc_9></s>"),
               ("OCR_WITH_REGION", "<loc_1><loc_2><loc_3>"),
               ("REGION_TO_SEGMENTATION", "<poly><loc_1><loc_2><loc_3><loc_4></poly>"),  # two points
               ("CAPTION_TO_PHRASE_GROUNDING", "ship<loc_1><loc_2><loc_30><loc_40>")]  # not in the caption
    for task, text in garbage:
        assert annotator.model.parse(task, text, 64, 48, caption="a cat") == []
    assert annotator.stats["parse_failures"] - before == len(garbage)
    assert annotator.stats["parse_failures/OD"] >= 2


def test_output_payloads_clamp_boxes_to_the_image():
    payloads = output_payloads("OD", {"bboxes": [[-5, 2, 80, 30], [70, 0, 90, 10]], "labels": ["a", "b"]}, 64, 48)
    assert [p["bbox"] for p in payloads] == [[0.0, 2.0, 64.0, 30.0]]  # the second lies outside


# ------------------------------------------------------------------------- annotator
def test_trained_model_end_to_end_rows(trained_dir):
    annotator = build_annotator("florence2", model=str(trained_dir), batch_size=4, **FAST)
    items = [ImageItem(image_id=f"scene{i}", image=_scene_image(w, h, box, colour), width=w, height=h)
             for i, (w, h, box, colour, _, _) in enumerate(SCENES)]
    rows = annotator.annotate(ImageBatch(items, round=2))
    _assert_valid(rows, items)
    for item, (width, height, box, colour, caption, phrase) in zip(items, SCENES):
        mine = [r for r in rows if r["image_id"] == item.image_id]
        by = {(r["kind"], r.get("region_type"), r.get("granularity")): r for r in mine}
        brief = by[("caption", None, "brief")]
        assert brief["text"] == caption and brief["source_version"] == annotator.version
        assert brief["score"] > 0.5  # geometric-mean token probability of a fitted answer
        od = [r for r in mine if r["kind"] == "region" and r["region_type"] == "object" and r.get("mask_rle")]
        assert len(od) == 1 and od[0]["text"] == "square" and _close(od[0]["bbox"], box, width, height)
        assert _close(rle_bbox(od[0]["mask_rle"], height, width), box, width, height)
        assert _close(od[0]["polygons"][0], _quad(box), width, height)
        ocr = by[("region", "ocr", None)]
        assert ocr["text"] == "STOP" and _close(ocr["quad"], _quad(box), width, height)
        grounded = by[("phrase", None, "brief")]
        assert grounded["parent_id"] == brief["annotation_id"] and grounded["text"] == phrase
        assert caption[grounded["span_start"]:grounded["span_end"]] == phrase
        assert _close(grounded["bbox"], box, width, height)
        detailed = by[("caption", None, "detailed")]  # every caption granularity is grounded
        assert detailed["text"] == _detailed(caption)
        in_detail = by[("phrase", None, "detailed")]
        assert in_detail["parent_id"] == detailed["annotation_id"] and in_detail["text"] == phrase
        described = by[("region", "object", "brief")]  # the OD box's description: its child, with its box
        assert described["parent_id"] == od[0]["annotation_id"] and described["text"] == _description(colour)
        assert described["bbox"] == od[0]["bbox"] and described.get("mask_rle") is None
        # per-row scores of fitted answers: label and coordinate tokens are near-certain
        assert all(r["score"] > 0.5 for r in (od[0], ocr, grounded)), [(r["text"], r["score"]) for r in mine]
    assert all(0.0 < r["score"] <= 1.0 for r in rows)
    assert annotator.stats["parse_failures/CAPTION"] == 0 and annotator.stats["parse_failures/OD"] == 0
    assert annotator.stats["score_fallbacks"] == 0


@pytest.mark.parametrize("which", ["random", "trained"])
def test_batched_equals_one_at_a_time(which, tiny_dir, trained_dir):
    model_dir = {"random": tiny_dir, "trained": trained_dir}[which]
    items = _items([(80, 50), (40, 70), (64, 64)], seed=3)
    if which == "trained":  # the scenes: grounding prompts of different lengths get padded
        items = [ImageItem(image_id=f"s{i}", image=_scene_image(w, h, b, c), width=w, height=h)
                 for i, (w, h, b, c, _, _) in enumerate(SCENES)] + items[:1]
    batched = build_annotator("florence2", model=str(model_dir), batch_size=len(items), **FAST)
    single = build_annotator("florence2", model=str(model_dir), batch_size=1, **FAST)
    rows = batched.annotate(ImageBatch(items, round=2))
    alone = [r for item in items for r in single.annotate(ImageBatch([item], round=2))]
    _assert_valid(rows, items)
    assert sorted(r["annotation_id"] for r in rows) == sorted(r["annotation_id"] for r in alone)
    scores = {r["annotation_id"]: r["score"] for r in alone}
    assert all(r["score"] == pytest.approx(scores[r["annotation_id"]], rel=1e-4) for r in rows)
    assert batched.stats == single.stats and batched.stats["score_fallbacks"] == 0
    assert batched.stats["generations"] >= len(items) * 6  # the six input-free tasks ran on every image


def test_settings_are_validated(tiny_dir, tmp_path):
    assert Florence2Settings(model="m", tasks=["OD", "CAPTION"]).tasks == ("CAPTION", "OD")
    bad = [({"dtype": "fp8"}, "fp8"), ({"device": "tpu"}, "tpu"), ({"batch_size": 0}, "batch_size"),
           ({"tasks": ["OD", "NOPE"]}, "NOPE"), ({"tasks": ["CAPTION_TO_PHRASE_GROUNDING"]}, "needs task CAPTION"),
           ({"tasks": ["CAPTION", "OD", "OD"]}, "repeats")]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            build_annotator("florence2", model=str(tiny_dir), **change)
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(AnnotatorError, match="local-dir") as error:
        build_annotator("florence2", model=str(missing))
    assert str(missing) in str(error.value)


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_is_deterministic_per_seed(tiny_dir, tmp_path):
    again = build_checkpoint(tmp_path / "again", seed=0)
    other = build_checkpoint(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()
    versions = {build_annotator("florence2", model=str(d)).version for d in (tiny_dir, again, other)}
    assert len(versions) == 2


def test_tiny_checkpoint_loads_and_agrees_with_its_vision_tower(annotator):
    model, processor = annotator.model.torch_model, annotator.model.processor
    tokenizer = processor.tokenizer
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert tokenizer.convert_tokens_to_ids(["<loc_0>", "<loc_999>"]) == [
        tokenizer.convert_tokens_to_ids("<loc_0>"), tokenizer.convert_tokens_to_ids("<loc_0>") + 999]
    assert model.config.image_token_id == tokenizer.image_token_id == len(tokenizer) - 1
    assert processor.num_image_tokens == (64 // 4) ** 2 + 1
    features = model.get_image_features(torch.zeros(1, 3, 64, 64)).pooler_output
    assert features.shape[1] == processor.num_image_tokens
    text_embeddings = ("shared", "embed_tokens", "embed_positions")
    blocks = sum(p.numel() for n, p in model.named_parameters() if not any(e in n for e in text_embeddings))
    assert 10_000 < blocks < 25_000  # DESIGN's test size: about 19k parameters besides the embeddings
    assert model.config.text_config.d_model == model.config.vision_config.projection_dim == 16


def test_base_and_large_configs_match_florence2_sizes():
    from transformers import Florence2ForConditionalGeneration

    for size, params, vision in (("base", 232e6, 90e6), ("large", 771e6, 360e6)):
        config = build_config(size)
        assert image_seq_length(SIZES[size], 768) == 577 and config.text_config.vocab_size == 51290
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = Florence2ForConditionalGeneration(config)
        total = sum(p.numel() for p in model.parameters())
        tower = sum(p.numel() for p in model.model.vision_tower.parameters())
        assert math.isclose(total, params, rel_tol=0.01) and math.isclose(tower, vision, rel_tol=0.01), size


def test_the_model_answers_a_ready_prompt_as_it_predicts(trained_dir):
    """One path: ``predict`` (the annotator's), ``answer`` with the task's input and ``answer`` with a
    training example's ready prompt (the evaluation's) give the same payloads and scores."""
    from florence2.model import Florence2Model, Query

    model = Florence2Model(Florence2Settings(model=str(trained_dir), batch_size=2, tasks=TRAINED_TASKS, **FAST))
    images = [_scene_image(w, h, box, colour) for w, h, box, colour, _, _ in SCENES]
    predictions = model.predict(images)
    for image, (width, height, box, _, caption, phrase), found in zip(images, SCENES, predictions):
        brief, detailed = (i for i, p in enumerate(found.payloads) if p["kind"] == "caption")
        phrases = [p for p, parent in zip(found.payloads, found.parents) if p["kind"] == "phrase" and parent == brief]
        assert [parent for p, parent in zip(found.payloads, found.parents) if p["kind"] == "phrase"] == [brief, detailed]
        prompt = ff.task_prompt("CAPTION_TO_PHRASE_GROUNDING", text=found.payloads[brief]["text"])
        by_input, by_prompt = model.answer([Query(image, "CAPTION_TO_PHRASE_GROUNDING", text=caption),
                                            Query(image, "CAPTION_TO_PHRASE_GROUNDING", prompt=prompt)])
        assert by_input == by_prompt == phrases and phrases[0]["text"] == phrase
        od = next(p for p in found.payloads if p["kind"] == "region" and p["region_type"] == "object")
        (seg,) = model.answer([Query(image, "REGION_TO_SEGMENTATION", bbox=od["bbox"])])
        assert seg[0]["mask_rle"] == od["mask_rle"]  # predict put the region's mask on its OD payload
