"""The engine config: what a round saves reads back to an equal config, and a wrong merge
setting is one line naming the key."""

from __future__ import annotations

import json

import pytest

from engine.config import EngineConfig


def test_the_saved_config_reads_back_equal():
    config = EngineConfig.from_dict({"curation": {"merge": {"fuse_iou_same_label": 0.25},
                                                  "confidence": {"default": 0.2}}})
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["curation"]["merge"]["fuse_iou_same_label"] == 0.25
    again = EngineConfig.from_dict(saved)
    assert again == config
    assert again.curation.merge.fuse_iou_same_label == 0.25
    assert EngineConfig.from_dict(json.loads(json.dumps(EngineConfig().to_dict()))) == EngineConfig()


@pytest.mark.parametrize("value", [0, 1.5, "near", True])
def test_a_wrong_merge_value_names_its_key(value):
    with pytest.raises(ValueError, match="merge.fuse_iou_same_label must be"):
        EngineConfig.from_dict({"curation": {"merge": {"fuse_iou_same_label": value}}})


@pytest.mark.parametrize("section, key, value, wanted", [
    ("ingest", "max_pixels", 1.5, "a whole number"), ("runner", "workers", True, "a whole number"),
    ("loop", "rounds", 2.5, "a whole number"), ("runner", "workers", "two", "a whole number"),
    ("loop", "higher_is_better", 1, "true or false"), ("loop", "metric", 3, "a string"),
    ("training", "lr", "fast", "a number"), ("training", "max_steps", 10.0, "a whole number")])
def test_a_value_of_the_wrong_type_names_its_key(section, key, value, wanted):
    with pytest.raises(ValueError, match=f"^{section}.{key} must be {wanted}"):
        EngineConfig.from_dict({section: {key: value}})


def test_an_int_is_a_fine_float():
    config = EngineConfig.from_dict({"training": {"lr": 1}, "loop": {"min_improvement": 0}})
    assert config.training.lr == 1.0 and isinstance(config.training.lr, float)


@pytest.mark.parametrize("table", [{"default": 2.0}, {"per_source": {"ocr": 1.5}}, {"default": -0.1}])
def test_a_confidence_threshold_outside_0_1_is_refused(table):
    with pytest.raises(ValueError, match=r"confidence\.(default|per_source\['ocr'\]) must be a number in \[0, 1\]"):
        EngineConfig.from_dict({"curation": {"confidence": table}})


def test_training_target_format_is_checked():
    from engine.retrain.config import TrainingConfig

    assert TrainingConfig().target_format == "released"
    with pytest.raises(ValueError, match="training.target_format must be one of released, per_box"):
        TrainingConfig(target_format="grouped")
