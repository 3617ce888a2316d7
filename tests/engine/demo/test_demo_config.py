"""The demo's engine config: the shipped <OD> model by default, every task of another checkpoint on request."""

from __future__ import annotations

from pathlib import Path

from engine.config import EngineConfig
from engine.demo.report import DEMO_CHECKPOINT, DEMO_EVERY_TASK_TOKENS, demo_config_text, demo_training
from florence2.format import TASK_ORDER


def _config(tmp_path: Path, training: dict) -> EngineConfig:
    path = tmp_path / "demo.toml"
    path.write_text(demo_config_text(tmp_path / "sample", tmp_path / "spacy", 3, training))
    return EngineConfig.load(path)


def test_the_default_demo_annotates_and_fine_tunes_od_with_the_shipped_model(tmp_path):
    config = _config(tmp_path, demo_training())
    assert config.training.tasks == ("OD",) and Path(config.training.base_model) == DEMO_CHECKPOINT
    settings = config.current_model_settings()
    assert settings.tasks == ("OD",) and settings.max_new_tokens == 96 and settings.view_fusion
    assert config.curation.merge.new_box_max_overlap == 0.2 and config.curation.merge.relabel_known_only
    assert config.curation.merge.new_box_known_labels_only
    assert config.curation.caption_similarity.granularities == ("brief",)


def test_another_checkpoint_annotates_and_fine_tunes_every_task(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    config = _config(tmp_path, demo_training(model, TASK_ORDER))
    assert config.training.tasks == TASK_ORDER and config.training.base_model == str(model.resolve())
    assert config.training.max_new_tokens == DEMO_EVERY_TASK_TOKENS
    settings = config.current_model_settings()
    assert settings.tasks == TASK_ORDER and settings.max_new_tokens == DEMO_EVERY_TASK_TOKENS
