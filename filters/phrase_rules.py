"""Rules for grounded phrases (``kind == phrase`` rows: text-phrase-region triplets).

* ``phrase_parent``: the parent caption (``parent_id``) must be a surviving caption of this
  round or a caption of the previous curated set.
* ``phrase_span``: ``0 <= span_start < span_end <= len(parent text)`` and
  ``parent_text[span_start:span_end] == text`` (offsets in Unicode code points, as Python
  slices them); checked in DuckDB SQL.
* ``phrase_blacklist``: after lowercasing, trimming and removing one leading determiner,
  the phrase must not be in ``blacklist`` (pronouns and abstract/scene nouns by default)
  and must not be empty.
* ``phrase_confidence``: ``score >= min_score`` (rows without a score are kept).
* ``phrase_nms``: greedy NMS among boxes of the same normalised phrase text within an
  image, and within one parent caption when ``nms_per_parent`` (default: a phrase row is a
  triplet with its caption, so the same phrase of two captions is not a duplicate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import (
    FilterContext,
    FilterResult,
    dictionary,
    equals,
    image_keys,
    normalize_text,
    normalized_codes,
    reason_where,
    register_filter,
    to_numpy,
    valid,
)
from filters.nms import nms_result
from storage.arrow_masks import with_nulls

PRONOUNS = (
    "i", "me", "my", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "it", "its",
    "we", "us", "our", "ours", "they", "them", "their", "theirs", "this", "that", "these", "those", "who",
    "whom", "which", "what", "one", "ones", "someone", "somebody", "something", "anyone", "anything",
    "everyone", "everything", "nobody", "nothing", "itself", "himself", "herself", "themselves",
)
ABSTRACT_NOUNS = (
    "image", "picture", "photo", "photograph", "scene", "view", "background", "foreground", "area", "part",
    "side", "thing", "things", "stuff", "object", "objects", "atmosphere", "moment", "setting",
    "environment", "composition", "frame", "shot", "style", "mood", "vibe", "color", "colors", "time",
)
DETERMINERS = ("the", "a", "an", "this", "that", "these", "those", "some", "its", "their", "his", "her")


@dataclass(frozen=True)
class PhraseConfig:
    min_score: float = 0.3
    iou_threshold: float = 0.5
    nms_per_parent: bool = True
    blacklist: tuple[str, ...] = PRONOUNS + ABSTRACT_NOUNS
    determiners: tuple[str, ...] = DETERMINERS

    def __post_init__(self) -> None:
        if isinstance(self.min_score, bool) or not isinstance(self.min_score, (int, float)):
            raise ValueError(f"phrase.min_score must be a number, got {self.min_score!r}")
        if isinstance(self.iou_threshold, bool) or not isinstance(self.iou_threshold, (int, float)) \
                or not 0 <= self.iou_threshold <= 1:
            raise ValueError(f"phrase.iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        for name in ("blacklist", "determiners"):
            bad = [w for w in getattr(self, name) if not isinstance(w, str) or not w.strip()]
            if bad:
                raise ValueError(f"phrase.{name} must hold non-empty strings, got {bad!r}")
        if not isinstance(self.nms_per_parent, bool):
            raise ValueError(f"phrase.nms_per_parent must be true or false, got {self.nms_per_parent!r}")


def _phrases(table: pa.Table) -> np.ndarray:
    return equals(table["kind"], "phrase") if table.num_rows else np.zeros(0, bool)


def _captions(table: pa.Table, ctx: FilterContext) -> pa.Table:
    """annotation_id, text of the captions a phrase may point at (this round's + previous)."""
    parts = [table.select(["annotation_id", "kind", "text"])]
    if ctx.previous is not None and ctx.previous.num_rows:
        parts.append(ctx.previous.select(["annotation_id", "kind", "text"]).cast(parts[0].schema))
    captions = pa.concat_tables(parts)
    return captions.filter(pc.equal(captions["kind"], "caption"))


@register_filter("phrase_parent", section="phrase", settings=PhraseConfig, working_form=True)
def phrase_parent_filter(table: pa.Table, config: PhraseConfig, ctx: FilterContext) -> FilterResult:
    """Drop phrases whose parent caption is missing or was dropped."""
    scope = _phrases(table)
    if not scope.any():
        return FilterResult.keep_all(scope)
    found = valid(pc.index_in(table["parent_id"], value_set=_captions(table, ctx)["annotation_id"].combine_chunks()))
    drop = scope & ~found
    return FilterResult(keep=~drop, reason=reason_where(drop, "parent caption missing or dropped"), judged=scope)


@register_filter("phrase_span", section="phrase", settings=PhraseConfig, working_form=True)
def phrase_span_filter(table: pa.Table, config: PhraseConfig, ctx: FilterContext) -> FilterResult:
    """Drop phrases whose span does not lie inside the parent caption or does not match its text."""
    n, scope = table.num_rows, _phrases(table)
    if not scope.any():
        return FilterResult.keep_all(scope)
    captions = _captions(table, ctx)
    idx = pc.index_in(table["parent_id"], value_set=captions["annotation_id"].combine_chunks())
    check = pa.table({
        "row": pa.array(np.arange(n)), "text": table["text"], "parent": pc.take(captions["text"], idx),
        "s": table["span_start"], "e": table["span_end"],
    })
    con = duckdb.connect()
    con.register("phr", check)
    out = con.sql(
        """select coalesce(s is null or e is null or parent is null or text is null, true) as missing,
                  coalesce(not (s >= 0 and e > s and e <= length(parent)), false) as outside,
                  coalesce(substring(parent, s + 1, e - s) <> text, false) as differs
           from phr order by row"""
    ).to_arrow_table()
    con.close()
    missing = out["missing"].to_numpy() & scope
    outside = out["outside"].to_numpy() & scope & ~missing
    differs = out["differs"].to_numpy() & scope & ~(missing | outside)
    reason = reason_where(differs, "phrase text differs from the parent caption at its span")
    reason = reason_where(outside, "span outside the parent caption", reason)
    reason = reason_where(missing, "span, text or parent text missing", reason)
    return FilterResult(keep=~(missing | outside | differs), reason=reason, judged=scope)


def normalize_phrases(texts: pa.Array, config: PhraseConfig) -> pa.Array:
    """Phrase texts lowercased, trimmed, with one leading determiner removed."""
    words = sorted((re.escape(w.strip().lower()) for w in config.determiners), key=len, reverse=True)
    pattern = r"^(?:" + "|".join(words) + r")\s+"
    return pc.replace_substring_regex(normalize_text(texts), pattern, "", max_replacements=1)


def normalized_phrase(table: pa.Table, config: PhraseConfig) -> pa.Array:
    """:func:`normalize_phrases` of the table's ``text``, computed once per distinct text."""
    codes, values = dictionary(table["text"])
    norm = normalize_phrases(pa.array(values, pa.string()), config)
    return norm.take(with_nulls(codes, codes < 0)) if len(codes) else pa.array([], pa.string())


@register_filter("phrase_blacklist", section="phrase", settings=PhraseConfig, working_form=True)
def phrase_blacklist_filter(table: pa.Table, config: PhraseConfig, ctx: FilterContext) -> FilterResult:
    """Drop phrases that are pronouns or abstract nouns (``blacklist``), or empty."""
    scope = _phrases(table)
    if not scope.any():
        return FilterResult.keep_all(scope)
    norm = normalized_phrase(table, config)
    listed = to_numpy(pc.is_in(norm, value_set=pa.array([w.strip().lower() for w in config.blacklist])), False)
    empty = to_numpy(pc.equal(pc.utf8_length(norm), 0), True).astype(bool)
    listed, empty = scope & listed.astype(bool) & ~empty, scope & empty
    reason = reason_where(listed, pc.binary_join_element_wise("blacklisted phrase '", norm, "'", ""))
    reason = reason_where(empty, "empty phrase", reason)
    return FilterResult(keep=~(listed | empty), reason=reason, judged=scope)


@register_filter("phrase_confidence", section="phrase", settings=PhraseConfig, working_form=True)
def phrase_confidence_filter(table: pa.Table, config: PhraseConfig, ctx: FilterContext) -> FilterResult:
    """Drop phrases with ``score < min_score``."""
    scope = _phrases(table)
    if not scope.any():
        return FilterResult.keep_all(scope)
    score = to_numpy(table["score"], np.nan).astype(np.float64) if table.num_rows else np.zeros(0)
    low = scope & valid(table["score"]) & ~(score >= config.min_score)
    return FilterResult(keep=~low, reason=reason_where(low, f"phrase score below {config.min_score}"), judged=scope)


@register_filter("phrase_nms", section="phrase", settings=PhraseConfig, working_form=True)
def phrase_nms_filter(table: pa.Table, config: PhraseConfig, ctx: FilterContext) -> FilterResult:
    """Greedy NMS among boxes of the same phrase text (per image, per parent caption)."""
    scope = _phrases(table) & valid(table["bbox"])
    if not scope.any():
        return FilterResult.keep_all(scope)

    def keys(sub: pa.Table, rows: np.ndarray) -> list:
        text = normalized_codes(sub["text"], lambda values: normalize_phrases(values, config))
        image = image_keys(sub, ctx)
        return [image, text, sub["parent_id"]] if config.nms_per_parent else [image, text]
    scores = to_numpy(table["score"], 0.0).astype(np.float64) if table.num_rows else np.zeros(0)
    return nms_result(table, scope, keys, scores, config.iou_threshold, "same phrase", ctx.workers)
