"""florence2 per-item scores: token spans of parsed items, the score formula, and the annotator's
rows on a test-size Florence-2 whose output distributions the test writes itself.

The scripted model: a forward hook replaces the model's logits at decoder position ``t`` by the
log of a probability table the test chose for step ``t`` (the same for every image and prefix),
so greedy and beam search both return the table's argmax sequence and every token's probability
is known exactly. Expected scores are computed here by hand from the module docstring's formula.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from PIL import Image

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from florence2 import format as ff
from florence2.checkpoint import build_checkpoint
from florence2.scores import (
    ItemTokens,
    TokenStats,
    item_scores,
    item_tokens,
    sequence_score,
    token_statistics,
)

EOS, BOS = 2, 0
NEG = -1e9  # a logit whose probability is exactly 0 in float32
FILLERS = tuple(range(3, 23))  # <unk>, <mask> and byte tokens: where a step's remaining probability goes
# coordinate distributions, offset from the generated bin -> probability (the rest goes to FILLERS)
SHARP = {0: 0.9, 1: 0.06, 50: 0.04}
FLAT = {0: 0.12, **{d: 0.08 for d in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)}}  # + 0.08 on words
#: window k -> the mass within k bins of the generated bin
SHARP_MASS = {0: 0.9, 2: 0.96}
FLAT_MASS = {0: 0.12, 2: 0.12 + 4 * 0.08}


def _geo(probabilities) -> float:
    return math.exp(sum(math.log(p) for p in probabilities) / len(probabilities))


# ----------------------------------------------------------------- scripted model
class Script:
    """Per-task tables of next-token probabilities by decoder position, and the hook that uses them."""

    def __init__(self, tokenizer, vocab_size: int) -> None:
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.tables: dict[str, torch.Tensor] = {}
        self.active = ""

    def table(self, name: str, steps: list[dict[int, float]]) -> None:
        rows = torch.full((len(steps), self.vocab_size), NEG)
        for row, probs in zip(rows, steps):
            fillers = [t for t in FILLERS if t not in probs]  # the rest, spread thin: never the argmax
            rest = (1.0 - sum(probs.values())) / len(fillers)
            for token, p in {**probs, **({t: rest for t in fillers} if rest > 1e-12 else {})}.items():
                row[token] = math.log(p)
        self.tables[name] = rows

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def locs(self, bins: list[int], shapes: list[dict[int, float]]) -> list[dict[int, float]]:
        """Steps generating location bins ``bins``, each spread as its ``shapes`` entry."""
        loc0 = self.tokenizer.convert_tokens_to_ids("<loc_0>")
        return [{loc0 + b + d: p for d, p in shape.items()} for b, shape in zip(bins, shapes)]

    def hook(self, module, args, kwargs, output):
        table = self.tables[self.active]
        rows, n = output.logits.shape[:2]
        past = kwargs.get("past_key_values")
        end = past.get_seq_length() if past is not None else n  # the cache already holds this step
        positions = torch.arange(end - n, end).clamp(max=len(table) - 1)
        output.logits = table[positions].unsqueeze(0).expand(rows, -1, -1).to(output.logits.dtype).clone()
        return output


def text_steps(script: Script, text: str, probs: list[float]) -> tuple[list[dict[int, float]], list[float]]:
    """Steps generating ``text``'s tokens with probabilities ``probs`` (cycled); and those used."""
    ids = script.ids(text)
    used = [probs[i % len(probs)] for i in range(len(ids))]
    return [{t: p} for t, p in zip(ids, used)], used


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("f2s") / "tiny", seed=0, vocab_words=["square", "red", "STOP"])


def scripted(model_dir, monkeypatch, **settings):
    """The annotator on ``model_dir`` with its logits replaced by a :class:`Script` (returned too)."""
    annotator = build_annotator("florence2", model=str(model_dir), device="cpu", dtype="fp32",
                                max_new_tokens=40, **settings)
    annotator.load()
    tokenizer = annotator.model.processor.tokenizer
    script = Script(tokenizer, annotator.model.torch_model.config.text_config.vocab_size)
    handle = annotator.model.torch_model.register_forward_hook(script.hook, with_kwargs=True)
    original = annotator.model.generate

    def generate(prompts, images):  # the table of the task being run
        script.active = "grounding" if prompts[0].startswith("<CAPTION_TO_PHRASE_GROUNDING>") else script.active
        return original(prompts, images)

    monkeypatch.setattr(annotator.model, "generate", generate)
    return annotator, script, handle


def _items():
    return [ImageItem(image_id="a", image=Image.new("RGB", (100, 100), "white"), width=100, height=100),
            ImageItem(image_id="b", image=Image.new("RGB", (200, 50), "gray"), width=200, height=50)]


BOX_A, BOX_B, BOX_C = [100, 200, 500, 600], [300, 100, 900, 400], [50, 600, 700, 900]


@pytest.mark.parametrize("num_beams,window", [(1, 2), (3, 2), (1, 0)])
def test_od_boxes_score_their_own_label_and_coordinates(model_dir, monkeypatch, num_beams, window):
    annotator, script, handle = scripted(model_dir, monkeypatch, tasks=["OD"], num_beams=num_beams,
                                         score_window=window, batch_size=2)
    square, p_square = text_steps(script, "square", [0.8])
    red_square, p_red_square = text_steps(script, "red square", [0.9, 0.4])
    script.table("od", [{BOS: 0.5}, *square, *script.locs(BOX_A, [SHARP] * 4), *script.locs(BOX_B, [FLAT] * 4),
                        *red_square, *script.locs(BOX_C, [SHARP, FLAT, SHARP, FLAT]), {EOS: 0.9}])
    script.active = "od"
    try:
        rows = annotator.annotate(ImageBatch(_items(), round=0))
    finally:
        handle.remove()
    sharp, flat = SHARP_MASS[window], FLAT_MASS[window]
    want = {(f"{BOX_A[0]}", "square"): _geo(p_square) * sharp,
            (f"{BOX_B[0]}", "square"): _geo(p_square) * flat,
            (f"{BOX_C[0]}", "red square"): _geo(p_red_square) * math.sqrt(sharp * flat)}
    for item in _items():
        mine = {(str(ff.quantize(r["bbox"][0], item.width)), r["text"]): r["score"]
                for r in rows if r["image_id"] == item.image_id}
        assert mine.keys() == want.keys()
        for key, score in want.items():
            assert mine[key] == pytest.approx(score, rel=1e-5), key
        # two boxes of one label in one sequence: the sharp one scores higher, by the coordinate ratio
        a, b = mine[(f"{BOX_A[0]}", "square")], mine[(f"{BOX_B[0]}", "square")]
        assert a > b and a / b == pytest.approx(sharp / flat, rel=1e-5)
    assert annotator.stats["score_fallbacks"] == 0


def test_label_probability_scales_the_box_score(model_dir, monkeypatch):
    scores = {}
    for p in (0.8, 0.4):
        annotator, script, handle = scripted(model_dir, monkeypatch, tasks=["OD"], num_beams=1)
        square, _ = text_steps(script, "square", [p])
        script.table("od", [{BOS: 1.0}, *square, *script.locs(BOX_A, [SHARP] * 4), {EOS: 1.0}])
        script.active = "od"
        try:
            (row,) = annotator.annotate(ImageBatch(_items()[:1], round=0))
        finally:
            handle.remove()
        scores[p] = row["score"]
    assert scores[0.8] == pytest.approx(0.8 * SHARP_MASS[2], rel=1e-5)
    assert scores[0.4] / scores[0.8] == pytest.approx(0.5, rel=1e-5)


def test_caption_and_grounded_phrases_score_per_item(model_dir, monkeypatch):
    annotator, script, handle = scripted(model_dir, monkeypatch, tasks=["CAPTION", "CAPTION_TO_PHRASE_GROUNDING"],
                                         num_beams=3)
    caption, p_caption = text_steps(script, "a red square", [0.9, 0.6, 0.3])
    script.table("caption", [{BOS: 0.5}, *caption, {EOS: 0.8}])
    banned, _ = text_steps(script, "it", [0.9])  # a phrase the processor drops: its box is no row
    phrase, p_phrase = text_steps(script, "red square", [0.7])
    script.table("grounding", [{BOS: 1.0}, *banned, *script.locs(BOX_C, [SHARP] * 4), *phrase,
                               *script.locs(BOX_B, [FLAT] * 4), *script.locs(BOX_A, [SHARP] * 4), {EOS: 1.0}])
    script.active = "caption"
    try:
        rows = annotator.annotate(ImageBatch(_items()[:1], round=0))
    finally:
        handle.remove()
    (brief,) = [r for r in rows if r["kind"] == "caption"]
    assert brief["text"] == "a red square"
    assert brief["score"] == pytest.approx(_geo([*p_caption, 0.8]), rel=1e-5)  # forced <s> excluded, </s> in
    phrases = {ff.quantize(r["bbox"][0], 100): r for r in rows if r["kind"] == "phrase"}
    assert sorted(phrases) == sorted([BOX_A[0], BOX_B[0]])
    assert all(r["parent_id"] == brief["annotation_id"] and r["text"] == "red square" for r in phrases.values())
    assert phrases[BOX_A[0]]["score"] == pytest.approx(_geo(p_phrase) * SHARP_MASS[2], rel=1e-5)
    assert phrases[BOX_B[0]]["score"] == pytest.approx(_geo(p_phrase) * FLAT_MASS[2], rel=1e-5)
    assert annotator.stats["score_fallbacks"] == 0


def test_ocr_lines_score_their_own_text_and_quad(model_dir, monkeypatch):
    annotator, script, handle = scripted(model_dir, monkeypatch, tasks=["OCR_WITH_REGION"], num_beams=1)
    stop, p_stop = text_steps(script, "STOP", [0.6])
    red, p_red = text_steps(script, "red", [0.9])
    quad_1, quad_2 = [100, 100, 500, 100, 500, 300, 100, 300], [600, 500, 900, 500, 900, 700, 600, 700]
    script.table("ocr", [{BOS: 1.0}, *stop, *script.locs(quad_1, [SHARP] * 8), *red,
                         *script.locs(quad_2, [FLAT] * 4 + [SHARP] * 4), {EOS: 1.0}])
    script.active = "ocr"
    try:
        rows = annotator.annotate(ImageBatch(_items()[:1], round=0))
    finally:
        handle.remove()
    by_text = {r["text"]: r for r in rows}
    assert by_text["STOP"]["region_type"] == "ocr" and len(by_text["STOP"]["quad"]) == 8
    assert by_text["STOP"]["score"] == pytest.approx(_geo(p_stop) * SHARP_MASS[2], rel=1e-5)
    assert by_text["red"]["score"] == pytest.approx(_geo(p_red) * math.sqrt(SHARP_MASS[2] * FLAT_MASS[2]), rel=1e-5)


def test_views_average_each_box_with_its_mirror_through_generation(model_dir, monkeypatch):
    """views = ["hflip"]: the model also generates on the mirrored images (the scripted table is the
    same for every image, so the mirror repeats the bins): a box symmetric about the vertical axis
    maps back onto itself and keeps its score, (s + s) / 2; a one-sided box maps back elsewhere, s / 2."""
    symmetric, one_sided = [100, 200, 899, 600], [100, 200, 300, 600]
    runs = {}
    for views, batch_size in (((), 2), (("hflip",), 2), (("hflip",), 1)):
        annotator, script, handle = scripted(model_dir, monkeypatch, tasks=["OD"], num_beams=1,
                                             batch_size=batch_size, views=list(views))
        square, _ = text_steps(script, "square", [0.8])
        script.table("od", [{BOS: 1.0}, *square, *script.locs(symmetric, [SHARP] * 4),
                            *script.locs(one_sided, [FLAT] * 4), {EOS: 1.0}])
        script.active = "od"
        try:
            runs[views, batch_size] = annotator.annotate(ImageBatch(_items(), round=0)), annotator.stats
        finally:
            handle.remove()
    own, _ = runs[(), 2]
    rows, stats = runs[("hflip",), 2]
    assert [r["annotation_id"] for r in rows] == [r["annotation_id"] for r in own] and len(rows) == 4
    s_symmetric, s_one_sided = 0.8 * SHARP_MASS[2], 0.8 * FLAT_MASS[2]
    for item in _items():  # one_sided: does the box end left of the middle
        def scores(found, item=item):
            return {r["bbox"][2] < item.width / 2: r["score"] for r in found if r["image_id"] == item.image_id}

        assert scores(own) == pytest.approx({False: s_symmetric, True: s_one_sided}, rel=1e-5)
        assert scores(rows) == pytest.approx({False: (s_symmetric + s_symmetric) / 2, True: s_one_sided / 2}, rel=1e-5)
    alone, alone_stats = runs[("hflip",), 1]
    assert [(r["annotation_id"], pytest.approx(r["score"], rel=1e-5)) for r in rows] == [
        (r["annotation_id"], r["score"]) for r in alone]
    assert stats == alone_stats and stats["view_generations"] == 2 and stats["view_confirmed/hflip"] == 2
    assert stats["score_fallbacks"] == stats["view_score_fallbacks"] == 0


# ------------------------------------------------------- teacher forcing == generation
@pytest.mark.parametrize("num_beams", [1, 3])
def test_scoring_pass_matches_the_returned_beams_generation_logits(model_dir, num_beams):
    """The teacher-forced distributions are those generation used for the returned sequence."""
    annotator = build_annotator("florence2", model=str(model_dir), device="cpu", num_beams=num_beams, max_new_tokens=20)
    annotator.load()
    images = [Image.effect_noise((64, 48), 80).convert("RGB"), Image.new("RGB", (40, 70), "red")]
    prompts = ["<OD>", "<OCR_WITH_REGION>"]
    generations = annotator.model.generate(prompts, images)
    processor, model = annotator.model.processor, annotator.model.torch_model
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=20, num_beams=num_beams, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    logits = torch.stack(out.logits, 1)  # (rows x beams, steps, vocab), raw
    steps = logits.shape[1]
    if num_beams > 1:
        logits = logits[out.beam_indices[:, :steps].clamp(min=0), torch.arange(steps)]
    want = logits.float().log_softmax(-1).gather(-1, out.sequences[:, 1:steps + 1, None])[..., 0]
    for row, generation in enumerate(generations):
        n = len(generation.stats.logp)
        assert n >= 1 and generation.text == processor.tokenizer.decode(out.sequences[row])
        assert generation.stats.logp == pytest.approx(want[row, :n].tolist(), abs=1e-4)


# ----------------------------------------------------------------- pure functions
def test_item_tokens_map_items_to_their_tokens():
    pieces = ["<s>", "car", "<loc_1>", "<loc_2>", "<loc_3>", "<loc_4>", "<loc_5>", "<loc_6>", "<loc_7>", "<loc_8>",
              "stop", " sign", "<loc_9>", "<loc_10>", "<loc_11>", "<", "loc_", "12", ">", "</s>"]
    items = item_tokens("description_with_bboxes", pieces)
    assert items == [ItemTokens((1,), ((2,), (3,), (4,), (5,))), ItemTokens((1,), ((6,), (7,), (8,), (9,))),
                     ItemTokens((10, 11), ((12,), (13,), (14,), (15, 16, 17, 18)))]
    grounding = ["<s>", "it", "<loc_1>", "<loc_2>", "<loc_3>", "<loc_4>", "dog", "<loc_1>", "<loc_2>", "<loc_3>",
                 "<loc_4>", "</s>"]
    assert item_tokens("phrase_grounding", grounding, banned={"it"}) == [
        ItemTokens((6,), ((7,), (8,), (9,), (10,)))]
    ocr = ["<s>", *[f"<loc_{i}>" for i in range(9)], "OPEN", *[f"<loc_{i}>" for i in range(8)], "</s>"]
    assert item_tokens("ocr", ocr) == [  # 9 locations: the processor reads the first as the text
        ItemTokens((1,), tuple((i,) for i in range(2, 10))), ItemTokens((10,), tuple((i,) for i in range(11, 19)))]
    assert item_tokens("pure_text", ["<s>", "a", " dog", "</s>"]) == [ItemTokens((1, 2, 3))]
    assert item_tokens("polygons", ["<poly>"]) is None


def test_item_scores_follow_the_formula():
    pieces = ("<s>", "red", " car", "<loc_1>", "<loc_2>", "<loc_3>", "<loc_4>", "</s>")
    logp = (0.0, math.log(0.9), math.log(0.4), math.log(0.5), math.log(0.5), math.log(0.5), math.log(0.5), math.log(0.7))
    mass = (None, None, None, 0.9, 0.8, 0.7, 0.6, None)
    stats = TokenStats(pieces, logp, mass)
    (score,) = item_scores("description_with_bboxes", stats)
    assert score == pytest.approx(math.sqrt(0.9 * 0.4) * (0.9 * 0.8 * 0.7 * 0.6) ** 0.25)
    (caption,) = item_scores("pure_text", stats)
    assert caption == pytest.approx(math.exp(sum(logp[1:]) / 7))
    # a checkpoint that opens with several <s> (Florence-2-large): none of them is scored
    repeated = TokenStats(("<s>", "<s>", "<s>", "a", " car", "</s>"), (0.0, math.log(0.01), math.log(0.02),
                                                                       math.log(0.8), math.log(0.5), math.log(0.9)),
                          (None,) * 6)
    (caption,) = item_scores("pure_text", repeated)
    assert caption == pytest.approx((0.8 * 0.5 * 0.9) ** (1 / 3))
    assert sequence_score(repeated) == pytest.approx(caption)


def test_token_statistics_window_mass_clips_at_the_ends():
    loc_ids = torch.arange(10, 10 + ff.NUM_BINS)
    loc_bin = torch.full((1100,), -1)
    loc_bin[loc_ids] = torch.arange(ff.NUM_BINS)
    probs = torch.full((3, 1100), 1e-6)
    probs[0, 10 + 0], probs[0, 10 + 1], probs[0, 10 + 3] = 0.5, 0.2, 0.1  # bin 0: window [0, 2]
    probs[1, 10 + 999], probs[1, 10 + 997] = 0.6, 0.3  # bin 999: window [997, 999]
    probs[2, 5] = 0.9  # a word
    probs = probs / probs.sum(-1, keepdim=True)
    targets = torch.tensor([10, 10 + 999, 5])
    logp, mass = token_statistics(probs.log(), targets, loc_ids, loc_bin, window=2)
    assert logp.tolist() == pytest.approx(probs[[0, 1, 2], targets].log().tolist(), abs=1e-5)
    assert mass[0] == pytest.approx(float(probs[0, 10:13].sum()), rel=1e-5)
    assert mass[1] == pytest.approx(float(probs[1, 10 + 997:10 + 1000].sum()), rel=1e-5)
    assert math.isnan(mass[2])


@pytest.mark.parametrize("task", ["OD", "CAPTION_TO_PHRASE_GROUNDING", "OCR_WITH_REGION"])
def test_item_tokens_agree_with_the_processor_on_random_sequences(model_dir, task):
    """Same items, same order, same bins as transformers' parser, on random token soups."""
    annotator = build_annotator("florence2", model=str(model_dir), device="cpu")
    annotator.load()
    post, spec = annotator.model.processor.post_processor, ff.task_spec(task)
    words = ["red", " square", "it", " the", "STOP", " ", "<", "loc_", "12", ">", "<od>", "<pad>", "</s>", "<s>", "a"]
    rng = random.Random(task)
    for _ in range(300):
        pieces = [rng.choice(words) if rng.random() < 0.35 else f"<loc_{rng.randrange(1000)}>"
                  for _ in range(rng.randrange(1, 40))]
        answer = annotator.model.processor.post_process_generation("".join(pieces), task=spec.token,
                                                              image_size=(1000, 1000))[spec.token]
        items = item_tokens(spec.parse_type, pieces, banned=post.banned_grounding_tokens)
        geometry = answer.get("quad_boxes") if task == "OCR_WITH_REGION" else answer["bboxes"]
        assert len(items) == len(geometry), pieces
        for item, values in zip(items, geometry):  # at 1000 px a dequantized bin is the bin itself
            spelled = ["".join(pieces[i] for i in coord) for coord in item.coords]
            assert [int(s[5:-1]) for s in spelled] == [int(v) for v in values], pieces


def test_score_window_is_validated(model_dir):
    with pytest.raises(ValueError, match="score_window"):
        build_annotator("florence2", model=str(model_dir), score_window=-1)
    assert build_annotator("florence2", model=str(model_dir), score_window=0).settings.score_window == 0
