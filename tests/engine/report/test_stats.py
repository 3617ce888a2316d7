"""Table 2 / Table 3 / drops of a round, checked against independent recomputation from the
curated Parquet (Python tokenizer, spaCy parsing each caption on its own)."""

from __future__ import annotations

import collections
import re

import duckdb
import pytest

from engine.curate.text_metrics import doc_metrics, load_pipeline
from engine.report.stats import (
    FLD5B_TABLE3,
    NA,
    drop_counts,
    format_round_stats,
    round_stats,
    table2,
    table3,
    table3_grid,
    tokens_sql,
)
from storage.catalog import Catalog


def words(text: str | None) -> int:
    return len(re.findall(r"[^\W_]+", text or ""))


def curated_rows(root, round_: int) -> list[dict]:
    files = [str(p) for p in root.curated(round_).glob("part-*.parquet")]
    return duckdb.sql("select * from read_parquet(?)", params=[files]).to_arrow_table().to_pylist()


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def test_tokens_are_word_runs():
    texts = ['A red circle, and the word "héllo".', "x-ray 3 dogs' bowls", "", None]
    got = [duckdb.sql(f"select {tokens_sql('t')} from (select ? as t)", params=[t]).fetchall()[0][0] for t in texts]
    assert got == [words(t) for t in texts] == [7, 5, 0, 0]


@pytest.mark.parametrize("round_", [0, 1])
def test_table2_matches_a_recount(report_root, round_):
    rows = curated_rows(report_root["root"], round_)
    got = {(r["type"], r["text"]): r for r in table2(report_root["root"], round_)}
    captions = [r for r in rows if r["kind"] == "caption"]
    brief = got[("text", "brief")]
    assert brief["image_annotations"] == len(captions)
    assert brief["avg_tokens"] == pytest.approx(mean(words(c["text"]) for c in captions))
    regions = [r for r in rows if r["kind"] == "region" and (r["label"] or r["text"] or "").strip()]
    phrase = got[("region-text", "phrase")]
    images = {r["image_id"] for r in regions}
    assert (phrase["regions"], phrase["image_annotations"]) == (len(regions), len(images))
    assert phrase["avg_regions_per_image"] == pytest.approx(len(regions) / len(images))
    assert phrase["avg_region_tokens"] == pytest.approx(mean(words(r["label"] or r["text"]) for r in regions))
    by_parent = collections.defaultdict(list)
    for r in rows:
        if r["kind"] == "phrase":
            by_parent[r["parent_id"]].append(r)
    grounded = [c for c in captions if by_parent[c["annotation_id"]]]
    tpr = got[("text-phrase-region", "brief")]
    n_phrases = sum(len(by_parent[c["annotation_id"]]) for c in grounded)
    assert (tpr["image_annotations"], tpr["regions"]) == (len(grounded), n_phrases) and n_phrases > 0
    assert tpr["avg_regions_per_image"] == pytest.approx(n_phrases / len(grounded))
    assert tpr["avg_region_tokens"] == pytest.approx(
        mean(words(p["text"]) for c in grounded for p in by_parent[c["annotation_id"]]))
    assert ("region-text", "brief") not in got  # no region carries a description differing from its label


def test_table3_parses_with_the_configured_pipeline(report_root):
    root = report_root["root"]
    result = table3(root, 0)  # the pipeline comes from the round's config in the rounds table
    assert result["available"] and result["pipeline"] == str(report_root["spacy"])
    nlp = load_pipeline(str(report_root["spacy"]))
    captions = [r["text"] for r in curated_rows(root, 0) if r["kind"] == "caption"]
    per_text = [doc_metrics(nlp(text)) for text in captions]
    assert result["texts"] == {"brief": len(captions)}
    for measure in FLD5B_TABLE3:
        assert result["values"][measure]["brief"] == pytest.approx(mean(m[measure] for m in per_text))
        assert result["values"][measure]["detailed"] is None
    assert result["values"]["objects"]["brief"] > 1  # every sample caption names shapes


def test_table3_without_a_pipeline_is_not_available(report_root, tmp_path):
    result = table3(report_root["root"], 0, pipeline=str(tmp_path / "no-such-pipeline"))
    assert not result["available"] and result["note"].startswith("n/a")
    assert all(v is None for values in result["values"].values() for v in values.values())
    _, grid = table3_grid(result)
    assert all(row[1] == NA and row[2] == f"{FLD5B_TABLE3[row[0].replace(' ', '_')][0]:.2f}" for row in grid)
    with Catalog(report_root["root"]) as catalog:
        saved = catalog.query("select config from rounds where round = 0")[0][0]
        catalog.con.execute("update rounds set config = null where round = 0")
        try:
            result = table3(catalog, 0)
        finally:
            catalog.con.execute("update rounds set config = ? where round = 0", [saved])
    assert not result["available"] and "no spaCy pipeline configured" in result["note"]


def test_drop_counts_add_up_to_the_decisions(report_root):
    root = report_root["root"]
    files = [str(p) for p in root.decisions(0).glob("*.parquet")]
    dropped = dict(duckdb.sql("select dropped_by, count(*) from read_parquet(?) where dropped_by is not null group by 1",
                              params=[files]).fetchall())
    drops = drop_counts(root, 0)
    totals = collections.Counter()
    for d in drops:
        totals[d["rule"]] += d["count"]
        assert not re.search(r"[0-9a-f]{16}", d["reason"])  # ids are folded into <id>
    assert dict(totals) == dropped and dropped.get("confidence", 0) > 0
    with Catalog(root) as catalog:  # the same counts as the long form's dropped rows, reason by reason
        long = catalog.query("select rule, coalesce(reason, ''), count(*) from decisions where round = 0 and not kept "
                             "group by all")
    assert sum(n for _, _, n in long) == sum(totals.values()) and {r for r, _, _ in long} == set(totals)
    assert len(long) >= len(drops)  # the patterns fold reasons together, never split one
    text = format_round_stats(round_stats(root, 0))
    assert "FLD-5B" in text and "confidence" in text and "235M" in text


def test_a_round_with_no_data_is_one_line(report_root, capsys):
    from flows.main import main

    root = report_root["root"]
    for argv in (["stats", "--root", str(root.path), "--round", "9"], ["dashboard", "--root", str(root.path), "--round", "9"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "round 9 has no annotations" in err[0] and "rounds: 0, 1" in err[0], err
