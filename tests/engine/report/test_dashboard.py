"""The dashboard: self-contained HTML, checked in a real headless chromium (rendered DOM,
console, screenshot), the CLI and round step that write it, and ``fld serve`` on 127.0.0.1."""

from __future__ import annotations

import io
import re
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image

from engine.report.dashboard import DashboardConfig, build_dashboard
from engine.rounds.context import RoundContext
from engine.rounds.steps import dashboard_step
from storage.catalog import Catalog
from tests.engine.report.cdp import Browser, chromium_path

GEOMETRY_SQL = ("select image_id, count(*) filter (where kind = 'region' and (bbox is not null or quad is not null) "
                "or kind = 'phrase' and bbox is not null), count(*) filter (where kind = 'region' and "
                "(polygons is not null and len(polygons) > 0 or mask_rle is not null)), count(*) "
                "from curated where curated_round = ? group by image_id")


@pytest.fixture(scope="module")
def dashboard(report_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dash") / "dashboard.html"
    return build_dashboard(report_root["root"], 1, out, DashboardConfig(gallery_images=6))


def test_page_is_self_contained(dashboard):
    text = dashboard.read_text(encoding="utf-8")
    references = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert references, "the gallery embeds its thumbnails by href"
    assert all(r.startswith(("data:", "#")) for r in references), [r[:40] for r in references if not
                                                                   r.startswith("data:")]
    assert "<link" not in text and "@import" not in text and "url(" not in text


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="gallery_images"):
        DashboardConfig(gallery_images=0)


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/install_browser.sh installs it)")
def test_dashboard_renders_in_chromium(dashboard, report_root, tmp_path):
    with Catalog(report_root["root"]) as catalog:
        expected = {i: (marks, masks, rows) for i, marks, masks, rows in catalog.query(GEOMETRY_SQL, [1])}
        raw = catalog.query("select kind || coalesce(':' || coalesce(granularity, region_type), ''), "
                            "count(*) filter (where round = 0), count(*) filter (where round = 1) "
                            "from annotations group by 1 order by 1")
        drops = dict(catalog.query("select rule, count(*) from decisions where round = 1 and not kept group by 1"))
        curated = catalog.query("select count(*) from curated where curated_round = 1")[0][0]
    with Browser() as browser:
        browser.open(dashboard.as_uri())
        assert browser.errors == []
        dom = browser.evaluate("""(() => {
          const q = s => Array.from(document.querySelectorAll(s));
          return {
            sections: q('section').map(s => s.id),
            charts: q('svg.chart').length,
            raw: q('#counts table.counts')[0].querySelectorAll('tbody tr').length &&
                 q('#counts table.counts')[0].innerText.trim().split('\\n').slice(1).map(l => l.split('\\t')),
            histograms: q('#scores svg.chart[data-chart=histogram]').length,
            drops: Object.fromEntries(q('#drops svg.chart rect.bar').map(r => [r.dataset.label, +r.dataset.value])),
            table2: q('#table2 table tbody tr').map(tr => tr.cells[2].textContent),
            heat: q('#agreement rect.cell').length,
            model: document.getElementById('model-vs-specialists').textContent,
            lines: q('#models circle.point').map(c => [c.dataset.label, +c.dataset.x, +c.dataset.value]),
            figures: q('figure.thumb').map(f => ({id: f.dataset.imageId,  // dropped rows are hidden until asked for
              marks: Array.from(f.querySelectorAll('.box, .quad, .phrase')).filter(e => e.getClientRects().length > 0).length,
              masks: Array.from(f.querySelectorAll('path.mask')).filter(e => e.getClientRects().length > 0).length,
              w: f.querySelector('svg.overlay').getBoundingClientRect().width,
              loaded: f.querySelector('image').getBBox().width > 0})),
          };
        })()""")
        assert dom["sections"] == ["counts", "table2", "table3", "captions", "scores", "drops", "agreement", "models", "review",
                               "gallery"]
        assert dom["charts"] >= 6
        assert dom["histograms"] >= 2  # round 0: ocr and grounder scores
        assert {k: v for k, v in dom["drops"].items() if v} == drops
        assert "FLD-5B" in dom["table2"] and "ours" in dom["table2"]
        assert dom["heat"] >= 9  # a source x source matrix of at least 3 sources
        assert f"specialist rows: {curated}," in dom["model"]  # no florence2 rows in these rounds
        assert ["val_loss", 0, 2.5] in dom["lines"] and ["val_loss", 1, 1.75] in dom["lines"]
        assert dom["raw"] == [[t, str(r0), str(r1)] for t, r0, r1 in raw]
        assert len(dom["figures"]) == 6
        for figure in dom["figures"]:
            marks, masks, _ = expected[figure["id"]]
            assert (figure["marks"], figure["masks"]) == (marks, masks)
            assert figure["w"] > 100 and figure["loaded"]
        assert sum(f["masks"] for f in dom["figures"]) > 0
        # a click on an image shows its rows; a click on a mark highlights its row
        clicked = browser.evaluate("""(() => {
          const f = document.querySelectorAll('figure.thumb')[1];
          f.querySelector('.box, .quad, .phrase').dispatchEvent(new MouseEvent('click', {bubbles: true}));
          const panel = document.getElementById('rows-panel');
          return {id: panel.dataset.imageId, rows: panel.querySelectorAll('tbody tr:not(.off)').length,
                  hit: panel.querySelectorAll('tr.hit').length, figure: f.dataset.imageId};
        })()""")
        assert clicked["id"] == clicked["figure"]
        assert clicked["rows"] == expected[clicked["figure"]][2] and clicked["hit"] == 1
        boxes = browser.evaluate("""(() => Object.fromEntries(['counts', 'gallery'].map(id => {
          const r = document.getElementById(id).getBoundingClientRect();
          return [id, [r.left + scrollX, r.top + scrollY, r.width, r.height]]; })))()""")
        png = browser.screenshot()
        assert browser.errors == []
    (tmp_path / "dashboard.png").write_bytes(png)
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    for section, (x, y, w, h) in boxes.items():
        assert y + h <= shot.shape[0] + 1, f"{section} is outside the screenshot"
        crop = shot[int(y):int(y + h), int(x):int(x + w)]
        assert crop.std() > 10, f"{section} renders blank"
    x, y, w, h = boxes["counts"]  # the bars of the counts chart are drawn in the first palette colour
    crop = shot[int(y):int(y + h), int(x):int(x + w)]
    assert (np.abs(crop - [0x4E, 0x79, 0xA7]).sum(axis=2) < 12).sum() > 200


def test_cli_and_round_step_write_the_report(report_root, capsys):
    import engine.commands.dashboard  # noqa: F401  (registers dashboard and serve)
    from engine import cli

    root = report_root["root"]
    out = root.path / "cli-dashboard.html"
    assert cli.main(["dashboard", "--root", str(root.path), "--round", "1", "--out", str(out), "--gallery", "2",
                     "--gallery-rows", "1"]) == 0
    page = out.read_text()
    assert page.count('<figure class="thumb"') == 2 and page.count('<tr class="kept"') == 2  # one row each
    assert 'id="gallery-cap"' in page
    assert cli.main(["dashboard", "--root", str(root.path), "--round", "1", "--out", str(out), "--gallery-rows", "0"]) == 2
    assert "gallery_rows must be an integer >= 1" in capsys.readouterr().err
    assert cli.main(["dashboard", "--root", str(root.path / "nowhere")]) == 2
    assert "no catalog" in capsys.readouterr().err
    summary = dashboard_step(RoundContext(root=root, round=1, config=None, progress=False))
    assert summary["path"] == str(root.report(1)) and root.report(1).exists()


def test_serve_binds_localhost_and_serves_latest(report_root):
    from engine.commands.dashboard import make_server

    root = report_root["root"]
    build_dashboard(root, 0, config=DashboardConfig(gallery_images=1))
    build_dashboard(root, 1, config=DashboardConfig(gallery_images=1))
    server = make_server(root, 0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        index = urllib.request.urlopen(base + "/").read().decode()
        assert index.index("round=1/dashboard.html") < index.index("round=0/dashboard.html")
        latest = urllib.request.urlopen(base + "/latest").read()
        assert latest == root.report(1).read_bytes()
        assert urllib.request.urlopen(base + "/round=0/dashboard.html").read() == root.report(0).read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_folders_links_out_and_malformed_paths(report_root, tmp_path, capsys):
    import http.client
    import socket

    from engine.commands.dashboard import make_server
    from flows.main import main

    root = report_root["root"]
    build_dashboard(root, 0, config=DashboardConfig(gallery_images=1))
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (root.path / "reports" / "leak.txt").symlink_to(secret)
    (root.path / "reports" / "inner.html").symlink_to(root.report(0))  # a link inside reports/ is fine
    server = make_server(root, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]

    def status(path: str, method: str = "GET") -> int:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        con.putrequest(method, path, skip_accept_encoding=True)
        con.endheaders()
        code = con.getresponse().status
        con.close()
        return code

    try:
        assert status("/round=0/dashboard.html") == 200 and status("/inner.html") == 200
        assert status("/round=0/dashboard.html", "HEAD") == 200
        assert status("/leak.txt") == 404 and status("/leak.txt", "HEAD") == 404
        assert status("/round=0/") == 404 and status("/round=0") == 404  # no listing
        assert status("/../../etc/passwd") == 404 and status("/%2e%2e/%2e%2e/etc/passwd") == 404
        assert status("/a%00b") == 400 and status("/%ff") == 400
        assert status("/") == 200  # still serving after all that
    finally:
        server.shutdown()
        server.server_close()
    # a busy port: one line
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert main(["serve", "--root", str(root.path), "--port", str(busy.getsockname()[1])]) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is busy" in err[0]
