"""Fine-tuning a test-size Florence-2 on a tiny curated set built from synthetic shards:
the validation loss goes down, the saved model reloads by path and generates, and an
interrupted run resumes from its checkpoint on the same trajectory."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from safetensors.torch import load_file

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from engine.retrain.config import TrainingConfig
from engine.retrain.evaluate import word_f1
from engine.retrain.examples import build_examples
from engine.retrain.step_log import StepLog
from engine.retrain.train import latest_checkpoint, load_model, train
from engine.retrain.validation import mean_loss
from storage.decode import decode_rgb
from storage.readers import READERS
from tests.engine.retrain.data import curated_rows, make_root, write_curated

CONFIG = TrainingConfig(base_model="tiny", tiny_image_size=32, device="cpu", batch_size=8, lr=1e-2,
                        warmup_ratio=0.05, eval_fraction=0.25, seed=0, loader_threads=1, max_new_tokens=24)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, truth = make_root(tmp_path_factory.mktemp("train"), images=24, seed=11, per_shard=8)
    rows = curated_rows(root, truth)
    for round_ in (1, 2, 3, 4):
        write_curated(root, [dict(r) for r in rows], round_)
    examples, _ = build_examples(root, 1, CONFIG.eval_fraction, CONFIG.seed)
    return root, truth, examples


def test_training_lowers_validation_loss_and_the_model_reloads_and_generates(data):
    root, truth, examples = data
    config = dataclasses.replace(CONFIG, max_steps=300, save_every=100)
    validation = [e for e in examples if e.split == "validation"]
    assert validation and len(examples) - len(validation) > 50
    result = train(root, 1, examples, config)
    assert result.finished and result.steps_run == 300 and 0.9 * 300 * 8 < result.samples <= 300 * 8  # epochs end in partial batches
    out = root.model(1)
    for name in ("model.safetensors", "config.json", "processor_config.json", "tokenizer.json", "train_summary.json"):
        assert (out / name).is_file(), name
    assert latest_checkpoint(out / "checkpoints").name == "step-300"
    assert (latest_checkpoint(out / "checkpoints") / "model.safetensors").is_file()
    for folder in (out, latest_checkpoint(out / "checkpoints")):  # nothing of the saving machine in the configs
        saved = (folder / "tokenizer_config.json").read_text()
        assert '"is_local"' not in saved and '"local_files_only"' not in saved

    before_model, processor = load_model(root.path / "models" / "base-tiny-32", torch.device("cpu"))
    after_model, _ = load_model(out, torch.device("cpu"))
    before = mean_loss(before_model, processor, validation, config, torch.device("cpu"), None)
    after = mean_loss(after_model, processor, validation, config, torch.device("cpu"), None)
    assert after < 0.9 * before, (before, after)
    assert sum(result.losses[-20:]) / 20 < 0.5 * sum(result.losses[:20]) / 20

    # reload by path through the production annotator and caption training images
    annotator = build_annotator("florence2", model=str(out), device="cpu", num_beams=1, max_new_tokens=24,
                                tasks=["CAPTION"])
    train_images = {e.image_id: e for e in examples if e.split == "train" and e.task == "CAPTION"}
    chosen = list(train_images.values())[:4]
    items = []
    for e in chosen:
        data_ = next(r.data for r in READERS[e.shard_format](e.shard).records() if r.key == e.key)
        items.append(ImageItem(image_id=e.image_id, image=decode_rgb(data_), width=e.width, height=e.height))
    rows = annotator.annotate(ImageBatch(items, round=2))
    captions = {r["image_id"]: r["text"] for r in rows if r["kind"] == "caption"}
    assert len(captions) == len(chosen)
    # the fitted model writes captions mostly in the words of the data's captions and partly right
    # about the image (random weights give location tokens and word salad from BART's 50k tokens;
    # a 300-step 32 px model may still slip in a stray token, so 80% of the words must be the data's)
    vocabulary = {w for e in examples if e.task == "CAPTION"
                  for w in e.target.lower().replace(".", " ").replace(",", " ").replace('"', " ").split()}
    for text in captions.values():
        words = text.lower().replace(".", " ").replace(",", " ").replace('"', " ").split()
        assert len(words) >= 3 and "<loc_" not in text, text
        assert sum(w in vocabulary for w in words) >= 0.8 * len(words), text
    assert sum(word_f1(captions[e.image_id], e.target) for e in chosen) / len(chosen) > 0.2, captions


def test_an_interrupted_run_resumes_where_it_stopped(data):
    root, _, examples = data
    config = dataclasses.replace(CONFIG, max_steps=6, batch_size=4, grad_accum=2, save_every=2)
    whole = train(root, 2, examples, config)
    assert whole.finished and whole.steps_run == 6

    first = train(root, 3, examples, config, stop_after=3)
    assert not first.finished and first.step == 3 and not (root.model(3) / "model.safetensors").exists()
    assert latest_checkpoint(root.model(3) / "checkpoints").name == "step-3"
    lines: list[str] = []
    second = train(root, 3, examples, config, log=StepLog(lambda step, loss, lr: f"step {step}", lines.append))
    assert second.resumed_from == 3 and second.steps_run == 3 and second.finished
    assert [line.split(" (")[1].split(",")[0] for line in lines] == ["4/6 steps", "5/6 steps", "6/6 steps"]
    assert "ETA ?" in lines[0] and re.search(r"\d (step/s|s/step), ETA 00:00\)$", lines[-1]), lines
    assert second.losses == whole.losses[3:]  # same batches, same order, same weights
    a, b = load_file(root.model(2) / "model.safetensors"), load_file(root.model(3) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(root.path / "models" / "base-tiny-32" / "model.safetensors")
    assert not all(torch.equal(a[k], start[k]) for k in a)  # it did train
    assert train(root, 3, examples, config).already_trained


def test_weight_averaging_keeps_part_of_the_start_model(data):
    """WiSE-FT: the saved weights lie on the line from the start model to the fine-tune, at the
    configured weight (the same 6 steps as round 2's run, averaged halfway)."""
    root, _, examples = data
    config = dataclasses.replace(CONFIG, max_steps=6, batch_size=4, grad_accum=2, save_every=2)
    train(root, 2, examples, config)  # done by the test above when run in order; a no-op then
    averaged = train(root, 4, examples, dataclasses.replace(config, average_with_start=0.5))
    assert averaged.finished
    trained, mixed = load_file(root.model(2) / "model.safetensors"), load_file(root.model(4) / "model.safetensors")
    start = load_file(root.path / "models" / "base-tiny-32" / "model.safetensors")
    moved = [k for k in trained if trained[k].is_floating_point() and not torch.equal(trained[k], start[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(mixed[k], start[k] + 0.5 * (trained[k] - start[k]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("table,message", [
    ({"bogus": 1}, "training.bogus"),
    ({"batch_size": 0}, "training.batch_size"),
    ({"lr": -1e-4}, "training.lr"),
    ({"warmup_ratio": 1.5}, "training.warmup_ratio"),
    ({"dtype": "fp8"}, "fp8"),
    ({"device": "tpu"}, "tpu"),
    ({"tasks": ["OD", "NOPE"]}, "NOPE"),
    ({"promote_metric": "bleu"}, "bleu"),
    ({"promote": "sometimes"}, "sometimes"),
    ({"promote_metric": "box_map"}, "needs training.ground_truth"),
    ({"eval_fraction": 0.0}, "eval_fraction"),
    ({"eval_fraction": 0.0, "promote": "always"}, "training.min_image_dependence"),
    ({"min_image_dependence": -0.1}, "training.min_image_dependence"),
    ({"max_steps": True}, "training.max_steps"),
    ({"average_with_start": 0.0}, "training.average_with_start"),
    ({"average_with_start": 1.5}, "training.average_with_start"),
])
def test_training_config_names_the_bad_value(table, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(table)


def test_training_config_from_a_table():
    config = TrainingConfig.from_dict({"base_model": "tiny", "tasks": ["OD", "CAPTION"], "grad_accum": 4,
                                       "eval_fraction": 0.0, "promote": "always", "min_image_dependence": 0.0})
    assert config.tasks == ("CAPTION", "OD") and config.examples_per_step == 4 * config.batch_size
