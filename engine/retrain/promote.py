"""Promotion: the new checkpoint becomes the current model when it beats the current one.

:func:`decide` is pure: with ``promote = "always"`` the new model is promoted; with
``"better"`` it is promoted when its ``promote_metric`` beats the current model's (direction
from :data:`engine.retrain.config.METRICS`: lower ``val_loss``, higher mAP / agreement),
also when the current model has no value for it; a tie keeps the current model. A new model
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
    """Whether the new checkpoint is promoted, and why (one line)."""

    promoted: bool
    reason: str


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
           min_image_dependence: float = 0.0) -> Decision:
    """Promotion decision for a model with metrics ``new`` over one with ``current``."""
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
    better = mine > theirs if higher else mine < theirs
    word = "higher" if higher else "lower"
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
               "promoted": decision.promoted, "reason": decision.reason}
    write_metrics(model_dir, payload)
    row = {"round": int(round_), "path": str(Path(model_dir).resolve()), "version": checkpoint_version(model_dir),
           "metrics": json.dumps(payload, sort_keys=True), "promoted": decision.promoted,
           "reason": decision.reason, "created_at": utc_now()}
    with Catalog(root) as catalog:
        catalog.upsert("models", [row])
    return payload
