"""The gallery's filters and dropped rows, in a real headless chromium: every control hides exactly
the marks and rows the root's Parquet files (read here with DuckDB, not through the catalog) say
fail it, and a dropped row shows the rule and reason its decision trail records."""

from __future__ import annotations

import json
from collections import Counter

import duckdb
import pytest

from engine.report.dashboard import DashboardConfig, build_dashboard
from tests.engine.report.cdp import Browser, chromium_path

ROUND = 0  # round 0 drops grounder boxes and phrases (confidence, cross-source NMS) and keeps four sources
MARKS = ".box, .quad, .phrase"

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (scripts/install_browser.sh installs it)")


def parquet_rows(root, round_: int) -> dict[str, dict]:
    """Every row the gallery of ``round_`` can hold, by id: the curated set (kept) and the raw rows
    the trails drop, with ``image``, ``source``, ``label``, ``score``, ``kept``, ``drawn`` (has a
    box, quad or phrase box) and ``why`` (``rule: reason``, dropped rows only)."""
    curated, trails = f"{root.curated(round_)}/*.parquet", f"{root.decisions(round_)}/*.parquet"
    raw = f"{root.annotations(round_)}/*/*.parquet"
    drawn = "(kind = 'region' and (bbox is not null or quad is not null) or kind = 'phrase' and bbox is not null)"
    rows = duckdb.sql(f"""
        select annotation_id, image_id, source, coalesce(label, text, ''), score, true, {drawn}, null
        from read_parquet('{curated}', hive_partitioning = false)
        union all
        select a.annotation_id, a.image_id, a.source, coalesce(a.text, ''), a.score, false, {drawn},
               cast(t.dropped_by as varchar) || ': ' || cast(t.reason as varchar)
        from read_parquet('{raw}', hive_partitioning = false) a
        join read_parquet('{trails}', hive_partitioning = false) t using (annotation_id) where t.dropped_by is not null""").fetchall()
    keys = ("id", "image", "source", "label", "score", "kept", "drawn", "why")
    return {r[0]: dict(zip(keys, r)) for r in rows}


def set_filters(browser: Browser, **values: str) -> None:
    """Set controls by id (``filter_kept="all"`` sets ``#filter-kept``) as a user's input does."""
    browser.evaluate(f"""(() => {{
      for (const [id, value] of Object.entries({json.dumps({k.replace('_', '-'): v for k, v in values.items()})})) {{
        const el = document.getElementById(id);
        el.value = value;
        el.dispatchEvent(new Event('input', {{bubbles: true}}));
      }} }})()""")


def visible(browser: Browser) -> dict:
    """Per figure: the ids of the drawn marks a user sees; and the bar's count line."""
    return browser.evaluate(f"""(() => ({{
      figures: Object.fromEntries(Array.from(document.querySelectorAll('figure.thumb')).map(f => [f.dataset.imageId,
        Array.from(f.querySelectorAll('{MARKS}')).filter(e => e.getClientRects().length > 0)
             .map(e => e.closest('[data-row]').dataset.row).sort()])),
      shown: document.getElementById('filter-shown').textContent,
      dashed: Array.from(document.querySelectorAll('figure.thumb .dropped')).filter(e => e.getClientRects().length > 0)
        .every(e => e.querySelector('[stroke-dasharray]') || e.getAttribute('stroke-dasharray')),
    }}))()""")


def expect(rows: dict[str, dict], images: list[str], keep) -> dict[str, list[str]]:
    return {i: sorted(r["id"] for r in rows.values() if r["image"] == i and r["drawn"] and keep(r)) for i in images}


@pytest.fixture(scope="module")
def page(report_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("filters") / "dashboard.html"
    images = len(report_root["truth"]["images"])
    return build_dashboard(report_root["root"], ROUND, out, DashboardConfig(gallery_images=images, caption_images=0))


def test_each_filter_shows_what_the_parquet_says(page, report_root):
    rows = parquet_rows(report_root["root"], ROUND)
    with Browser() as browser:
        browser.open(page.as_uri())
        assert browser.errors == []
        images = list(visible(browser)["figures"])
        assert len(images) == len(report_root["truth"]["images"])
        on_page = [r for r in rows.values() if r["image"] in images]
        dropped = [r for r in on_page if not r["kept"] and r["drawn"]]
        assert dropped and any(r["kept"] for r in on_page), "the round must keep and drop drawable rows"

        seen = visible(browser)  # default: kept rows only, dropped ones hidden
        assert seen["figures"] == expect(rows, images, lambda r: r["kept"])
        assert seen["shown"] == f"{sum(r['kept'] for r in on_page)} of {len(on_page)} rows shown"

        set_filters(browser, filter_kept="dropped")
        seen = visible(browser)
        assert seen["figures"] == expect(rows, images, lambda r: not r["kept"])
        assert seen["shown"] == f"{sum(not r['kept'] for r in on_page)} of {len(on_page)} rows shown"
        assert seen["dashed"]  # dropped marks are drawn dashed

        source, _ = Counter(r["source"] for r in dropped).most_common(1)[0]
        set_filters(browser, filter_kept="all", filter_source=source)
        assert visible(browser)["figures"] == expect(rows, images, lambda r: r["source"] == source)

        set_filters(browser, filter_source="", filter_score="0.5")  # the slider; its number follows
        assert browser.evaluate("document.getElementById('filter-score-number').value") == "0.5"
        assert visible(browser)["figures"] == expect(rows, images, lambda r: r["score"] is not None and r["score"] >= 0.5)

        label, _ = Counter(r["label"] for r in on_page if r["drawn"] and r["kept"]).most_common(1)[0]
        set_filters(browser, filter_score="0", filter_label=label.upper())  # contains, case-insensitive
        assert visible(browser)["figures"] == expect(rows, images, lambda r: label.lower() in r["label"].lower())

        # a click shows the image's rows as filtered: dropped ones with the trail's rule and reason
        set_filters(browser, filter_label="", filter_kept="dropped")
        image = max(images, key=lambda i: sum(r["image"] == i and not r["kept"] for r in on_page))
        panel = browser.evaluate(f"""(() => {{
          document.querySelector('figure.thumb[data-image-id="{image}"]').dispatchEvent(new MouseEvent('click'));
          return Array.from(document.querySelectorAll('#rows-panel tbody tr')).filter(tr => tr.getClientRects().length)
            .map(tr => [tr.dataset.row, tr.querySelector('td.why').textContent]);
        }})()""")
        assert sorted(map(tuple, panel)) == sorted((r["id"], r["why"]) for r in on_page if r["image"] == image and not r["kept"])
        assert browser.errors == []
