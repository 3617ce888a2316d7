"""The data-quality dashboard of a round: one self-contained HTML page (no CDN, works offline).

Sections (ids in the page): ``counts`` (raw and curated rows per annotation type and round),
``table2`` / ``table3`` (the paper's statistics per round beside FLD-5B, from
:mod:`engine.report.stats`), ``captions`` (image-to-text R@1 and mean image-text similarity of
the round's curated captions, from :mod:`engine.report.captions`), ``scores`` (score histograms per source and round up to R; scores
are clipped into ``[0, 1]``), ``drops`` (rows judged and dropped per rule, and the reasons),
``agreement`` (curated rows per agreement level; a source x source matrix of curated rows
seen by both, from ``seen_by``; the model (``florence2``) versus the specialists), ``models``
(each recorded model's numeric metrics over rounds), ``review`` (the review queue and what
people corrected, from :mod:`engine.report.review`) and ``gallery``
(:mod:`engine.report.gallery`: kept and dropped rows of sampled images). Charts are inline SVG
(:mod:`engine.report.charts`); the page's only script is the gallery's filters and click handler
(:mod:`engine.report.gallery_filter`). The data behind it is embedded as JSON in
``<script type="application/json" id="dashboard-data">``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dataset.curated import MODEL_SOURCES
from engine.report import charts
from engine.report.captions import caption_retrieval, retrieval_grid
from engine.report.gallery import DEFAULT_ROW_CAP, gallery_html
from engine.report.gallery_filter import FILTER_CSS, GALLERY_SCRIPT
from engine.report.review import VERDICTS, review_data
from engine.report.stats import open_catalog, require_round, round_stats, table2_grid, table3_grid
from storage.atomic import write_text_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot

TYPE_SQL = "kind || coalesce(':' || coalesce(granularity, region_type), '')"
CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:12px}.empty{color:#888;font-style:italic}
.gallery{display:flex;flex-wrap:wrap;gap:10px}figure.thumb{margin:0;width:260px;cursor:pointer;border:2px solid #eee}
figure.thumb.selected{border-color:#4e79a7}figure.thumb figcaption{font-size:11px}
#rows-panel{max-height:420px;overflow:auto}tr.hit{background:#ffef9f}.note{color:#555;font-size:12px}
""" + FILTER_CSS


@dataclass(frozen=True)
class DashboardConfig:
    """``gallery_images``: images in the gallery; ``gallery_rows``: rows drawn per gallery image,
    kept and dropped each; ``thumb_side``: longest thumbnail side, pixels;
    ``score_bins``: bins of the score histograms over [0, 1]; ``pipeline``: spaCy pipeline for
    Table 3 (None: the round's configured one); ``table3_max_texts``: captions parsed per granularity;
    ``caption_images``: images sampled for the caption retrieval figures (0: none computed)."""

    gallery_images: int = 12
    gallery_rows: int = DEFAULT_ROW_CAP
    thumb_side: int = 384
    score_bins: int = 10
    pipeline: str | None = None
    table3_max_texts: int = 2000
    caption_images: int = 200

    def __post_init__(self) -> None:
        for name in ("gallery_images", "gallery_rows", "thumb_side", "score_bins", "table3_max_texts", "caption_images"):
            value, low = getattr(self, name), 0 if name == "caption_images" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"dashboard {name} must be an integer >= {low}, got {value!r}")


def latest_round(catalog: Catalog) -> int | None:
    """The highest round with curated rows, else with raw annotations, else None."""
    for sql in ("select max(curated_round) from curated", "select max(round) from annotations"):
        value = catalog.query(sql)[0][0]
        if value is not None:
            return int(value)
    return None


def _model_metrics(metrics: str | None) -> dict[str, float]:
    data = json.loads(metrics or "{}")
    data = data.get("new", data) if isinstance(data.get("new"), dict) else data
    return {k: float(v) for k, v in sorted(data.items()) if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _agreement(catalog: Catalog, round_: int) -> dict[str, Any]:
    base = (f"with s as (select annotation_id, list_distinct(list_transform(seen_by, lambda x: split_part(x, '@', 1))) "
            f"as srcs from curated where curated_round = {int(round_)}), "
            f"u as (select annotation_id, unnest(srcs) as src from s) ")
    pairs = catalog.query(base + "select a.src, b.src, count(*) from u a join u b using (annotation_id) group by all")
    sources = sorted({a for a, _, _ in pairs})
    counts = {(a, b): int(n) for a, b, n in pairs}
    model = ", ".join(f"'{m}'" for m in MODEL_SOURCES)
    both = catalog.query(base + f"""select count(*) filter (where m), count(*) filter (where m and sp),
        count(*) filter (where sp), count(*) filter (where sp and m) from (select
        len(list_filter(srcs, lambda x: x in ({model}))) > 0 as m,
        len(list_filter(srcs, lambda x: x not in ({model}))) > 0 as sp from s)""")[0]
    levels = catalog.query("select agreement, count(*) from curated where curated_round = ? group by 1 order by 1",
                           [int(round_)])
    return {"sources": sources, "matrix": [[counts.get((a, b), 0) for b in sources] for a in sources],
            "levels": [(int(a), int(n)) for a, n in levels],
            "model_rows": int(both[0]), "model_rows_confirmed": int(both[1]),
            "specialist_rows": int(both[2]), "specialist_rows_confirmed_by_model": int(both[3])}


def dashboard_data(catalog: Catalog, round_: int, config: DashboardConfig = DashboardConfig()) -> dict[str, Any]:
    """Everything the page shows except the gallery, JSON-ready."""
    r = int(round_)
    raw = catalog.query(f"select round, {TYPE_SQL} as t, count(*) from annotations where round <= ? group by all "
                        "order by all", [r])
    curated = catalog.query(f"select curated_round, {TYPE_SQL} as t, count(*) from curated where curated_round <= ? "
                            "group by all order by all", [r])
    bins = config.score_bins
    scores = catalog.query(
        f"select round, source, cast(least(greatest(floor(score * {bins}), 0), {bins - 1}) as integer) as b, "
        "count(*) from annotations where round <= ? and score is not null and isfinite(score) group by all "
        "order by all", [r])
    histograms: dict[str, list[int]] = {}
    for round_of, source, b, n in scores:
        histograms.setdefault(f"round {round_of}: {source}", [0] * bins)[b] = int(n)
    judged = catalog.query("select rule, count(*), count(*) filter (where not kept) from decisions where round = ? "
                           "group by rule order by 3 desc, rule", [r])
    stats_rounds = [int(x[0]) for x in catalog.query(
        "select distinct curated_round from curated where curated_round <= ? order by 1", [r])]
    stats = {str(x): round_stats(catalog, x, config.pipeline) for x in stats_rounds}
    models = [{"round": int(m[0]), "version": m[1], "promoted": m[3], "reason": m[4], "metrics": _model_metrics(m[2])}
              for m in catalog.query("select round, version, metrics, promoted, reason from models where round <= ? "
                                     "order by round", [r])]
    return {
        "round": r,
        "images_ok": int(catalog.query("select count(distinct image_id) from images where status = 'ok'")[0][0]),
        "raw_counts": [(int(a), t, int(n)) for a, t, n in raw],
        "curated_counts": [(int(a), t, int(n)) for a, t, n in curated],
        "score_histograms": histograms,
        "rules": [{"rule": rule, "judged": int(n), "dropped": int(d)} for rule, n, d in judged],
        "stats": stats,
        "agreement": _agreement(catalog, r),
        "models": models,
        "review": review_data(catalog, r),
        "captions": caption_retrieval(catalog, r, config.caption_images) if config.caption_images else
        {"available": False, "note": "not computed (dashboard caption_images = 0)"},
    }


# --------------------------------------------------------------------------- render
def _table(headers: list[str], grid: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in grid)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _counts_section(data: dict[str, Any]) -> str:
    parts = []
    for title, counts in (("raw annotations", data["raw_counts"]), ("curated set", data["curated_counts"])):
        rounds = sorted({a for a, _, _ in counts})
        types = sorted({t for _, t, _ in counts})
        lookup = {(a, t): n for a, t, n in counts}
        series = {f"round {a}": [lookup.get((a, t), 0) for t in types] for a in rounds}
        parts.append(f"<h3>{title}</h3>" + charts.grouped_bars(types, series, f"{title} per type and round"))
        parts.append(_table(["type"] + [f"round {a}" for a in rounds],
                            [[t] + [lookup.get((a, t), 0) for a in rounds] for t in types], "counts"))
    return "".join(parts)


def _stats_sections(data: dict[str, Any]) -> tuple[str, str]:
    t2, t3 = [], []
    for round_, stats in data["stats"].items():
        t2.append(f"<h3>round {round_}</h3>" + (_table(*table2_grid(stats["table2"]), "table2") if stats["table2"]
                                                  else charts.empty_note("no curated rows")))
        t3.append(f'<h3>round {round_}</h3><p class="note">{html.escape(stats["table3"]["note"])}; captions parsed: '
                  f'{html.escape(json.dumps(stats["table3"]["texts"]))}</p>' + _table(*table3_grid(stats["table3"]),
                                                                                        "table3"))
    note = ('<p class="note">Curated set of each round beside the FLD-5B figures (Florence-2 paper). Tokens are word '
            'tokens: runs of letters and digits, split at whitespace and punctuation.</p>')
    return note + ("".join(t2) or charts.empty_note("no curated rounds")), "".join(t3) or charts.empty_note("none")


def _drops_section(data: dict[str, Any]) -> str:
    stats = data["stats"].get(str(data["round"]), {})
    rules = data["rules"]
    return (charts.hbar_chart([(r["rule"], r["dropped"]) for r in rules], "rows dropped per rule", color="#e15759")
            + _table(["rule", "judged", "dropped"], [[r["rule"], r["judged"], r["dropped"]] for r in rules], "rules")
            + _table(["rule", "reason", "count"], [[d["rule"], d["reason"], d["count"]] for d in stats.get("drops", [])],
                     "reasons"))


def _agreement_section(data: dict[str, Any]) -> str:
    a = data["agreement"]
    model = (f"model ({', '.join(MODEL_SOURCES)}) rows: {a['model_rows']}, of which {a['model_rows_confirmed']} also "
             f"seen by a specialist; specialist rows: {a['specialist_rows']}, of which "
             f"{a['specialist_rows_confirmed_by_model']} also seen by the model")
    return ('<div class="charts">'
            + charts.hbar_chart([(f"agreement {lvl}", n) for lvl, n in a["levels"]], "curated rows per agreement",
                                width=420)
            + charts.heatmap(a["sources"], a["matrix"], "curated rows seen by both sources") + "</div>"
            + f'<p class="note" id="model-vs-specialists">{html.escape(model)}</p>')


def _captions_section(data: dict[str, Any]) -> str:
    result = data["captions"]
    note = f'<p class="note" id="caption-retrieval-note">{html.escape(result["note"])}</p>'
    return note + (_table(*retrieval_grid(result), "retrieval") if result["available"] else "")


def _models_section(data: dict[str, Any]) -> str:
    models = data["models"]
    if not models:
        return charts.empty_note("no model recorded yet")
    names = sorted({k for m in models for k in m["metrics"]})
    lines = "".join(charts.line_chart({n: [(m["round"], m["metrics"][n]) for m in models if n in m["metrics"]]}, n)
                    for n in names)
    grid = [[m["round"], m["version"], m["promoted"], m["reason"]] + [m["metrics"].get(n, "") for n in names]
            for m in models]
    return f'<div class="charts">{lines}</div>' + _table(["round", "version", "promoted", "reason"] + names, grid,
                                                          "models")


def _review_section(data: dict[str, Any], round_: int) -> str:
    parts = []
    if data["queue"]:
        parts.append(f'<h3>review queue ({data["queue_images"]} images; `fld review export --round {round_}` '
                     'writes them for Label Studio)</h3>')
        parts.append(_table(["rank", "image", "priority", "why"],
                            [[q["rank"], q["image_id"][:12], f"{q['priority']:.1f}", "; ".join(q["reasons"][:4])]
                             for q in data["queue"]], "review-queue"))
    else:
        parts.append(f'<p class="empty">no review queue for this round (`fld review plan --round {round_} --budget N`)</p>')
    if data["people"]:
        parts.append("<h3>rows people reviewed, by the round that applied them</h3>")
        parts.append(_table(["round", *VERDICTS], [[p["round"], *(p[v] for v in VERDICTS)] for p in data["people"]],
                            "review-people"))
        parts.append("<h3>agreement of each source with people</h3>")
        parts.append(_table(["source", "rows shown", "kept unchanged", "agreement"],
                            [[a["source"], a["shown"], a["kept"], a["agreement"]] for a in data["agreement"]],
                            "review-agreement"))
    else:
        parts.append('<p class="empty">no review imported yet (`fld review import`)</p>')
    return "".join(parts)


def render_page(data: dict[str, Any], gallery: str) -> str:
    """The whole HTML document of :func:`dashboard_data` plus the gallery's HTML."""
    t2, t3 = _stats_sections(data)
    scores = "".join(charts.histogram(counts, [i / len(counts) for i in range(len(counts) + 1)], source)
                     for source, counts in sorted(data["score_histograms"].items()))
    sections = [("counts", "Annotations per type and round", _counts_section(data)),
                ("table2", "Table 2: annotation statistics", t2),
                ("table3", "Table 3: semantic statistics of captions", t3),
                ("captions", f"Image-text retrieval of curated captions, round {data['round']}", _captions_section(data)),
                ("scores", "Scores per source and round (clipped into [0, 1])",
                 f'<div class="charts">{scores}</div>' if scores else charts.empty_note("no scored annotations")),
                ("drops", f"Drops per rule, round {data['round']}", _drops_section(data)),
                ("agreement", f"Agreement, round {data['round']}", _agreement_section(data)),
                ("models", "Model metrics over rounds", _models_section(data)),
                ("review", f"People in the loop, round {data['round']}", _review_section(data["review"], data["round"])),
                ("gallery", f"Gallery, round {data['round']}", gallery)]
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    payload = json.dumps(data, sort_keys=True, default=str).replace("</", "<\\/")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fld dashboard, round {data["round"]}'
            f'</title><style>{CSS}</style></head><body><h1>fld data-quality dashboard: round {data["round"]}</h1>'
            f'<p class="note">{data["images_ok"]} images ingested (ok)</p>{body}'
            f'<script type="application/json" id="dashboard-data">{payload}</script>'
            f"<script>{GALLERY_SCRIPT}</script></body></html>")


def build_dashboard(root: DataRoot | str | Path, round_: int | None = None, out: str | Path | None = None,
                    config: DashboardConfig = DashboardConfig()) -> Path:
    """Write the dashboard of ``round_`` (default: the latest) to ``out`` (default
    ``ROOT/reports/round=R/dashboard.html``) atomically; returns the path."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root))
    with open_catalog(root) as catalog:
        round_ = latest_round(catalog) if round_ is None else int(round_)
        if round_ is None:
            raise ValueError(f"{root.path} has no annotations yet; run `fld annotate` first")
        require_round(catalog, round_)
        data = dashboard_data(catalog, round_, config)
        gallery = gallery_html(catalog, round_, config.gallery_images, config.thumb_side, config.gallery_rows)
    return write_text_atomic(render_page(data, gallery), out or root.report(round_))
