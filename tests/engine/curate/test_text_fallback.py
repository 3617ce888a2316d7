"""Curation's text measures without the default spaCy pipeline: the rule-based measures after one
warning line that says how to install the real one; any other missing pipeline is one error line."""

from __future__ import annotations

import pytest
import spacy

from engine.config import EngineConfig
from engine.curate.rule_text_metrics import rule_based_metrics
from engine.curate.text_metrics import TextPipelineError, metrics_function
from engine.preflight import config_problems
from filters.text_complexity import DEFAULT_PIPELINE, TextComplexityConfig
from storage.schema import TEXT_METRICS

INSTALL = "python -m spacy download en_core_web_sm"
needs_default_missing = pytest.mark.skipif(spacy.util.is_package(DEFAULT_PIPELINE),
                                           reason=f"{DEFAULT_PIPELINE} is installed: nothing to fall back from")


def test_rule_based_measures_follow_the_noun_phrases():
    texts = ["a man holds a red umbrella", "dog", "", "and then", "two small dogs"]
    table = rule_based_metrics(texts)
    assert table.schema == TEXT_METRICS
    rows = {r["text"]: r for r in table.to_pylist()}
    # the parser's reading of the gold sentence: man (a, holds) = 2, umbrella (a, red, holds) = 3
    assert rows["a man holds a red umbrella"]["objects"] == 2
    assert rows["a man holds a red umbrella"]["attributes"] == 1
    assert rows["a man holds a red umbrella"]["object_complexity"] == pytest.approx(2.5)
    assert rows["dog"]["objects"] == 1 and rows["dog"]["object_complexity"] == 0.0  # a lone word: no edge
    assert rows[""]["objects"] == 0 and rows["and then"]["objects"] == 0
    assert rows["two small dogs"]["attributes"] == 1  # a number is no attribute
    assert all(r["actions"] == 0 and r["action_complexity"] == 0.0 for r in rows.values())


@needs_default_missing
def test_the_default_pipeline_missing_falls_back_with_one_warning(capsys):
    assert TextComplexityConfig().pipeline == DEFAULT_PIPELINE
    compute = metrics_function(DEFAULT_PIPELINE)
    first = compute(["a man holds a red umbrella"])
    second = compute(["dog", "a cat"])
    assert first["object_complexity"].to_pylist() == [pytest.approx(2.5)]
    assert second["objects"].to_pylist() == [1, 1]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert INSTALL in err and "rule-based" in err


def test_another_missing_pipeline_is_a_value_error_naming_it(tmp_path):
    compute = metrics_function(str(tmp_path / "no-such-pipeline"))
    with pytest.raises(TextPipelineError, match="no-such-pipeline") as caught:
        compute(["a dog"])
    assert isinstance(caught.value, ValueError)  # engine.cli.USER_ERRORS: one line, exit 2
    assert "\n" not in str(caught.value)


@needs_default_missing
def test_preflight_accepts_the_default_pipeline_missing(tmp_path):
    default = EngineConfig.from_dict({"curation": {"rules": ["text_complexity"]}})
    assert [p for p in config_problems(default) if p.startswith("curation.text")] == []
    other = EngineConfig.from_dict({"curation": {"rules": ["text_complexity"],
                                                 "text": {"pipeline": str(tmp_path / "nope")}}})
    assert [p.split(":")[0] for p in config_problems(other) if p.startswith("curation.text")] == \
        ["curation.text.pipeline"]
