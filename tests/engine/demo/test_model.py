"""The demo's small Florence-2: the s128 build and init, and the committed pre-trained
checkpoint (a plain Florence-2, under 20 MB, that looks at the image)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from engine.demo.model import S128, build_demo_checkpoint, parameter_count, sinusoids
from engine.demo.report import DEMO_CHECKPOINT, DEMO_TRAINING
from engine.retrain.config import TrainingConfig
from engine.retrain.train import load_model


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return build_demo_checkpoint(tmp_path_factory.mktemp("s128") / "model", seed=0)


def test_sinusoids_have_the_asked_rms_and_periods():
    table = sinusoids(64, 16, (2.0, 64.0), 1.0)
    assert table.shape == (64, 16) and table.pow(2).mean().sqrt() == pytest.approx(1.0, rel=1e-5)
    assert not torch.allclose(table[0], table[2], atol=1e-5)
    assert table[:, 0].abs().max() < 1e-4 * table.abs().max() + 1e-6  # period 2: sin(pi p) = 0


def test_the_s128_model_is_a_plain_florence2_with_the_recipe_init(fresh):
    model, processor = load_model(fresh, torch.device("cpu"))
    text = model.config.text_config
    assert (text.d_model, text.encoder_layers, text.decoder_layers, text.encoder_attention_heads) == (128, 2, 2, 4)
    assert text.encoder_ffn_dim == 512 and text.dropout == 0.0
    assert model.config.vision_config.embed_dim == [32, 64, 128] and model.config.vision_config.window_size == 8
    assert processor.image_processor.size == {"height": 128, "width": 128} and processor.num_image_tokens == 65
    assert 1.8e6 < parameter_count(model) < 2.5e6
    position = model.model.multi_modal_projector.image_position_embed.row_embeddings.weight
    assert position.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-4)
    ids = processor.tokenizer.convert_tokens_to_ids(["<loc_0>", "<loc_1>", "<loc_500>", "<loc_999>"])
    loc = model.get_input_embeddings().weight[ids]
    assert loc.pow(2).mean().sqrt().item() == pytest.approx(0.05, rel=0.2)
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(loc[0], loc[1], dim=0) > 0.8 > cosine(loc[0], loc[2], dim=0)  # near bins start alike
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # tied
    linear = model.model.language_model.encoder.layers[0].fc1
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.1) and linear.bias.abs().max() == 0
    assert S128.image_size == 128


def test_the_committed_checkpoint_is_small_plain_and_sees(fresh, tmp_path):
    from engine.demo.sample_data import SampleConfig, write_sample
    from engine.retrain.evaluate import image_dependence
    from engine.retrain.examples import Example

    weights = DEMO_CHECKPOINT / "model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20
    assert set(load_file(weights)) == set(load_file(fresh / "model.safetensors"))  # no auxiliary head in it
    metrics = json.loads((DEMO_CHECKPOINT / "metrics.json").read_text())
    assert metrics["training"]["pool_seed"] >= 10_000 and metrics["heldout"]["sample_seed"] >= 10_000
    heldout = metrics["heldout"]
    assert heldout["shapes_box_recall"] > 0.5 and heldout["shapes_box_precision"] > 0.6 and heldout["images"] >= 200
    assert heldout["image_dependence"] > 0.3
    assert (DEMO_CHECKPOINT / "train_log.tsv").read_text().startswith("step\tloss\taux_loss")

    # on a few scenes of the demo's own default seed, swapping images changes its outputs
    summary = write_sample(tmp_path / "sample", SampleConfig(images=4, seed=0, noise=False))
    images = json.loads((tmp_path / "sample" / "ground_truth.json").read_text())["images"]
    examples = [Example(f"img{i['id']}", "OD", "<OD>", "circle<loc_100><loc_100><loc_300><loc_300>", i["width"],
                        i["height"], summary["shards"][0], i["file_name"].split(".")[0], "tar", "validation")
                for i in images]
    model, processor = load_model(DEMO_CHECKPOINT, torch.device("cpu"))
    assert image_dependence(model, processor, examples) > 0.05


def test_the_demo_fine_tunes_the_committed_checkpoint_and_promotes_by_evidence():
    config = TrainingConfig.from_dict(DEMO_TRAINING)
    assert config.base_model == str(DEMO_CHECKPOINT) and (DEMO_CHECKPOINT / "config.json").is_file()
    # no fresh auxiliary head per fine-tune (it cost ~0.04 AP50: shared/notes/loop-study.md); a blind
    # model is still refused, and a candidate needs P(lower validation loss) >= 0.9
    assert config.aux_loss_weight == 0 and config.min_image_dependence > 0
    assert config.promote_metric == "val_loss" and config.promote_confidence >= 0.9
    assert config.tasks == ("OD",)  # the checkpoint is a detector: other tasks make it forget
