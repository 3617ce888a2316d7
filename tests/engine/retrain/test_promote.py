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
])
def test_decision_rule(new, current, metric, mode, promoted, words):
    decision = decide(new, current, metric, mode)
    assert decision.promoted is promoted and words in decision.reason


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
    from annotators.hf_loading import checkpoint_version
    from engine.cli import main

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
""")
    args = ["train", "--root", str(root.path), "--config", str(config), "--quiet"]
    assert main([*args, "--round", "1"]) == 0
    first = _models(root)
    assert len(first) == 1 and first[0]["round"] == 1 and first[0]["path"] == str(root.model(1))
    metrics = json.loads(first[0]["metrics"])
    assert metrics == json.loads((root.model(1) / "metrics.json").read_text())
    for side in ("new", "current"):
        assert {"val_loss", "caption_agreement", "box_map", "mask_map"} <= set(metrics[side])
    assert metrics["current_model"] == str(root.path / "models" / "base-tiny-32")
    assert first[0]["promoted"] == (metrics["new"]["val_loss"] < metrics["current"]["val_loss"])
    assert first[0]["promoted"], metrics  # 60 steps on the training split beat random weights
    assert first[0]["version"] == checkpoint_version(root.model(1))
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
