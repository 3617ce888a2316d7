"""A new filter is one file: defined here alone (function + settings), configured in TOML and
run by ``fld curate`` on a real data root, it sees plain columns (string ``text``,
``image_id``) and its drops are recorded decisions like any built-in rule's."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine import cli
from engine.annotate.plan import AnnotateRequest, annotate
from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_tables
from filters.base import FilterContext, FilterResult, reason_where, register_filter, to_numpy, with_prefix
from tests.filters.tables import caption, images, region, table


@dataclass(frozen=True)
class CaptionLengthConfig:
    """``max_words``: captions with more words are dropped (>= 1)."""

    max_words: int = 40

    def __post_init__(self) -> None:
        if isinstance(self.max_words, bool) or not isinstance(self.max_words, int) or self.max_words < 1:
            raise ValueError(f"caption_length.max_words must be an integer >= 1, got {self.max_words!r}")


@register_filter("caption_length", settings=CaptionLengthConfig)
def caption_length(table: pa.Table, config: CaptionLengthConfig, ctx: FilterContext) -> FilterResult:
    """Drop captions of more than ``max_words`` words (string functions: plain ``text``) and
    judge only rows of images the context knows (``image_id`` is there)."""
    words = to_numpy(pc.list_value_length(pc.utf8_split_whitespace(table["text"])), 0)
    is_caption = to_numpy(pc.equal(table["kind"], "caption"), False).astype(bool)
    known = to_numpy(pc.is_in(table["image_id"], value_set=ctx.images["image_id"]), False).astype(bool)
    drop = is_caption & known & (words > config.max_words)
    reason = reason_where(drop, lambda rows: with_prefix("caption of ", pa.array(words[rows]),
                                                         f" words (max {config.max_words})"))
    return FilterResult(keep=~drop, reason=reason, judged=is_caption & known)


def test_a_plain_filter_runs_inside_curation_like_a_built_in():
    rows = [caption("img-a", "one two three four five"), caption("img-a", "one two"),
            region("img-a", [1, 1, 30, 30], label="a very long label indeed here")]
    config = CurationConfig(rules=("image", "caption_length"), sections={"caption_length": CaptionLengthConfig(3)})
    curated, trails = curate_tables(table(rows), None, images(("img-a", 64, 64)), config, 0)
    assert sorted(curated["text"].to_pylist()) == ["a very long label indeed here", "one two"]
    reasons = [r for r in trails["reason"].cast(pa.string()).to_pylist() if r]
    assert reasons == ["caption of 5 words (max 3)"]


def test_its_settings_section_comes_from_the_registry():
    assert CurationConfig().caption_length == CaptionLengthConfig()
    with pytest.raises(ValueError, match="max_words"):
        CurationConfig.from_dict({"caption_length": {"max_words": 0}})
    with pytest.raises(ValueError, match="curation.caption_length.max_word"):
        CurationConfig.from_dict({"caption_length": {"max_word": 3}})


def test_fld_curate_runs_it_from_the_config(ingested_root, tmp_path, capsys):
    annotate(ingested_root, AnnotateRequest(round=0, annotators={"sidecar_captions": {}}, progress=False))
    rules = [r for r in DEFAULT_RULES if r != "text_complexity"] + ["caption_length"]
    config = tmp_path / "engine.toml"
    config.write_text(f"[curation]\nrules = {rules!r}\n[curation.caption_length]\nmax_words = 6\n".replace("'", '"'))
    assert cli.main(["curate", "--root", str(ingested_root.path), "--round", "0", "--config", str(config)]) == 0
    with duckdb.connect(str(ingested_root.catalog), read_only=True) as con:
        con.execute(f"set file_search_path = '{ingested_root.path}'")  # its views name files relative to the root
        dropped = con.sql("select reason from decisions where rule = 'caption_length' and not kept").fetchall()
        kept = con.sql("select text from curated where kind = 'caption'").fetchall()
    assert dropped and all(r.startswith("caption of ") and r.endswith("words (max 6)") for (r,) in dropped)
    assert kept and all(len(text.split()) <= 6 for (text,) in kept)
    words = np.array([int(r.split()[2]) for (r,) in dropped])
    assert (words > 6).all()
