"""The paper's Table 2 / Table 3 statistics of a round's curated set, and its drops per rule.

Written once here for ``fld stats --round``, the dashboard and the release card.

Tokens: a text's tokens are its *word tokens*: maximal runs of Unicode letters and digits, so
whitespace and punctuation separate words and are not counted ("the word "hi"." -> 3).
Computed in DuckDB SQL (``regexp_extract_all(text, '[\\p{L}\\p{N}]+')``).

Table 2 (over ``curated`` rows with ``curated_round = R``), one row per (type, text):

* ``text`` / brief, detailed, more detailed: image annotations = caption rows of the
  granularity; avg tokens = mean word tokens of those captions;
* ``region-text`` / phrase: every region (object or OCR) with a short text, ``coalesce(label,
  text)`` (class label or OCR text); image annotations = images with such regions;
  avg regions / image = regions / those images; avg region tokens over the phrases;
* ``region-text`` / brief: regions whose ``text`` is a description differing from their class
  ``label`` (the region-text matcher picked it); same counts over those;
* ``text-phrase-region`` / brief, detailed, more detailed: captions of the granularity that
  ground at least one ``phrase`` row (image annotations), their avg tokens, the phrase rows
  (regions), phrases per such caption (avg regions / image, as the paper counts it) and avg
  phrase tokens. A phrase's granularity is its parent caption's (else its own).

Table 3 (averages per caption text, per granularity) parses the captions with a spaCy
pipeline (:mod:`engine.curate.text_metrics`): the one passed in, else the round's configured
``curation.text.pipeline`` (rounds table). Without a pipeline that loads, every Table 3 value
is ``None`` (shown "n/a") and ``note`` says why; no number is ever made up. At most
``max_texts`` captions per granularity are parsed (the first by ``annotation_id``, a hash, so a
deterministic sample); ``texts`` says how many were.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from engine.curate.text_metrics import MEASURES, TextPipelineError, load_pipeline, parse_metrics
from storage.catalog import Catalog
from storage.layout import DataRoot

TOKEN_PATTERN = r"[\p{L}\p{N}]+"
GRANULARITY_NAMES = {"brief": "brief", "detailed": "detailed", "more_detailed": "more detailed"}
TABLE2_COLUMNS = ("image_annotations", "avg_tokens", "regions", "avg_regions_per_image", "avg_region_tokens")
NA = "n/a"
#: a drop reason's pattern: ids (16+ hex digits, not the digits of a number) become ``<id>``,
#: quoted texts ``'…'``, a measured value before ``<``/``>`` ``N``
REASON_PATTERN_SQL = (
    "regexp_replace(regexp_replace(regexp_replace(coalesce(reason, ''), '(^|[^.0-9a-f])[0-9a-f]{16,}', '\\1<id>', "
    "'g'), '''[^'']*''', '''…''', 'g'), ' -?[0-9][0-9.]* ([<>])', ' N \\1', 'g')"
)
#: a number written with more digits than a reader needs (a calibrated threshold, a float32)
LONG_DECIMAL = re.compile(r"[0-9]+\.[0-9]{5,}")

#: Florence-2 paper (arXiv 2311.06242) Table 2, keyed (type, text); counts in millions, None = "-"
FLD5B_TABLE2: dict[tuple[str, str], tuple[Any, ...]] = {
    ("text", "brief"): ("235M", 7.95, None, None, None),
    ("text", "detailed"): ("126M", 31.65, None, None, None),
    ("text", "more detailed"): ("126M", 70.53, None, None, None),
    ("region-text", "phrase"): ("126M", None, "681M", 5.42, 1.19),
    ("region-text", "brief"): ("126M", None, "681M", 5.42, 2.55),
    ("text-phrase-region", "brief"): ("235M", 7.95, "1007M", 4.27, 1.93),
    ("text-phrase-region", "detailed"): ("126M", 31.65, "1289M", 10.25, 1.49),
    ("text-phrase-region", "more detailed"): ("126M", 70.53, "1278M", 10.17, 1.35),
}
#: Florence-2 paper Table 3: measure -> (brief, detailed, more detailed)
FLD5B_TABLE3: dict[str, tuple[float, float, float]] = {
    "objects": (3.23, 13.31, 28.06), "attributes": (2.80, 7.27, 16.25), "actions": (0.58, 4.21, 8.76),
    "proper_nouns": (1.10, 2.40, 2.41), "object_complexity": (2.80, 4.00, 4.02),
    "action_complexity": (1.14, 3.63, 4.38),
}



def tokens_sql(column: str) -> str:
    """DuckDB expression: the number of word tokens of the text expression ``column``."""
    return f"len(regexp_extract_all(coalesce({column}, ''), '{TOKEN_PATTERN}'))"


_TABLE2_SQL = f"""
with c as (select * from curated where curated_round = $round),
captions as (select annotation_id, image_id, granularity, {tokens_sql('text')} as tokens
             from c where kind = 'caption'),
phrases as (select p.parent_id, coalesce(cap.granularity, p.granularity) as granularity,
                   {tokens_sql('p.text')} as tokens
            from c p left join captions cap on cap.annotation_id = p.parent_id where p.kind = 'phrase'),
regions as (select image_id, {tokens_sql('coalesce(label, text)')} as phrase_tokens,
                   {tokens_sql('text')} as text_tokens,
                   label is not null and trim(coalesce(text, '')) <> '' and trim(text) <> trim(label) as described
            from c where kind = 'region' and trim(coalesce(label, text, '')) <> '')
select 'text', granularity, count(*), avg(tokens), null, null, null from captions group by granularity
union all
select 'region-text', 'phrase', count(distinct image_id), null, count(*), count(*) / count(distinct image_id),
       avg(phrase_tokens) from regions having count(*) > 0
union all
select 'region-text', 'brief', count(distinct image_id), null, count(*), count(*) / count(distinct image_id),
       avg(text_tokens) from regions where described having count(*) > 0
union all
select 'text-phrase-region', cap.granularity, count(distinct cap.annotation_id), avg(cap.tokens), sum(n),
       sum(n) / count(distinct cap.annotation_id), sum(t) / sum(n)
from captions cap join (select parent_id, count(*) as n, sum(tokens) as t from phrases group by parent_id) g
     on g.parent_id = cap.annotation_id
group by cap.granularity
"""


@contextlib.contextmanager
def open_catalog(source: Catalog | DataRoot | str | Path) -> Iterator[Catalog]:
    """``source`` itself when it is an open :class:`Catalog`, else the root's catalog (closed after)."""
    if isinstance(source, Catalog):
        yield source
        return
    root = source if isinstance(source, DataRoot) else DataRoot(Path(source))
    if not root.has_catalog:
        raise FileNotFoundError(f"no catalog at {root.catalog}; nothing was ingested into {root.path}")
    with Catalog.reading(root) as catalog:
        yield catalog


def _type_order(kind: str, text: str) -> tuple[int, int]:
    kinds = ("text", "region-text", "text-phrase-region")
    texts = ("phrase", "brief", "detailed", "more detailed")
    return kinds.index(kind), texts.index(text) if text in texts else len(texts)


def table2(source: Catalog | DataRoot | str | Path, round_: int) -> list[dict[str, Any]]:
    """Table 2 rows of round ``round_``'s curated set: dicts with ``type``, ``text`` and
    :data:`TABLE2_COLUMNS` (None where the paper shows "-"), only for types present."""
    with open_catalog(source) as catalog:
        rows = catalog.query(_TABLE2_SQL.replace("$round", str(int(round_))))
    out = []
    for kind, granularity, count, tokens, regions, per_image, region_tokens in rows:
        text = GRANULARITY_NAMES.get(granularity, granularity or "unknown") if kind != "region-text" else granularity
        out.append({"type": kind, "text": text, "image_annotations": int(count),
                    "avg_tokens": None if tokens is None else float(tokens),
                    "regions": None if regions is None else int(regions),
                    "avg_regions_per_image": None if per_image is None else float(per_image),
                    "avg_region_tokens": None if region_tokens is None else float(region_tokens)})
    return sorted(out, key=lambda r: _type_order(r["type"], r["text"]))


def configured_pipeline(catalog: Catalog, round_: int) -> str | None:
    """``curation.text.pipeline`` of the round's resolved config (rounds table), if recorded."""
    rows = catalog.query("select config from rounds where round = ?", [int(round_)])
    if not rows or not rows[0][0]:
        return None
    config = json.loads(rows[0][0])
    return ((config.get("curation") or {}).get("text") or {}).get("pipeline")


def table3(source: Catalog | DataRoot | str | Path, round_: int, pipeline: str | None = None,
           max_texts: int = 5000) -> dict[str, Any]:
    """Table 3 of round ``round_``: ``{"pipeline", "available", "note", "texts": {granularity:
    n parsed}, "values": {measure: {granularity: mean or None}}}`` (granularities as printed:
    brief, detailed, more detailed)."""
    if max_texts < 1:
        raise ValueError(f"max_texts must be >= 1, got {max_texts}")
    captions = "from curated where curated_round = ? and kind = 'caption' and trim(coalesce(text, '')) <> ''"
    with open_catalog(source) as catalog:
        pipeline = pipeline or configured_pipeline(catalog, round_)
        rows = []  # each granularity's first max_texts by annotation id: a top-n, held in max_texts rows
        for (granularity,) in catalog.query(f"select distinct granularity {captions} order by granularity",
                                            [int(round_)]):
            rows += [(granularity, text) for (text,) in catalog.query(
                f"select text {captions} and granularity is not distinct from ? order by annotation_id limit ?",
                [int(round_), granularity, max_texts])]
    texts: dict[str, list[str]] = {}
    for granularity, text in rows:
        texts.setdefault(GRANULARITY_NAMES.get(granularity, granularity or "unknown"), []).append(text)
    result: dict[str, Any] = {"pipeline": pipeline, "available": False, "note": "",
                              "texts": {g: len(t) for g, t in texts.items()},
                              "values": {m: {g: None for g in GRANULARITY_NAMES.values()} for m in MEASURES}}
    if not pipeline:
        result["note"] = "n/a: no spaCy pipeline configured (curation.text.pipeline); Table 3 needs a parser"
        return result
    try:
        nlp = load_pipeline(pipeline)
    except TextPipelineError as err:
        result["note"] = f"n/a: {err}"
        return result
    for granularity, group in texts.items():
        table = parse_metrics(group, nlp)
        for measure in MEASURES:
            values = table[measure].to_pylist()
            result["values"][measure][granularity] = sum(values) / len(values)
    result["available"] = True
    result["note"] = f"parsed with spaCy pipeline {pipeline!r}"
    return result


def drop_counts(source: Catalog | DataRoot | str | Path, round_: int) -> list[dict[str, Any]]:
    """Rows dropped in round ``round_`` per rule and reason, most frequent first:
    ``[{"rule", "reason", "count"}]``. Reasons are grouped by their pattern: annotation ids
    become ``<id>``, quoted texts ``'…'`` and a measured value before ``<``/``>`` ``N``; a
    number with more than 4 decimals (``score below 0.7327104330062866``) is shown to 4
    significant digits."""
    with open_catalog(source) as catalog:
        rows = catalog.query(  # from the trails: a dropped row's rule and reason are on it (no unnest, no id join)
            f"select dropped_by as rule, {REASON_PATTERN_SQL} as why, count(*) as n from decision_trails "
            "where round = ? and dropped_by is not null group by all", [int(round_)])
    counts: dict[tuple[str, str], int] = {}
    for rule, why, n in rows:
        key = (rule, LONG_DECIMAL.sub(lambda m: f"{float(m.group()):.4g}", why))
        counts[key] = counts.get(key, 0) + int(n)
    return [{"rule": rule, "reason": why, "count": n}
            for (rule, why), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def known_rounds(catalog: Catalog) -> list[int]:
    """The rounds with raw annotations or a curated set, ascending."""
    rows = catalog.query("select distinct round from annotations union select distinct curated_round from curated")
    return sorted(int(r) for (r,) in rows if r is not None)


def require_round(catalog: Catalog, round_: int) -> None:
    """``ValueError`` in one line when ``round_`` has neither annotations nor a curated set."""
    rounds = known_rounds(catalog)
    if int(round_) not in rounds:
        have = ", ".join(map(str, rounds)) if rounds else "none yet"
        raise ValueError(f"round {round_} has no annotations in this data root (rounds: {have})")


def round_stats(source: Catalog | DataRoot | str | Path, round_: int, pipeline: str | None = None) -> dict[str, Any]:
    """Everything above for one round, JSON-ready; ``ValueError`` for a round with no data."""
    with open_catalog(source) as catalog:
        require_round(catalog, round_)
        return {"round": int(round_), "table2": table2(catalog, round_), "table3": table3(catalog, round_, pipeline),
                "drops": drop_counts(catalog, round_)}


# ------------------------------------------------------------------------- rendering
def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table2_grid(rows: list[dict[str, Any]], reference: bool = True) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells of Table 2, each of our rows followed by the FLD-5B row."""
    headers = ["type", "text", "source", "image annotations", "avg tokens", "regions", "avg regions / image",
               "avg region tokens"]
    grid = []
    for row in rows:
        grid.append([row["type"], row["text"], "ours"] + [_cell(row[c]) for c in TABLE2_COLUMNS])
        paper = FLD5B_TABLE2.get((row["type"], row["text"]))
        if reference and paper:
            grid.append([row["type"], row["text"], "FLD-5B"] + [_cell(v) for v in paper])
    return headers, grid


def table3_grid(result: dict[str, Any], reference: bool = True) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of Table 3: ours (or n/a) beside FLD-5B per granularity."""
    granularities = list(GRANULARITY_NAMES.values())
    headers = ["measure"]
    for g in granularities:
        headers += [f"{g} (ours)"] + ([f"{g} (FLD-5B)"] if reference else [])
    grid = []
    for measure in MEASURES:
        cells = [measure.replace("_", " ")]
        for i, g in enumerate(granularities):
            value = result["values"][measure][g]
            cells.append(NA if not result["available"] else _cell(value))
            if reference:
                cells.append(_cell(FLD5B_TABLE3[measure][i]))
        grid.append(cells)
    return headers, grid


def render_markdown(headers: list[str], grid: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in grid]
    return "\n".join(lines)


def render_text(headers: list[str], grid: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *grid)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [headers, *grid])


def format_round_stats(stats: dict[str, Any]) -> str:
    """Plain-text Table 2, Table 3 and drops of :func:`round_stats` (for ``fld stats --round``)."""
    t3 = stats["table3"]
    parts = [f"round {stats['round']}: Table 2 (curated set; tokens = word tokens split at whitespace and "
             f"punctuation)", render_text(*table2_grid(stats["table2"])) if stats["table2"] else "  (no curated rows)",
             "", f"Table 3 ({t3['note']})", render_text(*table3_grid(t3)), "", "drops per rule:"]
    parts += [f"  {d['rule']:<20} {d['reason'][:60]:<60} {d['count']:>10}" for d in stats["drops"]] or ["  none"]
    return "\n".join(parts)


def markdown_stats(stats: dict[str, Any]) -> str:
    """Table 2 and Table 3 of one :func:`engine.report.stats.round_stats` result as Markdown."""
    t2 = render_markdown(*table2_grid(stats["table2"])) if stats["table2"] else "(no curated rows)"
    return f"{t2}\n\nTable 3 ({stats['table3']['note']}):\n\n{render_markdown(*table3_grid(stats['table3']))}\n"
