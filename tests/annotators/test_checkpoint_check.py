"""The checkpoint layouts users bring: each loads and runs, or is refused in one line (built
offline: a native Florence-2, a microsoft-style remote-code folder, a .bin-only folder, a DETR
with a timm backbone, weights that do not cover the model, a sharded checkpoint)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from florence2.checkpoint import build_checkpoint
from hf.checkpoint_check import check_checkpoint
from tests.annotators.builders_vision import tiny_detr_dir


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "native", seed=0)


def _copy(native, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(native, folder)
    return folder


def _runs(folder, **settings) -> int:
    annotator = build_annotator("florence2", model=str(folder), device="cpu", tasks=["OD"], max_new_tokens=8,
                                num_beams=1, **settings)
    item = ImageItem(image_id="a", image=Image.new("RGB", (32, 32), "red"), width=32, height=32)
    annotator.annotate(ImageBatch([item], round=0))
    return annotator.stats["generations"]


def test_a_native_florence2_loads_and_runs(native):
    check_checkpoint(native, "florence2")
    assert _runs(native) == 1


def test_a_remote_code_florence2_is_refused_naming_the_native_one(native, tmp_path):
    folder = _copy(native, tmp_path, "microsoft-style")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_florence2.Florence2Config",
                          "AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_florence2.py").write_text("raise SystemExit('never run')\n")
    with pytest.raises(AnnotatorError, match="remote-code checkpoint .*florence-community/Florence-2") as caught:
        build_annotator("florence2", model=str(folder))
    assert "\n" not in str(caught.value)


def test_pickle_only_weights_need_the_setting(native, tmp_path):
    from safetensors.torch import load_file

    folder = _copy(native, tmp_path, "bin-only")
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(AnnotatorError, match="only pickle weights .*allow_pickle_weights = true"):
        build_annotator("florence2", model=str(folder))
    assert _runs(folder, allow_pickle_weights=True) == 1


def test_weights_that_do_not_cover_the_model_are_an_error(native, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(native, tmp_path, "partial")
    weights = load_file(folder / "model.safetensors")
    dropped = sorted(weights)[:3]
    save_file({k: v for k, v in weights.items() if k not in dropped}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(AnnotatorError, match="do not cover the model: 3 parameters missing"):
        _runs(folder)


def test_a_sharded_checkpoint_loads(native, tmp_path):
    from transformers import Florence2ForConditionalGeneration

    folder = _copy(native, tmp_path, "sharded")
    (folder / "model.safetensors").unlink()
    model = Florence2ForConditionalGeneration.from_pretrained(native)
    model.save_pretrained(folder, max_shard_size="200KB")
    assert (folder / "model.safetensors.index.json").exists()
    assert _runs(folder) == 1


def test_a_timm_backbone_without_timm_names_the_extra(tmp_path):
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here")
    folder = tiny_detr_dir(tmp_path / "detr")
    config = json.loads((folder / "config.json").read_text())
    config["use_timm_backbone"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AnnotatorError, match=r"fld-engine\[timm\].*no_timm"):
        build_annotator("detector", model=str(folder))


def test_fld_train_refuses_a_remote_code_base_model_in_one_line(native, tmp_path, capsys):
    from flows.main import main

    folder = _copy(native, tmp_path, "remote")
    (folder / "modeling_florence2.py").write_text("")
    config = tmp_path / "engine.toml"
    config.write_text(f'[training]\nbase_model = "{folder}"\n[curation]\nrules = ["confidence"]\n')
    assert main(["round", "--root", str(tmp_path / "root"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "training.base_model:" in err and "remote-code checkpoint" in err and "Traceback" not in err
