"""What the demo's loop did, per round and from the first round to the last (evaluation only).

Per round: the curated object boxes against the sample's ground truth (shape recall and
precision at IoU 0.5, seed-missed boxes recovered, new boxes correct, labels corrected,
boxes refined with their IoU before and after: ``engine.report.loop_quality``), the
calibrated threshold curation applied to the model's boxes, the model's image-dependence,
and the curated captions' image-to-text R@1 and mean similarity (``engine.report.captions``),
and the model the round leaves current as an annotator on unseen scenes of the demo's style
(``engine.demo.model_quality``).
:func:`format_verdict` is the demo's last line: whether shape recall rose from the first
round to the last, by how much, and what the new boxes are worth. Ground truth is read here
and nowhere in the engine's decisions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.report.captions import caption_retrieval
from engine.report.loop_quality import loop_quality
from storage.catalog import Catalog
from storage.layout import DataRoot


def _model_facts(root: DataRoot, round_: int) -> dict[str, Any]:
    with Catalog.reading(root) as catalog:
        rows = catalog.query("select metrics from models where round = ?", [round_])
    payload = json.loads(rows[0][0] or "{}") if rows else {}
    new = payload.get("new") or {}
    summary_path = root.curated(round_) / "_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"image_dependence": new.get("image_dependence"), "score_threshold": new.get("score_threshold"),
            "calibration_reached": new.get("calibration_reached"),
            "applied_thresholds": summary.get("calibrated_thresholds") or {}}


def loop_figures(root: DataRoot, round_: int, sample_dir: Path, caption_images: int = 96,
                 models: Any = None) -> dict[str, Any]:
    """The round's loop figures (see the module docstring); ``models``: a
    :class:`engine.demo.model_quality.RoundModels` that measures the model the round leaves current."""
    boxes = loop_quality(root, round_, sample_dir / "ground_truth.json", sample_dir / "noisy_labels.json")
    captions = caption_retrieval(root, round_, max_images=caption_images)
    annotator = models.after_round(root, round_) if models is not None else None
    return {"round": round_, "boxes": boxes, "model": _model_facts(root, round_), "captions": captions,
            "annotator": annotator}


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else f"{part}/0"


def wilson_interval(part: int, whole: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``part / whole`` (default: 95%); (0, 1) when ``whole`` is 0."""
    if whole <= 0:
        return 0.0, 1.0
    p = part / whole
    centre = (p + z * z / (2 * whole)) / (1 + z * z / whole)
    half = z * ((p * (1 - p) / whole + z * z / (4 * whole * whole)) ** 0.5) / (1 + z * z / whole)
    return max(0.0, centre - half), min(1.0, centre + half)


def _share_interval(part: int, whole: int) -> str:
    """:func:`_share` with its 95% interval: a share of a few dozen boxes is known to about +-10 points."""
    if not whole:
        return _share(part, whole)
    low, high = wilson_interval(part, whole)
    return f"{_share(part, whole)[:-1]}, 95% CI {low:.0%}-{high:.0%})"


def format_loop(figures: dict[str, Any]) -> str:
    """Two lines: the boxes against ground truth; the model and the captions."""
    b, m, c = figures["boxes"], figures["model"], figures["captions"]
    refined = (f", boxes refined {b['boxes_refined']} (mean IoU with the truth {b['refined_iou_before']:.3f} -> "
               f"{b['refined_iou_after']:.3f})" if b["refined_iou_before"] is not None else ", boxes refined 0")
    boxes = (f"loop vs ground truth: shape recall {b['recall']:.3f}, precision {b['precision']:.3f}; "
             f"seed-missed boxes recovered {_share(b['recovered'], b['seed_missed'])}; "
             f"new boxes correct {_share_interval(b['new_correct'], b['new_boxes'])}; "
             f"labels corrected {b['labels_corrected']} ({b['labels_corrected_right']} right){refined}")
    applied = ", ".join(f"{s} >= {t:.3g}" for s, t in sorted(m["applied_thresholds"].items())) or "none"
    dependence = m["image_dependence"]
    model = (f"model: image-dependence {dependence:.3f}" if isinstance(dependence, (int, float)) else "model: not evaluated")
    if isinstance(m["score_threshold"], (int, float)):
        model += f", calibrated threshold {m['score_threshold']:.3g}" + ("" if m["calibration_reached"] else " (target not reached)")
    model += f"; thresholds applied in this round's curation: {applied}"
    overall = c["overall"]
    if c["available"] and overall.get("r_at_1") is not None:
        model += (f"; captions R@1 {overall['r_at_1']:.3f} (chance {overall['chance_r_at_1']:.3f}), "
                  f"mean similarity {overall['mean_similarity']:.3f}")
    elif not c["available"]:
        model += f"; captions: n/a ({c['note']})"
    a = figures.get("annotator")
    if not a:
        return boxes + "\n" + model
    annotator = (f"annotator after round {figures['round']}: {a['model']}, shape AP50 {a['shape_ap50']:.3f} "
                 f"(AP {a['shape_ap']:.3f}) on {a['images']} unseen {a['style']} scenes; the base model "
                 f"{a['base']['shape_ap50']:.3f}")
    return boxes + "\n" + model + "\n" + annotator


def format_verdict(figures: list[dict[str, Any]]) -> str:
    """The demo's last line: the gain (or not) from the first round to the last."""
    if not figures:
        return "no round ran"
    first, last = figures[0]["boxes"], figures[-1]["boxes"]
    span = f"round {figures[0]['round']} -> round {figures[-1]['round']}"
    rose = last["recall"] > first["recall"]
    head = (f"the loop raised shape recall {first['recall']:.3f} -> {last['recall']:.3f}" if rose
            else f"the loop did not raise shape recall ({first['recall']:.3f} -> {last['recall']:.3f})")
    out = (f"{head} ({span}); precision {first['precision']:.3f} -> {last['precision']:.3f}; "
           f"recovered {_share(last['recovered'], last['seed_missed'])} of the boxes the seed labels missed; "
           f"new boxes correct {_share_interval(last['new_correct'], last['new_boxes'])}")
    a = figures[-1].get("annotator")
    if a:
        gain = a["shape_ap50"] - a["base"]["shape_ap50"]
        out += (f"; the annotator model {'improved' if gain > 0 else 'did not improve'}: shape AP50 on unseen "
                f"{a['style']} scenes {a['base']['shape_ap50']:.3f} (base) -> {a['shape_ap50']:.3f} ({gain:+.3f})")
    return out
