"""Every config problem a round would meet later is reported up front, one line per key."""

from __future__ import annotations

import json

import pytest

from engine.config import EngineConfig
from engine.preflight import ConfigProblems, config_problems, preflight
from flows.main import main


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def test_every_problem_is_one_line_naming_its_key(tmp_path):
    config = EngineConfig.from_dict({
        "sources": {"paths": [str(tmp_path / "no-such-folder")]},
        "annotators": {"detector": {"model": str(tmp_path / "no-detector")},
                       "coco_labels": {"path": str(tmp_path / "labels.json")}},
        "model": {"annotator": {"num_beams": 0}},
        "curation": {"rules": ["confidence", "text_complexity"],
                     "text": {"pipeline": str(tmp_path / "no-spacy")}},
        "training": {"ground_truth": str(tmp_path / "truth.json"), "device": "cuda"},
    })
    problems = config_problems(config)
    keys = [line.split(":")[0] for line in problems]
    expected = ["sources.paths", "annotators.detector", "annotators.coco_labels", "model.annotator",
                "training.base_model", "training.ground_truth", "curation.text.pipeline"]
    if not _has_gpu():
        expected.insert(6, "training.device")
    assert keys == expected, problems
    assert all("\n" not in line for line in problems)
    with pytest.raises(ConfigProblems) as caught:
        preflight(config)
    assert str(caught.value).count("\n") == len(expected)


def test_a_runnable_config_has_no_problems(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    config = EngineConfig.from_dict({"sources": {"paths": [str(tmp_path)]},
                                     "annotators": {"coco_labels": {"path": str(labels)}},
                                     "curation": {"rules": ["confidence"]},
                                     "training": {"base_model": "tiny"}})
    assert config_problems(config) == []


def test_fld_round_refuses_before_any_work(tmp_path, capsys):
    config = tmp_path / "engine.toml"
    config.write_text('[curation]\nrules = ["confidence"]\n[training]\nmax_steps = 2\n')
    root = tmp_path / "root"
    assert main(["round", "--root", str(root), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "training.base_model: not set" in err and "Traceback" not in err
    assert not root.exists()  # nothing was started, nothing was written
