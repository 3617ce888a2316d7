"""The gallery's filters: a bar of controls and the page's one inline script (no external resources).

Every drawn mark (``g.mark``, ``path.mask``) and every row of the per-image tables carries
``data-source``, ``data-label`` (the class label, else the text, cut to 200 characters),
``data-kept`` (``kept`` or ``dropped``) and ``data-score`` (the row's stored score, usually in
[0, 1]: a curated row's may be curation's prior for a source that gives none; empty when null).
The controls (ids ``filter-source``, ``filter-label``, ``filter-kept``, ``filter-score`` /
``filter-score-number``) hide, client-side, every element that fails one of them:

* source: equal to the chosen source (empty: any);
* label: the label contains the typed text, case-insensitively (empty: any);
* kept: ``kept`` (the default, so dropped rows are hidden until asked for), ``dropped`` or ``all``;
* minimum score: score >= the minimum; rows without a score are hidden once the minimum is above 0.

A hidden element gets the class ``off`` (``display: none``). Each figure's ``.shown`` counter and
the bar's ``#filter-shown`` say how many of the rows pass. The same script shows an image's rows
in the rows panel on a click and highlights the clicked mark's row (the former gallery script).
"""

from __future__ import annotations

from typing import Any

from engine.report.charts import esc

LABEL_CHARS = 200
MAX_LABEL_OPTIONS = 300

FILTER_CSS = """
#gallery-filters{display:flex;flex-wrap:wrap;gap:14px;align-items:center;font-size:13px;margin:.5em 0;
padding:6px;background:#f6f6f6}.off{display:none}tr.dropped td{color:#a33}td.why{max-width:320px}
"""

GALLERY_SCRIPT = """
(function () {
  var bar = document.getElementById('gallery-filters');
  var get = function (id) { return document.getElementById(id); };
  function passes(d) {
    if (!bar) return true;
    var source = get('filter-source').value, kept = get('filter-kept').value;
    var label = get('filter-label').value.trim().toLowerCase();
    var min = parseFloat(get('filter-score-number').value) || 0;
    if (source && d.source !== source) return false;
    if (kept !== 'all' && d.kept !== kept) return false;
    if (label && (d.label || '').toLowerCase().indexOf(label) < 0) return false;
    if (min > 0 && (d.score === '' || !(parseFloat(d.score) >= min))) return false;
    return true;
  }
  function apply() {
    var shown = 0, total = 0;
    document.querySelectorAll('figure.thumb').forEach(function (figure) {
      figure.querySelectorAll('svg [data-kept]').forEach(function (el) {
        el.classList.toggle('off', !passes(el.dataset));
      });
      var rows = figure.querySelector('template.rows').content.querySelectorAll('tr[data-kept]');
      var n = 0;
      rows.forEach(function (tr) { var ok = passes(tr.dataset); tr.classList.toggle('off', !ok); if (ok) n++; });
      figure.querySelector('.shown').textContent = n + ' of ' + rows.length;
      shown += n; total += rows.length;
    });
    document.querySelectorAll('#rows-panel tr[data-kept]').forEach(function (tr) {
      tr.classList.toggle('off', !passes(tr.dataset));
    });
    if (bar) get('filter-shown').textContent = shown + ' of ' + total + ' rows shown';
  }
  if (bar) {
    var range = get('filter-score'), number = get('filter-score-number');
    range.addEventListener('input', function () { number.value = range.value; apply(); });
    number.addEventListener('input', function () { range.value = number.value; apply(); });
    ['filter-source', 'filter-kept', 'filter-label'].forEach(function (id) {
      get(id).addEventListener('input', apply);
      get(id).addEventListener('change', apply);
    });
  }
  document.querySelectorAll('figure.thumb').forEach(function (figure) {
    figure.addEventListener('click', function (event) {
      var panel = document.getElementById('rows-panel');
      panel.innerHTML = '';
      panel.appendChild(figure.querySelector('template.rows').content.cloneNode(true));
      panel.dataset.imageId = figure.dataset.imageId;
      document.querySelectorAll('figure.thumb.selected').forEach(function (f) { f.classList.remove('selected'); });
      figure.classList.add('selected');
      var mark = event.target.closest('[data-row]');
      if (mark) {
        var row = panel.querySelector('tr[data-row="' + mark.dataset.row + '"]');
        if (row) { row.classList.add('hit'); row.scrollIntoView({block: 'nearest'}); }
      }
      apply();
    });
  });
  apply();
})();
"""


def row_label(row: dict[str, Any]) -> str:
    """The label a row is filtered by: its class label, else its text (cut)."""
    return (row.get("label") or row.get("text") or "")[:LABEL_CHARS]


def data_attributes(row: dict[str, Any], kept: bool) -> str:
    """The ``data-*`` attributes (with a leading space) the filters read."""
    score = row.get("score")
    value = f"{score:.4g}" if isinstance(score, (int, float)) and score == score else ""
    return (f' data-source="{esc(row.get("source") or "")}" data-label="{esc(row_label(row))}" '
            f'data-kept="{"kept" if kept else "dropped"}" data-score="{value}"')


def filter_bar(rows: list[dict[str, Any]], kept: int, dropped: int, capped: bool, cap: int) -> str:
    """The controls over the gallery's drawn ``rows``; ``kept`` / ``dropped``: rows drawn of each
    status; ``capped``: whether some image had more than ``cap`` rows of a status."""
    sources = sorted({r.get("source") or "" for r in rows})
    labels = sorted({row_label(r) for r in rows if r.get("label") or (r.get("text") and len(r["text"]) <= 40)})
    options = "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in sources)
    choices = "".join(f'<option value="{esc(label)}"></option>' for label in labels[:MAX_LABEL_OPTIONS])
    note = (f'<p class="note" id="gallery-cap">Some images have more rows than the {cap} per image and status the '
            'gallery draws: the rows without a score and the highest-scored are drawn (see each image\'s count).</p>'
            if capped else "")
    return (f'<div id="gallery-filters"><label>source <select id="filter-source"><option value="">any</option>'
            f'{options}</select></label>'
            '<label>label <input id="filter-label" type="search" list="filter-labels" placeholder="contains"></label>'
            f'<datalist id="filter-labels">{choices}</datalist>'
            '<label>rows <select id="filter-kept"><option value="kept" selected>kept</option>'
            '<option value="dropped">dropped</option><option value="all">all</option></select></label>'
            '<label>min score <input id="filter-score" type="range" min="0" max="1" step="0.01" value="0">'
            '<input id="filter-score-number" type="number" min="0" max="1" step="0.01" value="0"></label>'
            '<span id="filter-shown"></span></div>'
            f'<p class="note">{kept} kept and {dropped} dropped rows drawn; dropped rows are hidden until "rows" is '
            'dropped or all, then drawn dashed in red with the rule and reason in their tooltip and table row. Rows '
            f'without a score are hidden when the minimum score is above 0.</p>{note}')
