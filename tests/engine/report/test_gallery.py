"""The dashboard gallery names each image by its file (shard and key), with the id in a tooltip; it draws
the round's dropped rows with the rule and reason of their trails, and at most its cap of rows per image."""

from __future__ import annotations

import html
import re

import duckdb
import pytest

from engine.report.gallery import gallery_html
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.engine.own_images import ROUND


def test_figures_show_the_file_name_and_keep_the_id_as_a_tooltip(own_images):
    with Catalog(DataRoot(own_images["root"]), read_only=True) as catalog:
        html = gallery_html(catalog, ROUND, limit=len(own_images["keys"]))
        ids = dict(catalog.query("select key, image_id from images where status = 'ok'"))
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == len(own_images["keys"])
    for key in own_images["keys"]:
        image_id = ids[key]
        name = re.search(rf'<b class="name" title="([^"]*)">{key}</b>', html)
        assert name is not None, key
        assert image_id in name.group(1) and "photos" in name.group(1)  # the id and the folder in the tooltip
        assert image_id[:12] not in re.sub(r'title="[^"]*"', "", "".join(captions))  # no bare hash shown


def _dropped_trails(root, round_: int) -> dict[str, str]:
    """``annotation_id -> "rule: reason"`` of the round's dropped rows, from its trails' Parquet."""
    trails = f"{root.decisions(round_)}/*.parquet"
    return dict(duckdb.sql(f"select annotation_id, cast(dropped_by as varchar) || ': ' || cast(reason as varchar) "
                           f"from read_parquet('{trails}', hive_partitioning = false) where dropped_by is not null")
                .fetchall())


@pytest.mark.parametrize("round_", [0, 1])
def test_dropped_rows_are_drawn_with_their_reasons(report_root, round_):
    root = report_root["root"]
    expected = _dropped_trails(root, round_)
    with Catalog(root, read_only=True) as catalog:
        page = gallery_html(catalog, round_, limit=len(report_root["truth"]["images"]))
    rows = dict(re.findall(r'<tr class="dropped" data-row="([0-9a-f]+)"[^>]*data-kept="dropped"[^>]*>(.*?)</tr>', page))
    assert expected and set(rows) == set(expected)  # every dropped row of the round, every image sampled
    titles = dict(re.findall(r'<(?:g|path) class="(?:mark|mask) dropped" data-row="([0-9a-f]+)".*?<title>(.*?)</title>',
                             page))
    assert titles, "dropped rows with a box are drawn"
    for annotation_id, why in expected.items():
        assert f'<td class="why">{html.escape(why)}</td>' in rows[annotation_id]
        if annotation_id in titles:
            assert titles[annotation_id].endswith(f"; dropped by {html.escape(why)}")
    assert 'id="gallery-cap"' not in page


def test_the_row_cap_bounds_each_image_and_says_so(report_root):
    with Catalog(report_root["root"], read_only=True) as catalog:
        page = gallery_html(catalog, 0, limit=3, max_rows=2)
        totals = dict(catalog.query("select image_id, count(*) from curated where curated_round = 0 group by 1"))
    figures = re.findall(r'<figure class="thumb" data-image-id="([0-9a-f]+)".*?</figure>', page, re.S)
    assert len(figures) == 3
    for image_id, figure in zip(figures, re.findall(r"<figure .*?</figure>", page, re.S)):
        assert figure.count('<tr class="kept"') == min(2, totals[image_id])
        assert figure.count('<tr class="dropped"') <= 2
        assert f"{totals[image_id]} kept" in figure
    assert 'id="gallery-cap"' in page and "more rows than the 2 per image" in page


def test_a_dropped_rows_bad_geometry_never_reaches_the_svg():
    from engine.report.gallery import DRAW

    row = {"annotation_id": "a1", "kind": "region", "region_type": "object", "source": "detector", "text": "cup",
           "score": float("nan"), "drop_rule": "geometry", "drop_reason": "degenerate box"}
    inverted = DRAW["object"]({**row, "bbox": [40.0, 30.0, 10.0, 20.0]}, 64, 48, 3.0)
    assert 'x="10.0" y="20.0" width="30.0" height="10.0"' in inverted and 'data-score=""' in inverted
    assert "dropped by geometry: degenerate box" in inverted and 'stroke-dasharray="3 3"' in inverted
    for bad in ([float("nan"), 0.0, 5.0, 5.0], [0.0, 0.0, float("inf"), 5.0]):
        assert DRAW["object"]({**row, "bbox": bad}, 64, 48, 3.0) == ""
        assert DRAW["ocr"]({**row, "region_type": "ocr", "bbox": bad, "quad": bad * 2}, 64, 48, 3.0) == ""
