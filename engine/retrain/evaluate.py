"""Evaluate a Florence-2 checkpoint on a round's held-out (validation) examples.

Predictions go through :meth:`florence2.model.Florence2Model.answer`, the path the ``florence2``
annotator runs (batched generation, the processor's ``post_process_generation``, the same payload
mapping, per-item scores and views); the curated answers are the validation targets parsed back
by that same parser, so both sides are compared in
the same pixels (absolute, upright image; boxes x0, y0, x1, y1). Metrics:

- ``val_loss``: token-mean cross-entropy over every validation example (lower is better);
- ``caption_agreement``: mean unigram F1 (lower-cased words) of generated vs curated captions;
- ``od_agreement`` / ``ocr_agreement``: F1 of predicted vs curated regions / text lines, a match
  being the same (normalised) label/text with box IoU >= 0.5 (quads: their enclosing boxes);
- ``box_precision`` / ``box_recall``: per box, the share of the model's ``<OD>`` boxes that
  match a curated validation box (same label, IoU >= 0.5, each used once), and the share of
  curated validation boxes matched (against the curated labels, never ground truth; 0 when
  there is nothing to divide);
- ``score_threshold`` (with ``calibration_*``): the per-box score at which the ``<OD>`` boxes
  reach ``training.calibration_precision`` against the curated validation labels
  (:mod:`engine.retrain.calibrate`), applied to this model's rows by the next curation; each
  box is scored as the annotator scores the rows it writes, its ``views`` included;
- ``image_dependence``: ``||L_swapped - L|| / ||L||`` over the validation targets' positions,
  ``L`` the teacher-forced logits centred per position (mean over the vocabulary removed),
  ``L_swapped`` the same with each example's image replaced by the next distinct image of the
  set (cyclic). 0 = the outputs ignore the image (a blind model); promotion refuses a model
  below ``training.min_image_dependence``;
- ``grounding_recall``: share of curated (phrase, box) pairs a prediction of the same phrase
  covers with IoU >= 0.5;
- ``box_map`` / ``mask_map``: COCO AP@[.5:.95] (pycocotools ``COCOeval``) of ``<OD>`` boxes and
  of ``<REGION_TO_SEGMENTATION>`` masks prompted with each predicted box, against a ground-truth
  COCO file. Images are matched by ``coco_id`` in their sidecar JSON, else by file name (the
  tar member / file key); labels by category name (case-insensitive); unknown labels are
  dropped. A detection's score is the score the model gives its row.
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.dataset.coco_eval import coco_detections, coco_image_ids, coco_map
from engine.dataset.locations import ImageLocation
from engine.retrain import calibrate
from engine.retrain.config import TrainingConfig
from engine.retrain.examples import Example
from engine.retrain.train import Collator, batched, precision, scored_logits, stream_examples
from engine.retrain.validation import validation_losses
from florence2.format import TASK_ORDER, prompt_caption
from florence2.model import Florence2Model, Query
from florence2.settings import Florence2Settings
from storage.atomic import write_text_atomic
from storage.geometry import box_iou_matrix

IOU = 0.5
#: the key of :func:`evaluate_model`'s result holding per-image values ({metric: {image_id: value}}),
#: the paired evidence promotion bootstraps over (kept out of the metrics tables)
PER_IMAGE = "per_image"
#: the tasks of the COCO detection and mask evaluation
DETECTION_TASKS = ("OD", "REGION_TO_SEGMENTATION")
CAPTION_TASKS = ("CAPTION", "DETAILED_CAPTION", "MORE_DETAILED_CAPTION")
#: metric -> the tasks whose validation examples it is computed from
TASK_METRICS = {"caption_agreement": CAPTION_TASKS, "od_agreement": ("OD",),
                "ocr_agreement": ("OCR_WITH_REGION",), "grounding_recall": ("CAPTION_TO_PHRASE_GROUNDING",)}


# ------------------------------------------------------------------------ matching
def _norm(text: str | None) -> str:
    return " ".join(re.findall(r"\w+", (text or "").lower()))


def word_f1(predicted: str, reference: str) -> float:
    """Unigram F1 of two texts (multiset of lower-cased words); 1.0 when both are empty."""
    p, r = collections.Counter(_norm(predicted).split()), collections.Counter(_norm(reference).split())
    if not p and not r:
        return 1.0
    common = sum((p & r).values())
    return 0.0 if not common else 2 * common / (sum(p.values()) + sum(r.values()))


def matched_pairs(predicted: list[tuple[str, list[float]]], reference: list[tuple[str, list[float]]],
                  iou: float = IOU) -> int:
    """How many (label, box) references get a distinct prediction of the same normalised label
    with IoU >= ``iou`` (greedy, best IoU first)."""
    if not predicted or not reference:
        return 0
    ious = box_iou_matrix(np.asarray([b for _, b in predicted], float), np.asarray([b for _, b in reference], float))
    same = np.array([[_norm(a) == _norm(b) for b, _ in reference] for a, _ in predicted])
    ious = np.where(same & (ious >= iou), ious, -1.0)
    hits = 0
    while ious.size and ious.max() >= 0:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        hits, ious[i, :], ious[:, j] = hits + 1, -1.0, -1.0
    return hits


def _pairs(payloads: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    return [(p.get("text", ""), list(p["bbox"])) for p in payloads if p.get("bbox") is not None]


# ----------------------------------------------------------------------- generation
def evaluation_settings(model_dir: Path, config: TrainingConfig, settings: Florence2Settings | None) -> Florence2Settings:
    """The settings a checkpoint is evaluated with: the evaluation's own device, dtype, batch
    size, generation length, beams and tasks (``[training]``), and every scoring setting (score
    window, views, view fusion) of ``settings``, the model's resolved ``[model.annotator]``."""
    device, amp = precision(config)
    dtype = "fp32" if amp is None else {"torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(amp)]
    owned = {"model": str(model_dir), "device": str(device), "dtype": dtype, "batch_size": config.eval_batch_size,
             "max_new_tokens": config.max_new_tokens, "num_beams": config.num_beams, "tasks": TASK_ORDER}
    return replace(settings, **owned) if settings is not None else Florence2Settings(**owned)


def _model(model_dir: Path, config: TrainingConfig, settings: Florence2Settings | None = None) -> Florence2Model:
    model = Florence2Model(evaluation_settings(model_dir, config, settings))
    model.load()
    return model


def run_examples(model: Florence2Model, items: list[tuple[Example, Any]]) -> list[list[dict[str, Any]]]:
    """The scored payloads of every ``(example, image)``, asked with the example's own prompt
    (:meth:`florence2.model.Florence2Model.answer`: the views and scores the model annotates with)."""
    return model.answer([Query(image, e.task, prompt=e.prompt) for e, image in items])


def _reference(model: Florence2Model, e: Example) -> list[dict[str, Any]]:
    """The example's curated target parsed back with the model's own parser (same pixels)."""
    return model.parse(e.task, e.target, e.width, e.height, prompt_caption(e.prompt))


def _decoded(examples: list[Example]) -> list[tuple[Example, Any]]:
    from storage.decode import decode_rgb

    return [(e, decode_rgb(data)) for e, data in stream_examples(examples, 0, 0, 1)]


def agreement_metrics(model: Florence2Model, examples: list[Example], cap: int = 0, target_precision: float = 0.9,
                      calibration_iou: float = IOU, calibration_scope: str = "all",
                      new_box_precision: float | None = None, calibration_min_boxes: int = 0,
                      references: Mapping[str, list[tuple[str, list[float]]]] | None = None,
                      per_image: dict[str, dict[str, float]] | None = None,
                      new_box_fallback: float = 0.0) -> dict[str, float]:
    """The caption / OD / OCR / grounding metrics over validation ``examples`` (``cap`` per
    task), and the score threshold calibrated on the ``<OD>`` boxes (:mod:`engine.retrain.calibrate`)
    against ``references`` (image_id -> (label, box); None: the example's own target).
    ``per_image``, when given, receives each metric's value per image ({metric: {image_id:
    value}}: a caption's word F1, an image's OD/OCR agreement F1, its grounding recall; images
    with neither a prediction nor a reference are left out), the paired evidence a bootstrap
    can compare two models on."""
    by_task: dict[str, list[Example]] = collections.defaultdict(list)
    for e in examples:
        if not cap or len(by_task[e.task]) < cap:
            by_task[e.task].append(e)
    metrics: dict[str, float] = {}
    for metric, tasks in TASK_METRICS.items():
        items = _decoded([e for t in tasks for e in by_task.get(t, [])])
        if not items:
            continue
        results = run_examples(model, items)
        scores, hits, n_pred, n_ref = [], 0, 0, 0
        box_scores, box_hits, n_calibration_ref = [], [], 0
        mine = per_image.setdefault(metric, {}) if per_image is not None else {}
        for (e, _), payloads in zip(items, results):
            if metric == "caption_agreement":
                scores.append(word_f1(payloads[0]["text"] if payloads else "", e.target))
                mine[e.image_id] = scores[-1]
                continue
            truth = _pairs(_reference(model, e))
            pred = _pairs(payloads)
            found = matched_pairs(pred, truth)
            hits, n_pred, n_ref = hits + found, n_pred + len(pred), n_ref + len(truth)
            if metric == "grounding_recall" and truth:
                mine[e.image_id] = found / len(truth)
            elif metric != "grounding_recall" and pred + truth:
                mine[e.image_id] = 2 * found / (len(pred) + len(truth))
            if metric == "od_agreement":
                boxed = [p for p in payloads if p.get("bbox") is not None]
                reference = truth if references is None else references.get(e.image_id, [])
                counted = np.ones(len(boxed), bool) if calibration_scope == "all" else \
                    calibrate.labelled(pred, reference, calibration_iou)
                box_scores += [float(p.get("score") or 0.0) for p, c in zip(boxed, counted) if c]
                box_hits += calibrate.hits(pred, reference, calibration_iou)[counted].tolist()
                n_calibration_ref += len(reference)
        if metric == "caption_agreement":
            metrics[metric] = float(np.mean(scores))
            continue
        if metric == "od_agreement":
            metrics["box_precision"] = hits / n_pred if n_pred else 0.0
            metrics["box_recall"] = hits / n_ref if n_ref else 0.0
            metrics.update(calibrate.calibration(box_scores, box_hits, n_calibration_ref, target_precision,
                                                 new_box_precision, calibration_min_boxes, new_box_fallback))
        if metric == "grounding_recall":
            metrics[metric] = hits / n_ref if n_ref else 0.0
        else:
            metrics[metric] = 2 * hits / (n_pred + n_ref) if n_pred + n_ref else 0.0
    return metrics


def image_dependence(model: Any, processor: Any, examples: list[Example], batch_size: int = 16,
                     max_target_tokens: int = 1024, device: Any = None) -> float | None:
    """The ``image_dependence`` of the module docstring over ``examples`` (None with fewer
    than 2 distinct images found); eval mode, no gradients, fp32."""
    import torch

    items = list(stream_examples(examples, 0, 0, 1))
    images = list(dict.fromkeys(e.image_id for e, _ in items))
    if len(images) < 2:
        return None
    data = {e.image_id: b for e, b in items}
    swapped = {a: data[b] for a, b in zip(images, images[1:] + images[:1])}
    device = device or next(model.parameters()).device
    collate = Collator(processor, max_target_tokens)
    change, norm = 0.0, 0.0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for chunk in batched(items, batch_size):
            real = scored_logits(model, collate(chunk), device, None)[0].float()
            other = scored_logits(model, collate([(e, swapped[e.image_id]) for e, _ in chunk]), device, None)[0].float()
            real, other = real - real.mean(-1, keepdim=True), other - other.mean(-1, keepdim=True)
            change, norm = change + float((real - other).pow(2).sum()), norm + float(real.pow(2).sum())
    model.train(was_training)
    return (change / norm) ** 0.5 if norm > 0 else 0.0


def detection_predictions(model: Florence2Model, images: list[tuple[Example, Any]]) -> list[dict[str, Any]]:
    """``<OD>`` on every image, then ``<REGION_TO_SEGMENTATION>`` on every predicted box
    (:meth:`florence2.model.Florence2Model.predict`)."""
    predictions = []
    for (e, _), found in zip(images, model.predict([image for _, image in images], DETECTION_TASKS)):
        predictions += [{"image_id": e.image_id, "label": p["text"], "bbox": p["bbox"], "score": p.get("score"),
                         "width": e.width, "height": e.height, **({"mask_rle": p["mask_rle"]} if "mask_rle" in p else {})}
                        for p in found.payloads]
    return predictions


def evaluate_model(model_dir: Path, examples: list[Example], config: TrainingConfig,
                   locations: Mapping[str, ImageLocation] | None = None,
                   settings: Florence2Settings | None = None,
                   references: Mapping[str, list[tuple[str, list[float]]]] | None = None) -> dict[str, float]:
    """Every metric of the checkpoint in ``model_dir`` on the validation ``examples`` (and, under
    :data:`PER_IMAGE`, each image's validation loss);
    ``settings``: the settings the model annotates with (its scoring: :func:`evaluation_settings`);
    ``references``: the labels its threshold is calibrated against (see :func:`agreement_metrics`)."""
    model = _model(Path(model_dir), config, settings)
    device, _ = precision(config)
    metrics: dict[str, float] = {}
    losses = validation_losses(model.torch_model, model.processor, examples, config, device, None)
    per_image: dict[str, dict[str, float]] = {}
    if losses.mean is not None:
        metrics["val_loss"] = losses.mean
        per_image["val_loss"] = losses.per_image
        per_image.update({f"val_loss/{task}": by_image for task, by_image in losses.per_task.items()})
    metrics.update(agreement_metrics(model, examples, config.eval_max_examples, config.calibration_precision,
                                     config.calibration_iou, config.calibration_scope, config.new_box_precision,
                                     config.calibration_min_boxes, references, per_image,
                                     config.new_box_fallback_precision))
    if per_image:
        metrics[PER_IMAGE] = per_image
    dependence = image_dependence(model.torch_model, model.processor, examples[:config.image_dependence_examples],
                                  config.eval_batch_size, config.max_target_tokens, device)
    if dependence is not None:
        metrics["image_dependence"] = dependence
    if config.ground_truth and locations is not None:
        truth = json.loads(Path(config.ground_truth).read_text(encoding="utf-8"))
        image_map = coco_image_ids(truth, {e.image_id: locations[e.image_id] for e in examples
                                           if e.image_id in locations})
        first = {e.image_id: e for e in examples if e.image_id in image_map}
        chosen = list(first.values())[: config.eval_max_examples or None]
        detections = coco_detections(detection_predictions(model, _decoded(chosen)), truth, image_map)
        metrics.update(coco_map(truth, detections, [image_map[e.image_id] for e in chosen]))
    return metrics


def write_metrics(model_dir: Path, metrics: dict[str, Any]) -> Path:
    """``model_dir/metrics.json`` (atomic)."""
    return write_text_atomic(json.dumps(metrics, indent=2, sort_keys=True), Path(model_dir) / "metrics.json")
