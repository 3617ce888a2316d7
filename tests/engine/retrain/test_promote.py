"""Promotion rule, and ``fld train`` end to end: train -> evaluate both -> decide -> record;
the next round starts from the promoted checkpoint."""

from __future__ import annotations

import json

import pytest

from engine.retrain.promote import decide
from engine.retrain.train import current_model
from storage.catalog import Catalog
from tests.engine.retrain.data import curated_rows, make_root, write_curated


@pytest.mark.parametrize("new,current,metric,mode,promoted,words", [
    ({"val_loss": 1.0}, {"val_loss": 2.0}, "val_loss", "better", True, "lower is better"),
    ({"val_loss": 2.0}, {"val_loss": 1.0}, "val_loss", "better", False, "current model kept"),
    ({"val_loss": 1.0}, {"val_loss": 1.0}, "val_loss", "better", False, "not lower"),
    ({"box_map": 0.4}, {"box_map": 0.3}, "box_map", "better", True, "higher is better"),
    ({"box_map": 0.2}, {"box_map": 0.3}, "box_map", "better", False, "not higher"),
    ({"box_map": 0.2}, {"box_map": 0.3}, "box_map", "always", True, "always"),
    ({"box_map": 0.2}, {}, "box_map", "better", True, "current model has no box_map"),
    ({}, {"box_map": 0.3}, "box_map", "better", False, "new model has no box_map"),
    ({"val_loss": float("nan")}, {"val_loss": 1.0}, "val_loss", "better", False, "new model has no"),
    ({"calibration_recall": 0.6}, {"calibration_recall": 0.5}, "calibration_recall", "better", True, "higher is better"),
    ({"calibration_recall": 0.25}, {"calibration_recall": 0.31}, "calibration_recall", "better", False, "not higher"),
])
def test_decision_rule(new, current, metric, mode, promoted, words):
    decision = decide(new, current, metric, mode)
    assert decision.promoted is promoted and words in decision.reason


@pytest.mark.parametrize("mode", ["better", "always"])
def test_a_model_that_ignores_the_image_is_refused_whatever_the_mode(mode):
    best = {"val_loss": 0.1, "box_map": 0.9}
    blind = decide({**best, "image_dependence": 1e-7}, {"val_loss": 2.0}, "val_loss", mode, 0.01)
    assert not blind.promoted and blind.reason.startswith("image_dependence 1e-07 < min_image_dependence 0.01")
    assert "ignores the image" in blind.reason and "\n" not in blind.reason
    unmeasured = decide(best, {"val_loss": 2.0}, "val_loss", mode, 0.01)
    assert not unmeasured.promoted and "not measured" in unmeasured.reason
    assert decide({**best, "image_dependence": 0.2}, {"val_loss": 2.0}, "val_loss", mode, 0.01).promoted
    assert decide(best, {"val_loss": 2.0}, "val_loss", mode, 0.0).promoted  # 0 = no check


def test_a_blind_checkpoint_measures_zero_image_dependence_and_is_refused(tmp_path):
    import torch

    from engine.retrain.config import TrainingConfig
    from engine.retrain.evaluate import evaluate_model
    from engine.retrain.examples import build_examples
    from engine.retrain.train import load_model
    from florence2.checkpoint import build_checkpoint

    root, truth = make_root(tmp_path, images=8, seed=2, per_shard=4)
    write_curated(root, curated_rows(root, truth), 1)
    config = TrainingConfig(device="cpu", eval_fraction=0.5, eval_max_examples=2, max_new_tokens=8,
                            loader_threads=1, promote="always")
    validation = [e for e in build_examples(root, 1, config.eval_fraction, config.seed)[0] if e.split == "validation"]
    model, processor = load_model(build_checkpoint(tmp_path / "tiny", image_size=32, seed=0), torch.device("cpu"))
    with torch.no_grad():  # no image reaches the text encoder: every image becomes the norm's bias
        model.model.multi_modal_projector.image_projection.weight.zero_()
    model.save_pretrained(tmp_path / "blind")
    processor.save_pretrained(tmp_path / "blind")
    metrics = evaluate_model(tmp_path / "blind", validation, config)
    assert {"box_precision", "box_recall"} <= set(metrics)
    assert metrics["image_dependence"] < 1e-6
    decision = decide(metrics, {}, config.promote_metric, config.promote, config.min_image_dependence)
    assert not decision.promoted and "ignores the image" in decision.reason
    assert evaluate_model(tmp_path / "tiny", validation, config)["image_dependence"] > 1e-3


def test_decision_refuses_unknown_settings():
    with pytest.raises(ValueError, match="bleu"):
        decide({}, {}, "bleu")
    with pytest.raises(ValueError, match="sometimes"):
        decide({}, {}, "val_loss", "sometimes")


def _models(root):
    with Catalog(root) as catalog:
        rows = catalog.query("select round, path, version, metrics, promoted, reason from models order by round")
    return [dict(zip(["round", "path", "version", "metrics", "promoted", "reason"], r)) for r in rows]


def test_fld_train_evaluates_promotes_and_the_next_round_starts_from_it(tmp_path, capsys):
    import engine.commands.train  # noqa: F401  (registers the command)
    from engine.cli import main
    from hf.loading import checkpoint_version

    root, truth = make_root(tmp_path, images=12, seed=3, per_shard=6)
    rows = curated_rows(root, truth)
    for round_ in (1, 2):
        write_curated(root, [dict(r) for r in rows], round_)
    config = tmp_path / "engine.toml"
    config.write_text(f"""
[training]
base_model = "tiny"
tiny_image_size = 32
max_steps = 60
batch_size = 8
lr = 1e-2
device = "cpu"
eval_fraction = 0.3
eval_max_examples = 2
max_new_tokens = 16
loader_threads = 1
ground_truth = "{truth['path']}"
promote_metric = "val_loss"
# the tiny test model goes blind within these steps (image_dependence ~0.003, measured);
# this test is about the round mechanics, the blind-model refusal is tested above
min_image_dependence = 0.0
""")
    args = ["train", "--root", str(root.path), "--config", str(config), "--quiet"]
    assert main([*args, "--round", "1"]) == 0
    first = _models(root)
    assert len(first) == 1 and first[0]["round"] == 1 and first[0]["path"] == str(root.model(1))
    metrics = json.loads(first[0]["metrics"])
    assert metrics == json.loads((root.model(1) / "metrics.json").read_text())
    for side in ("new", "current"):
        assert {"val_loss", "caption_agreement", "box_map", "mask_map", "image_dependence", "box_precision",
                "box_recall"} <= set(metrics[side])
    assert metrics["current_model"] == str(root.path / "models" / "base-tiny-32")
    assert first[0]["promoted"] == (metrics["new"]["val_loss"] < metrics["current"]["val_loss"])
    assert first[0]["promoted"], metrics  # 60 steps on the training split beat random weights
    assert first[0]["version"] == checkpoint_version(root.model(1))
    # the decision weighed each validation image's loss under both models (paired bootstrap)
    evaluation = json.loads((root.model(1) / "evaluation.json").read_text())
    losses = {side: evaluation["per_image"][side]["val_loss"] for side in ("new", "current")}
    assert set(losses["new"]) == set(losses["current"]) and len(losses["new"]) >= 2
    # per task too: each task's per-image loss, and each image's agreement F1 under each model
    new_per_image = evaluation["per_image"]["new"]
    task_losses = {k: v for k, v in new_per_image.items() if k.startswith("val_loss/")}
    assert "val_loss/OD" in task_losses and len(task_losses) >= 2
    assert set().union(*task_losses.values()) == set(losses["new"])  # every image under some task
    assert set(new_per_image["od_agreement"]) <= set(losses["new"])
    assert all(0 <= v <= 1 for v in new_per_image["od_agreement"].values())
    assert metrics["p_better"] >= metrics["promote_confidence"] == 0.9 and "P(lower" in first[0]["reason"]
    assert "per_image" not in metrics["new"]  # per-image values stay in evaluation.json
    assert "promoted: val_loss" in capsys.readouterr().out
    assert current_model(root, 2) == root.model(1) and current_model(root, 1) is None

    # round 2 starts from round 1's promoted model; promote = always records it whatever the metric
    assert main([*args, "--round", "2", "--max-steps", "3", "--promote", "always"]) == 0
    second = _models(root)[1]
    payload = json.loads(second["metrics"])
    assert payload["current_model"] == str(root.model(1)) and second["promoted"]
    assert payload["current"]["val_loss"] == pytest.approx(metrics["new"]["val_loss"], rel=1e-4)
    assert current_model(root, 3) == root.model(2)

    assert main([*args, "--round", "1"]) == 0  # already trained: evaluated and decided again, not retrained
    assert "already trained" in capsys.readouterr().out
    assert main([*args, "--round", "1", "--promote", "sometimes"]) == 2
    assert "training.promote" in capsys.readouterr().err


def test_fld_train_and_the_round_evaluate_a_model_with_the_same_settings_and_threshold(tmp_path):
    """``[model.annotator]`` (views, fusion, score window) is resolved once: ``fld train`` and the
    round's evaluate step score the same model the same way and calibrate the same threshold."""
    import engine.commands.train  # noqa: F401  (registers the command)
    from engine.cli import main
    from engine.config import EngineConfig
    from engine.rounds.context import RoundContext
    from engine.rounds.steps import evaluate_step, round_annotators

    root, truth = make_root(tmp_path, images=8, seed=4, per_shard=4)
    write_curated(root, [dict(r) for r in curated_rows(root, truth)], 1)
    config = tmp_path / "engine.toml"
    config.write_text("""
[annotators.florence2]
model = "ignored: the current checkpoint"
score_window = 0
[model.annotator]
views = ["hflip"]
view_fusion = true
[training]
base_model = "tiny"
tiny_image_size = 32
max_steps = 4
batch_size = 4
device = "cpu"
eval_fraction = 0.5
eval_max_examples = 2
max_new_tokens = 16
loader_threads = 1
calibration_precision = 0.01
min_image_dependence = 0.0
""")
    assert main(["train", "--root", str(root.path), "--config", str(config), "--quiet", "--round", "1"]) == 0
    by_train = json.loads((root.model(1) / "evaluation.json").read_text())
    engine_config = EngineConfig.load(config)
    by_round = evaluate_step(RoundContext(root, 1, engine_config, progress=False))
    evaluation = json.loads((root.model(1) / "evaluation.json").read_text())
    settings = evaluation["annotator_settings"]
    assert settings["views"] == ["hflip"] and settings["view_fusion"] and settings["score_window"] == 0
    assert by_train["annotator_settings"] == settings
    assert by_train["new"]["score_threshold"] == by_round["score_threshold"] == evaluation["new"]["score_threshold"]
    # the round annotates with the same settings it evaluates with
    annotating = round_annotators(RoundContext(root, 1, engine_config, progress=False))["florence2"]
    assert {k: annotating[k] for k in ("views", "view_fusion", "score_window")} == \
        {"views": ["hflip"], "view_fusion": True, "score_window": 0}


def _evidence(new, current, metric="val_loss", confidence=0.9, seed=0):
    from engine.retrain.promote import Evidence

    return Evidence(metric, tuple(new), tuple(current), confidence, 2000, seed)


def test_the_paired_bootstrap_weighs_per_image_evidence():
    import numpy as np

    from engine.retrain.promote import bootstrap_p_better

    rng = np.random.default_rng(0)
    current = rng.uniform(2.0, 4.0, 40)
    better = current - 0.3 + rng.normal(0, 0.1, 40)   # lower loss on nearly every image
    same = current + rng.normal(0, 0.3, 40)             # noise around the same losses
    assert bootstrap_p_better(_evidence(better, current)) > 0.99
    assert bootstrap_p_better(_evidence(current + 0.3, current)) < 0.01
    assert 0.05 < bootstrap_p_better(_evidence(same, current)) < 0.95
    assert bootstrap_p_better(_evidence(same, current)) == bootstrap_p_better(_evidence(same, current))  # seeded
    # a higher-is-better metric counts the other way
    assert bootstrap_p_better(_evidence(current + 0.3, current, metric="box_recall")) > 0.99


def test_evidence_decides_better_and_its_p_is_recorded():
    import numpy as np

    rng = np.random.default_rng(1)
    current = rng.uniform(2.0, 4.0, 30)
    noisy = current + rng.normal(-0.02, 0.4, 30)  # a lower mean, but not by evidence
    new_m, cur_m = {"val_loss": float(noisy.mean())}, {"val_loss": float(current.mean())}
    assert noisy.mean() < current.mean() and decide(new_m, cur_m, "val_loss").promoted  # the plain rule promotes
    weighed = decide(new_m, cur_m, "val_loss", evidence=_evidence(noisy, current))
    assert not weighed.promoted and weighed.p_better < 0.9 and "paired bootstrap" in weighed.reason
    clear = decide({"val_loss": float((current - 0.5).mean())}, cur_m, "val_loss",
                   evidence=_evidence(current - 0.5, current))
    assert clear.promoted and clear.p_better == 1.0 and "better by evidence" in clear.reason


@pytest.mark.parametrize("table,message", [({"promote_confidence": 1.0}, "promote_confidence"),
                                           ({"promote_confidence": -0.1}, "promote_confidence"),
                                           ({"promote_resamples": 10}, "promote_resamples")])
def test_promotion_settings_are_validated(table, message):
    from engine.retrain.config import TrainingConfig

    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(table)
