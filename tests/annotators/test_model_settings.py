"""Shared settings validators, ModelSettings, unknown-setting errors and quiet model loading."""

from __future__ import annotations

import dataclasses

import pytest

from annotators.detector import DetectorSettings
from annotators.registry import annotator_names, build_annotator
from florence2.settings import Florence2Settings
from hf.loading import load_pretrained, quiet_progress_bars, torch_device_dtype
from hf.settings import (
    ModelSettings,
    check_bool,
    check_int,
    check_number,
    check_positive_int,
    check_range,
    check_str,
    settings_from_kwargs,
    str_tuple,
    subset_tuple,
)
from tests.annotators.builders_vision import tiny_detr_dir


def test_check_range_is_inclusive_and_refuses_bools_and_strings():
    for value in (0, 0.0, 0.5, 1, 1.0):
        check_range("threshold", value, 0.0, 1.0)
    for value in (-0.01, 1.01, True, "0.5", None):
        with pytest.raises(ValueError, match=r"^threshold must be a number in \[0, 1\], got ") as error:
            check_range("threshold", value, 0.0, 1.0)
        assert repr(value) in str(error.value)
    with pytest.raises(ValueError, match=r"margin must be a number in \[0, 10\] \(fraction\), got 11"):
        check_range("margin", 11, 0, 10, " (fraction)")


def test_check_number_with_one_bound_or_none():
    check_number("mask_threshold", -5.5)
    check_number("polygon_tolerance", 0, low=0.0)
    with pytest.raises(ValueError, match=r"polygon_tolerance must be a number >= 0 \(pixels\), got -1"):
        check_number("polygon_tolerance", -1, low=0.0, unit=" (pixels)")
    with pytest.raises(ValueError, match=r"x must be a number <= 2, got 3"):
        check_number("x", 3, high=2)
    with pytest.raises(ValueError, match=r"mask_threshold must be a number, got False"):
        check_number("mask_threshold", False)


def test_integer_checks_name_the_setting_and_bound():
    check_positive_int("batch_size", 1)
    check_int("num_threads", 0, 0)
    for value in (0, -3, 1.5, "2", True, None):
        with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got "):
            check_positive_int("batch_size", value)
    with pytest.raises(ValueError, match=r"num_threads must be an integer >= 0, got -1"):
        check_int("num_threads", -1, 0)


def test_bool_str_and_tuple_checks():
    check_bool("use_phrases", False)
    with pytest.raises(ValueError, match="use_phrases must be true or false, got 'yes'"):
        check_bool("use_phrases", "yes")
    with pytest.raises(ValueError, match="use_phrases must be true or false, got 1"):
        check_bool("use_phrases", 1)
    check_str("prompt", "")
    with pytest.raises(ValueError, match="prompt must be a string, got 3"):
        check_str("prompt", 3)
    assert str_tuple("exclude_sources", ["a", "b"]) == ("a", "b")
    with pytest.raises(ValueError, match="exclude_sources must be a list of source names, got 'ab'"):
        str_tuple("exclude_sources", "ab")
    with pytest.raises(ValueError, match="exclude_sources must be a list of source names"):
        str_tuple("exclude_sources", ["a", 2])
    assert subset_tuple("granularities", ["x"], ("x", "y")) == ("x",)
    for bad in ([], ["z"], ["x", "z"]):
        with pytest.raises(ValueError, match=r"granularities must be a non-empty subset of \('x', 'y'\)"):
            subset_tuple("granularities", bad, ("x", "y"))


@pytest.mark.parametrize("setting,value,message", [
    ("model", 3, "model must be a path or hub id string, got 3"),
    ("device", None, "device must be a string, got None"),
    ("dtype", "int8", "dtype must be one of fp32, bf16, fp16; got 'int8'"),
    ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
])
def test_model_settings_and_subclasses_validate_the_shared_fields(setting, value, message):
    for cls in (ModelSettings, DetectorSettings):
        with pytest.raises(ValueError) as error:
            cls(**{setting: value})
        assert str(error.value) == message
    assert ModelSettings(dtype="bfloat16").dtype == "bfloat16"


def test_subclass_keeps_its_defaults_and_checks():
    settings = DetectorSettings(model="m")
    assert (settings.model, settings.device, settings.dtype, settings.batch_size, settings.threshold) == \
        ("m", "cpu", "fp32", 8, 0.3)
    with pytest.raises(ValueError, match="threshold"):
        DetectorSettings(threshold=2)


def test_settings_from_kwargs_refuses_unknown_and_missing_names():
    @dataclasses.dataclass(frozen=True)
    class Tiny:
        size: int
        colour: str = "red"

    assert settings_from_kwargs(Tiny, {"size": 2}, "tiny") == Tiny(2, "red")
    with pytest.raises(ValueError) as error:
        settings_from_kwargs(Tiny, {"size": 2, "shape": "o", "alpha": 1}, "tiny")
    assert str(error.value) == "unknown setting(s) alpha, shape for annotator 'tiny'; known: size, colour"
    with pytest.raises(ValueError, match="annotator 'tiny' needs the setting\\(s\\) size"):
        settings_from_kwargs(Tiny, {"colour": "blue"}, "tiny")
    with pytest.raises(ValueError, match="needs the setting\\(s\\) model"):
        settings_from_kwargs(Florence2Settings, {}, "florence2")


@pytest.mark.parametrize("name", annotator_names())
def test_unknown_setting_raises_value_error_naming_it(name):
    with pytest.raises(ValueError, match="no_such_setting") as error:
        build_annotator(name, no_such_setting=1)
    assert "known:" in str(error.value)


def test_loading_is_quiet_and_leaves_the_users_progress_bar_setting(tmp_path, capfd):
    from transformers import AutoModelForObjectDetection
    from transformers.utils import logging as hf_logging

    model_dir = tiny_detr_dir(tmp_path / "detr")
    device, dtype = torch_device_dtype("cpu", "fp32")
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        capfd.readouterr()
        model, processor = load_pretrained(model_dir, "AutoModelForObjectDetection", "AutoImageProcessor",
                                           device, dtype)
        assert not model.training and next(model.parameters()).dtype == dtype and processor is not None
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled()  # put back as it was
        AutoModelForObjectDetection.from_pretrained(model_dir, local_files_only=True)  # the user's own load
        assert "Loading weights" in capfd.readouterr().err
        hf_logging.disable_progress_bar()
        with quiet_progress_bars():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # a user's "off" stays off
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()
