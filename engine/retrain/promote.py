"""Promotion: the new checkpoint becomes the current model when it beats the current one.

:func:`decide` is pure: with ``promote = "always"`` the new model is promoted; with
``"better"`` it is promoted when its ``promote_metric`` beats the current model's (direction
from :data:`engine.retrain.config.METRICS`: lower ``val_loss``, higher mAP / agreement),
also when the current model has no value for it; a tie keeps the current model. When the
metric has per-image values for both models (``val_loss``: each validation image's token-mean
loss; the agreement metrics: each image's F1 or recall; :func:`engine.retrain.evaluate.agreement_metrics`)
and ``promote_confidence`` > 0, "beats" is decided by evidence instead: a seeded paired
bootstrap (``promote_resamples`` resamples of the images both models were measured on, with
replacement) gives ``P(better)``, the share of resamples in which the candidate's mean is better
than the current model's (ties count half); it is promoted when ``P(better) >=
promote_confidence``. A difference of a handful of boxes or of one noisy mean no longer decides. A new model
without the metric is never promoted by ``"better"``. Whatever the mode, a model whose
``image_dependence`` is below ``min_image_dependence`` (or was not measured, while the minimum
is > 0) is refused first: its outputs do not depend on the image.

:func:`record` writes the decision into the catalog's ``models`` table (one row per round:
path, version, metrics JSON holding both models' metrics, promoted, reason) and into
``models/round=R/metrics.json``. The current model is the newest promoted row of an earlier
round (:func:`engine.retrain.train.current_model`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engine.retrain.config import METRICS, TrainingConfig
from storage.layout import DataRoot


@dataclass(frozen=True)
class Decision:
    """Whether the new checkpoint is promoted, why (one line), and the bootstrap's ``P(better)``
    when evidence decided."""

    promoted: bool
    reason: str
    p_better: float | None = None


@dataclass(frozen=True)
class Evidence:
    """Paired per-image values of one metric: ``new[i]`` and ``current[i]`` measured on the same
    image ``i``; decided at ``confidence`` over ``resamples`` resamples drawn with ``seed``."""

    metric: str
    new: tuple[float, ...]
    current: tuple[float, ...]
    confidence: float
    resamples: int = 2000
    seed: int = 0


def paired_evidence(per_image: Mapping[str, Any] | None, config: TrainingConfig) -> Evidence | None:
    """The :class:`Evidence` of ``config.promote_metric`` from an evaluation's per-image values
    (``{"new": {metric: {image: value}}, "current": {...}}``), over the images both models have
    a finite value for; None when ``promote_confidence`` is 0 or fewer than 2 images pair up."""
    if config.promote_confidence <= 0 or not per_image:
        return None
    new = (per_image.get("new") or {}).get(config.promote_metric) or {}
    current = (per_image.get("current") or {}).get(config.promote_metric) or {}
    shared = sorted(i for i in new if i in current and _value(new, i) is not None and _value(current, i) is not None)
    if len(shared) < 2:
        return None
    return Evidence(config.promote_metric, tuple(float(new[i]) for i in shared), tuple(float(current[i]) for i in shared),
                    config.promote_confidence, config.promote_resamples, config.seed)


def bootstrap_p_better(evidence: Evidence) -> float:
    """``P(better)``: the share of paired bootstrap resamples of the images in which the new
    model's mean beats the current model's (direction from ``METRICS``; a tie counts half)."""
    import numpy as np

    difference = np.asarray(evidence.new) - np.asarray(evidence.current)
    if METRICS[evidence.metric]:  # higher is better: count a positive difference as a win
        difference = -difference
    rng = np.random.default_rng(evidence.seed)
    picks = rng.integers(0, len(difference), size=(evidence.resamples, len(difference)))
    means = difference[picks].mean(axis=1)
    return float((means < 0).mean() + 0.5 * (means == 0).mean())


def _value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def blind_refusal(new: Mapping[str, Any], min_image_dependence: float) -> Decision | None:
    """The refusal of a model whose outputs do not depend on the image, or None when it passes."""
    if min_image_dependence <= 0:
        return None
    dependence = _value(new, "image_dependence")
    if dependence is None:
        return Decision(False, "the new model's image_dependence was not measured (the validation split needs "
                               "2 images or more); refused, current model kept")
    if dependence < min_image_dependence:
        return Decision(False, f"image_dependence {dependence:.3g} < min_image_dependence {min_image_dependence:g}: "
                               f"the new model ignores the image; refused, current model kept")
    return None


def decide(new: Mapping[str, Any], current: Mapping[str, Any] | None, metric: str, mode: str = "better",
           min_image_dependence: float = 0.0, evidence: Evidence | None = None) -> Decision:
    """Promotion decision for a model with metrics ``new`` over one with ``current``;
    ``evidence``: paired per-image values of ``metric`` (then the bootstrap decides "better")."""
    if metric not in METRICS:
        raise ValueError(f"unknown promote_metric {metric!r}; known: {', '.join(METRICS)}")
    if mode not in ("better", "always"):
        raise ValueError(f"promote must be 'better' or 'always', got {mode!r}")
    refusal = blind_refusal(new, min_image_dependence)
    if refusal is not None:
        return refusal
    mine, theirs = _value(new, metric), _value(current, metric)
    shown = f"{metric} {mine if mine is None else round(mine, 6)} vs current {theirs if theirs is None else round(theirs, 6)}"
    if mode == "always":
        return Decision(True, f"promote = always ({shown})")
    if mine is None:
        return Decision(False, f"the new model has no {metric}; current model kept")
    if theirs is None:
        return Decision(True, f"the current model has no {metric} ({shown})")
    higher = METRICS[metric]
    word = "higher" if higher else "lower"
    if evidence is not None and evidence.metric == metric:
        p = bootstrap_p_better(evidence)
        weighed = (f"{shown}; P({word} on another draw of the {len(evidence.new)} validation images) = {p:.3f} "
                   f"(paired bootstrap, {evidence.resamples} resamples)")
        if p >= evidence.confidence:
            return Decision(True, f"{weighed} >= {evidence.confidence:g}: better by evidence", p)
        return Decision(False, f"{weighed} < {evidence.confidence:g}: not better by evidence; current model kept", p)
    better = mine > theirs if higher else mine < theirs
    if better:
        return Decision(True, f"{shown}: {word} is better")
    return Decision(False, f"{shown}: not {word}; current model kept")


def record(root: DataRoot, round_: int, model_dir: Path, new: Mapping[str, Any], current: Mapping[str, Any] | None,
           current_path: str | None, decision: Decision, config: TrainingConfig) -> dict[str, Any]:
    """Write the decision to the catalog and ``metrics.json``; returns what was written."""
    from engine.retrain.evaluate import write_metrics
    from hf.loading import checkpoint_version
    from storage.catalog import Catalog
    from storage.schema import utc_now

    payload = {"round": round_, "metric": config.promote_metric, "mode": config.promote,
               "min_image_dependence": config.min_image_dependence,
               "new": dict(new), "current": dict(current or {}), "current_model": current_path,
               "current_version": checkpoint_version(Path(current_path)) if current_path and Path(current_path).is_dir() else None,
               "promoted": decision.promoted, "reason": decision.reason, "p_better": decision.p_better,
               "promote_confidence": config.promote_confidence}
    write_metrics(model_dir, payload)
    row = {"round": int(round_), "path": str(Path(model_dir).resolve()), "version": checkpoint_version(model_dir),
           "metrics": json.dumps(payload, sort_keys=True), "promoted": decision.promoted,
           "reason": decision.reason, "created_at": utc_now()}
    with Catalog(root) as catalog:
        catalog.upsert("models", [row])
    return payload
