"""The dashboard gallery names each image by its file (shard and key), with the id in a tooltip."""

from __future__ import annotations

import re

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
