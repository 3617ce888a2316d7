"""The auxiliary per-cell head: targets and vocabulary come from the training examples' OD
targets only; its loss reaches the vision tower; training with it saves a plain Florence-2
(no head weights) and resumes with the head from the trainer state."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from engine.retrain.aux_head import (
    AuxTargets,
    aux_loss,
    cell_targets,
    class_vocabulary,
    described_boxes,
    grid_side,
    new_head,
    od_boxes,
    word_cell_targets,
    word_vocabulary,
)
from engine.retrain.config import TrainingConfig
from engine.retrain.examples import Example, build_examples
from engine.retrain.train import STATE_FILE, Collator, latest_checkpoint, load_model, stream_examples, train
from florence2.checkpoint import build_checkpoint
from florence2.format import regions_target, task_prompt
from tests.engine.retrain.data import curated_rows, make_root, write_curated


def _example(image_id: str, task: str, target: str, width: int = 200, height: int = 100) -> Example:
    return Example(image_id, task, f"<{task}>", target, width, height, "shard.tar", image_id, "tar", "train")


def test_od_boxes_read_only_od_targets_normalised():
    od = regions_target([("wheel", [0, 0, 100, 50]), ("cat", [100, 50, 200, 100])], 200, 100)
    grouped = od + "wheel<loc_0><loc_0><loc_99><loc_99><loc_900><loc_900><loc_999><loc_999>"  # 2 boxes, 1 label
    examples = [_example("a", "OD", od), _example("b", "OD", grouped),
                _example("c", "CAPTION", "a wheel"), _example("d", "DENSE_REGION_CAPTION", od)]
    boxes = od_boxes(examples)
    assert set(boxes) == {"a", "b"}  # no OD example, no targets
    assert [label for label, _ in boxes["a"]] == ["cat", "wheel"]  # labels alphabetical in our targets
    assert boxes["a"][1][1] == pytest.approx((0.0005, 0.0005, 0.5005, 0.5005))  # bin centres, 0..1
    assert [label for label, _ in boxes["b"]] == ["cat", "wheel", "wheel", "wheel"]
    assert boxes["b"][3][1] == pytest.approx((0.9005, 0.9005, 0.9995, 0.9995))
    # the vocabulary is the labels found, most frequent first: nothing is hard-coded
    assert class_vocabulary(boxes, 10) == ("wheel", "cat")
    assert class_vocabulary(boxes, 1) == ("wheel",)


def test_cell_targets_smallest_box_wins_and_small_boxes_get_their_centre_cell():
    big = ("sky", (0.0, 0.0, 1.0, 0.5))
    small = ("bird", (0.30, 0.10, 0.45, 0.40))  # covers the centres of cells (0, 1) and (1, 1)
    tiny = ("bee", (0.80, 0.80, 0.82, 0.82))  # covers no cell centre: its centre cell (3, 3)
    odd = ("ufo", (0.0, 0.75, 0.24, 1.0))  # not in the vocabulary: its cells are ignored
    classes, boxes, mask = cell_targets([small, big, tiny, odd], ("sky", "bird", "bee"), side=4)
    grid = classes.view(4, 4)
    assert grid[0].tolist() == [1, 2, 1, 1] and grid[1].tolist() == [1, 2, 1, 1]
    assert grid[2].tolist() == [0, 0, 0, 0]
    assert grid[3].tolist() == [-100, 0, 0, 3]
    assert boxes[1].tolist() == pytest.approx(list(small[1])) and boxes[15].tolist() == pytest.approx(list(tiny[1]))
    assert mask.view(4, 4)[3].tolist() == [False, False, False, True] and int(mask.sum()) == 9


def _described(image_id: str, box: list[float], text: str) -> Example:
    return Example(image_id, "REGION_TO_DESCRIPTION", task_prompt("REGION_TO_DESCRIPTION", bbox=box, width=200,
                                                                  height=100), text, 200, 100, "s.tar", image_id,
                   "tar", "train")


def test_word_targets_come_from_the_descriptions_of_the_prompted_boxes():
    examples = [_described("a", [0, 0, 100, 50], "a small red triangle"),
                _described("a", [150, 75, 152, 77], "a tiny blue dot"),  # covers no cell centre
                _described("b", [0, 0, 200, 100], "A red, red sky!"),
                _example("a", "OD", regions_target([("triangle", [0, 0, 100, 50])], 200, 100))]
    described = described_boxes(examples)
    assert set(described) == {"a", "b"}
    assert described["a"][0][0] == ("a", "small", "red", "triangle")
    assert described["a"][0][1] == pytest.approx((0.0005, 0.0005, 0.5005, 0.5005))
    assert described["b"][0][0] == ("a", "red", "red", "sky")
    # once per description, most frequent first, ties by word: the data's words, none hard-coded
    assert word_vocabulary(described, 3) == ("a", "red", "blue")
    words = word_vocabulary(described, 20)
    hot, mask = word_cell_targets(described["a"], words, side=4)
    grid = mask.view(4, 4)
    assert grid[0].tolist() == [True, True, False, False] and grid[1].tolist() == [True, True, False, False]
    assert grid[3].tolist() == [False, False, False, True]  # the dot's centre cell
    assert {words[i] for i in hot[0].nonzero().flatten().tolist()} == {"a", "small", "red", "triangle"}
    assert {words[i] for i in hot[15].nonzero().flatten().tolist()} == {"a", "tiny", "blue", "dot"}
    assert hot[2].sum() == 0
    targets = AuxTargets.from_examples(examples, 4, max_classes=4, max_words=5)
    assert targets.words == words[:5] and set(targets.words_by_image) == {"a", "b"}
    assert not AuxTargets.from_examples(examples, 4, max_classes=4).words  # off by default


def test_the_word_term_adds_to_the_loss_only_on_described_cells():
    examples = [_described("a", [0, 0, 100, 50], "a small red triangle"),
                _example("a", "OD", regions_target([("triangle", [0, 0, 100, 50])], 200, 100)),
                _example("b", "OD", regions_target([("square", [100, 50, 200, 100])], 200, 100))]
    targets = AuxTargets.from_examples(examples, 2, max_classes=4, max_words=8)
    batch = targets.collate(["a", "b"])
    assert batch["aux_words"].shape == (2, 4, 4) and batch["aux_word_mask"].tolist() == [
        [True, False, False, False], [False, False, False, False]]
    d_model, image_token = 8, 7
    head = new_head(d_model, len(targets.classes), seed=0, words=len(targets.words))
    assert head.out_features == 1 + 2 + 4 + 4
    hidden = torch.randn(2, 6, d_model)
    input_ids = torch.tensor([[image_token] * 4 + [1, 2]] * 2)
    with_words = aux_loss(head, hidden, input_ids, image_token, batch)
    word_logits = head(hidden[0, 0])[-len(targets.words):]  # image a, cell 0: the only described cell
    expected = torch.nn.functional.binary_cross_entropy_with_logits(word_logits, batch["aux_words"][0, 0])
    batch["aux_word_mask"][:] = False
    without = aux_loss(head, hidden, input_ids, image_token, batch)
    assert float(with_words - without) == pytest.approx(float(expected), rel=1e-5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("aux"), images=10, seed=7, per_shard=5)
    rows = curated_rows(root, truth)
    for row in rows:  # the curated labels, not the ground truth's names, must reach the head
        if row.get("label"):
            row["label"] = "blob-" + row["label"]
    write_curated(root, rows, 1)
    examples, _ = build_examples(root, 1, 0.2, 0)
    return root, examples


def test_targets_come_from_the_training_examples_and_the_loss_reaches_the_vision_tower(data, tmp_path):
    root, examples = data
    train_set = [e for e in examples if e.split == "train"]
    model, processor = load_model(build_checkpoint(tmp_path / "tiny", image_size=32, seed=1), torch.device("cpu"))
    side = grid_side(processor)
    assert side == 8  # 32 px / 4
    targets = AuxTargets.from_examples(train_set, side, max_classes=8)
    assert set(targets.classes) <= {"blob-circle", "blob-square", "blob-triangle", "blob-diamond"}
    assert set(targets.by_image) == {e.image_id for e in train_set if e.task == "OD"}
    assert not {e.image_id for e in examples if e.split == "validation"} & set(targets.by_image)

    items = list(stream_examples(train_set[:6], 0, 0, 1))
    batch = Collator(processor, aux=targets)(items)
    assert batch["aux_classes"].shape == (6, 64) and batch["aux_boxes"].shape == (6, 64, 4)
    head = new_head(model.config.text_config.d_model, len(targets.classes), seed=0)
    out = model.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                      attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"])
    loss = aux_loss(head, out.encoder_last_hidden_state, batch["input_ids"], model.config.image_token_id, batch)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    vision = model.model.vision_tower.convs[0].conv.weight.grad
    assert vision is not None and vision.abs().sum() > 0


def test_training_with_the_head_saves_a_plain_florence2_and_resumes_with_the_head(data):
    root, examples = data
    config = TrainingConfig(base_model="tiny", tiny_image_size=32, device="cpu", batch_size=4, lr=1e-2,
                            eval_fraction=0.2, loader_threads=1, max_steps=6, save_every=3, aux_loss_weight=1.0)
    first = train(root, 1, examples, config, stop_after=3)
    assert not first.finished and len(first.aux_losses) == 3 and all(v > 0 for v in first.aux_losses)
    assert first.aux_classes and all(c.startswith("blob-") for c in first.aux_classes)
    state = torch.load(latest_checkpoint(root.model(1) / "checkpoints") / STATE_FILE, weights_only=True)
    assert set(state["aux_head"]) == {"weight", "bias"}
    done = train(root, 1, examples, config)
    assert done.finished and done.resumed_from == 3 and len(done.aux_losses) == 3
    saved = load_file(root.model(1) / "model.safetensors")
    plain = load_file(root.path / "models" / "base-tiny-32" / "model.safetensors")
    assert set(saved) == set(plain)  # the head is never saved with the model


def test_aux_settings_are_validated():
    with pytest.raises(ValueError, match="training.aux_loss_weight"):
        TrainingConfig(aux_loss_weight=-1.0)
    with pytest.raises(ValueError, match="training.aux_max_classes"):
        TrainingConfig(aux_max_classes=0)
    with pytest.raises(ValueError, match="training.aux_max_words"):
        TrainingConfig(aux_max_words=-1)
    with pytest.raises(ValueError, match="min_image_dependence"):
        TrainingConfig(eval_fraction=0.0, promote="always")
    assert dataclasses.replace(TrainingConfig(), min_image_dependence=0.0, eval_fraction=0.0, promote="always")
