"""The retrain part of a round: build the training set and fine-tune, evaluate the new and
the current model on the validation split, and decide on promotion.

Each function is one round step (``engine.rounds.steps``) and resumes: training continues
from its last checkpoint and does nothing once finished; evaluation is kept in
``models/round=R/evaluation.json`` for the promotion step; :func:`retrain_round` runs all
three for ``fld train``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.dataset.curated import read_curated_rows
from engine.dataset.locations import image_locations
from engine.retrain.config import TrainingConfig
from engine.retrain.evaluate import PER_IMAGE, evaluate_model, evaluation_settings
from engine.retrain.examples import build_examples, calibration_references, write_jsonl
from engine.retrain.promote import decide, paired_evidence, record
from engine.retrain.train import SUMMARY_FILE, train
from florence2.settings import Florence2Settings
from storage.atomic import write_text_atomic
from storage.layout import DataRoot


def train_round(root: DataRoot, round_: int, config: TrainingConfig, log: Any = None,
                stop_after: int = 0) -> dict[str, Any]:
    """Build the round's training set (also written as Florence-2 JSONL beside the model) and
    fine-tune on it; resumes from the last checkpoint, and does nothing once trained. The
    curated set of round R is the union of the curated rounds (the merge carries every earlier
    round's kept rows forward), so every image curated so far is trained on."""
    examples, summary = build_examples(root, round_, config.eval_fraction, config.seed, config.tasks,
                                       target_format=config.target_format)
    write_jsonl(examples, root.training_set(round_))
    result = train(root, round_, examples, config, stop_after=stop_after, log=log)
    return {"round": round_, "examples": summary, "train": asdict(result)}


def evaluate_round(root: DataRoot, round_: int, config: TrainingConfig,
                   settings: Florence2Settings | None = None) -> dict[str, Any]:
    """Evaluate the round's new model and the model it started from on the validation split;
    the result is also kept in ``models/round=R/evaluation.json`` for :func:`promote_round`.
    ``settings``: what the model annotates with (``EngineConfig.current_model_settings``: scoring,
    views), so the calibrated threshold is measured on the scores curation sees; recorded as
    ``annotator_settings`` in the result."""
    model_dir = root.model(round_)
    start_model = json.loads((model_dir / SUMMARY_FILE).read_text())["start_model"]
    rows = read_curated_rows(root, round_)
    examples, _ = build_examples(root, round_, config.eval_fraction, config.seed, config.tasks, rows,
                                  target_format=config.target_format)
    validation = [e for e in examples if e.split == "validation"]
    locations = image_locations(root) if config.ground_truth else None
    held_out = {e.image_id for e in validation}
    references = calibration_references(root, round_, [r for r in rows if r["image_id"] in held_out],
                                        independent=config.calibration_labels == "independent")
    new = evaluate_model(model_dir, validation, config, locations, settings, references) if validation else {}
    current = evaluate_model(Path(start_model), validation, config, locations, settings, references) if validation else {}
    used = evaluation_settings(model_dir, config, settings)
    per_image = {"new": new.pop(PER_IMAGE, {}), "current": current.pop(PER_IMAGE, {})}
    result = {"round": round_, "new": new, "current": current, "current_model": start_model, PER_IMAGE: per_image,
              "validation_examples": len(validation),
              "annotator_settings": {k: v for k, v in asdict(used).items() if k != "model"}}
    write_text_atomic(json.dumps(result, indent=2, sort_keys=True), model_dir / "evaluation.json")
    return result


def promote_round(root: DataRoot, round_: int, config: TrainingConfig) -> dict[str, Any]:
    """Decide on the evaluated model of the round and record the decision."""
    model_dir = root.model(round_)
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    decision = decide(evaluation["new"], evaluation["current"], config.promote_metric, config.promote,
                      config.min_image_dependence, paired_evidence(evaluation.get(PER_IMAGE), config))
    return record(root, round_, model_dir, evaluation["new"], evaluation["current"], evaluation["current_model"],
                  decision, config)


def retrain_round(root: DataRoot, round_: int, config: TrainingConfig, log: Any = None,
                  stop_after: int = 0, settings: Florence2Settings | None = None) -> dict[str, Any]:
    """The retrain steps of a round in one call: train -> evaluate both models -> promote.

    Returns a summary: examples per split/task, the training result, both models' metrics and
    the decision; ``settings``: the current model's settings (:func:`evaluate_round`).
    When training stops early (``stop_after``) nothing is evaluated or promoted.
    Re-running after a finished round retrains nothing (the final model is there) and
    evaluates and decides again.
    """
    out = train_round(root, round_, config, log=log, stop_after=stop_after)
    if not out["train"]["finished"]:
        return out
    evaluate_round(root, round_, config, settings)
    out["promotion"] = promote_round(root, round_, config)
    return out
