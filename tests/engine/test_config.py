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
    with pytest.raises(ValueError, match="merge.fuse_iou_same_label must be in"):
        EngineConfig.from_dict({"curation": {"merge": {"fuse_iou_same_label": value}}})
