"""Typed config of retraining (the ``[training]`` table of the engine config).

One frozen dataclass, validated on construction; every error names the bad key and value.
:meth:`TrainingConfig.from_dict` builds it from a TOML table through
:func:`engine.typed_config.from_plain`, so an unknown key is refused with its dotted name.

Example (TOML)::

    [training]
    base_model = "/models/Florence-2-base"   # used when no earlier round promoted a model
    epochs = 3
    batch_size = 16
    grad_accum = 2
    lr = 1e-4                                # the paper's peak lr for Florence-2-B
    dtype = "bf16"                           # autocast on the GPU; weights stay fp32
    ground_truth = "/data/coco/instances_val.json"
    promote_metric = "box_map"
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from engine.typed_config import from_plain
from florence2.format import TARGET_FORMATS, TASK_ORDER, task_names

#: metric name -> True when higher is better (the promotion rule reads this table)
METRICS: dict[str, bool] = {
    "val_loss": False,
    "box_map": True,
    "mask_map": True,
    "caption_agreement": True,
    "ocr_agreement": True,
    "grounding_recall": True,
    "od_agreement": True,
    "box_precision": True,
    "box_recall": True,
    "image_dependence": True,
    "calibration_recall": True,  # the share of held-out labels found at the calibrated precision
}
#: metrics that only exist with a ground-truth COCO file
GROUND_TRUTH_METRICS = ("box_map", "mask_map")
PROMOTE_MODES = ("better", "always")
CALIBRATION_SCOPES = ("all", "labelled")
CALIBRATION_LABELS = ("independent", "all")
DTYPE_NAMES = ("auto", "fp32", "bf16", "fp16")
DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")

_POSITIVE_INTS = ("epochs", "batch_size", "grad_accum", "eval_batch_size", "max_new_tokens", "num_beams",
                  "max_target_tokens", "loader_threads", "shuffle_buffer", "keep_checkpoints", "tiny_image_size",
                  "aux_max_classes", "image_dependence_examples")
_NON_NEGATIVE_INTS = ("max_steps", "save_every", "eval_max_examples", "seed", "aux_max_words")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of ``fld train`` (fine-tune, evaluate, promote).

    ``base_model``: the checkpoint directory (or locally cached hub id) to start from when no
    earlier round promoted a model; ``"tiny"`` builds a random test-size Florence-2 (images of
    ``tiny_image_size`` px). ``epochs`` passes over the training split, unless ``max_steps`` > 0
    (optimizer steps) is set. One optimizer step sees ``batch_size * grad_accum`` examples.
    ``lr``: peak learning rate after a linear warm-up over ``warmup_ratio`` of the steps, then
    cosine decay to 0. ``dtype``: autocast precision on the GPU (``auto`` = bf16 where the GPU
    supports it, else fp16; CPU always runs fp32). ``eval_fraction``: share of images held
    out for validation (split by image id, with ``seed``). ``ground_truth``: a COCO
    instances JSON for box/mask mAP ("" = none). ``promote``: ``better`` promotes the new
    checkpoint when it beats the current one on ``promote_metric``; ``always`` promotes it.
    ``promote_confidence``: with per-image values of the metric (``val_loss`` and the agreement
    metrics; not the mAPs), "beats" means a
    seeded paired bootstrap over the validation images (``promote_resamples`` resamples) gives
    P(better) >= this (0: the plain comparison of the two means; :mod:`engine.retrain.promote`).
    ``save_every``: checkpoint every N optimizer steps (0 = only at the end).
    ``eval_max_examples``: cap on generated validation examples per task (0 = all).
    ``aux_loss_weight``: weight of the auxiliary per-cell detection loss on the text encoder's
    image positions (:mod:`engine.retrain.aux_head`; 0 = off, the default: real checkpoints need
    none; the demo's small model needs it to keep looking at the image); its class vocabulary
    is the ``aux_max_classes`` most frequent OD labels of the training split; with
    ``aux_max_words`` > 0 the head also predicts each described cell's words (the ``aux_max_words``
    most frequent words of the split's region descriptions; 0 = no word term, the default).
    ``min_image_dependence``: promotion refuses, whatever ``promote`` says, a model whose
    ``image_dependence`` (relative change of its logits when the validation images are swapped,
    over up to ``image_dependence_examples`` examples; 0 = blind) is below this (0 = no check).
    ``calibration_precision`` / ``calibration_iou``: the new model's ``score_threshold`` is the
    lowest per-box score at which its ``<OD>`` boxes reach this precision against the curated
    validation labels, a match being the same label at this IoU (:mod:`engine.retrain.calibrate`);
    the next curation applies it to that model's rows. ``calibration_scope``: ``all`` boxes, or
    the ``labelled`` ones (overlapping some curated label: for labels known to miss objects).
    ``calibration_labels``: the labels calibration measures against: ``independent`` (the
    default) the boxes of the curated set some other source than the model gave, as that source
    gave them (not as fusion moved them), so a model's own boxes never confirm it; ``all``
    every curated box as curated.
    ``average_with_start``: weight averaging of the fine-tune with the model it started from
    (WiSE-FT): the saved weights are ``start + average_with_start * (trained - start)``; 1 (the
    default) keeps the trained weights, smaller values keep more of what the start model knew.
    ``allow_pickle_weights``: accept a ``base_model`` with only ``pytorch_model.bin`` weights
    (``hf.checkpoint_check``; default false).
    ``calibration_min_boxes``: when ``calibration_precision`` is out of reach, the threshold is
    the most precise cut keeping at least this many validation boxes (reported as not reached;
    0: no box of that model is trusted, the old rule), so an unreachable target cannot shut a
    better model out (:mod:`engine.retrain.calibrate`).
    ``new_box_precision``: the stricter precision whose threshold (``new_box_threshold``) a box
    must reach to be added where no curated box is (no other source agrees with it there).
    ``new_box_fallback_precision``: when ``new_box_precision`` is out of reach, the most precise
    cut keeping ``calibration_min_boxes`` boxes becomes ``new_box_threshold`` if it reaches this
    precision (0, the default: out of reach, no new box is trusted).
    ``target_format``: how targets write boxes and masks: ``released`` as the released
    Florence-2 checkpoints emit them (each label once, then its boxes; bare mask polygons), the
    default; ``per_box`` for a checkpoint trained with a label before every box and ``<poly>``
    masks (the demo's), so fine-tuning keeps the checkpoint's own output format.
    """

    base_model: str = ""
    tiny_image_size: int = 64
    tasks: tuple[str, ...] = TASK_ORDER
    target_format: str = "released"
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    eval_fraction: float = 0.1
    eval_batch_size: int = 16
    eval_max_examples: int = 0
    max_new_tokens: int = 256
    num_beams: int = 1
    max_target_tokens: int = 1024
    loader_threads: int = 2
    shuffle_buffer: int = 256
    save_every: int = 0
    keep_checkpoints: int = 2
    ground_truth: str = ""
    promote_metric: str = "val_loss"
    promote: str = "better"
    promote_confidence: float = 0.9
    calibration_min_boxes: int = 10
    promote_resamples: int = 2000
    aux_loss_weight: float = 0.0
    aux_max_classes: int = 32
    aux_max_words: int = 0
    min_image_dependence: float = 0.01
    image_dependence_examples: int = 64
    calibration_precision: float = 0.9
    calibration_iou: float = 0.5
    calibration_scope: str = "all"
    calibration_labels: str = "independent"
    new_box_precision: float = 0.95
    new_box_fallback_precision: float = 0.0
    allow_pickle_weights: bool = False
    average_with_start: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.allow_pickle_weights, bool):
            raise ValueError(f"training.allow_pickle_weights must be true or false, got {self.allow_pickle_weights!r}")
        object.__setattr__(self, "base_model", str(self.base_model))
        object.__setattr__(self, "ground_truth", str(self.ground_truth))
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"training.{name} must be a positive integer, got {value!r}")
        for name in _NON_NEGATIVE_INTS:
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"training.{name} must be an integer >= 0, got {value!r}")
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"training.lr must be a positive number, got {self.lr!r}")
        for name, low, high in (("warmup_ratio", 0.0, 1.0), ("eval_fraction", 0.0, 0.9)):
            value = getattr(self, name)
            if not _is_number(value) or not low <= value < high:
                raise ValueError(f"training.{name} must be in [{low}, {high}), got {value!r}")
        if not _is_number(self.new_box_fallback_precision) or not 0 <= self.new_box_fallback_precision <= 1:
            raise ValueError(f"training.new_box_fallback_precision must be in [0, 1], "
                             f"got {self.new_box_fallback_precision!r}")
        for name in ("weight_decay", "max_grad_norm", "aux_loss_weight", "min_image_dependence"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"training.{name} must be a number >= 0, got {getattr(self, name)!r}")
        for name in ("calibration_precision", "calibration_iou", "new_box_precision", "average_with_start"):
            if not _is_number(getattr(self, name)) or not 0 < getattr(self, name) <= 1:
                raise ValueError(f"training.{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.calibration_labels not in CALIBRATION_LABELS:
            raise ValueError(f"training.calibration_labels must be one of {', '.join(CALIBRATION_LABELS)}; "
                             f"got {self.calibration_labels!r}")
        if self.calibration_scope not in CALIBRATION_SCOPES:
            raise ValueError(f"training.calibration_scope must be one of {', '.join(CALIBRATION_SCOPES)}; "
                             f"got {self.calibration_scope!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"training.dtype must be one of {', '.join(DTYPE_NAMES)}; got {self.dtype!r}")
        if not isinstance(self.device, str) or not DEVICE_RE.match(self.device):
            raise ValueError(f"training.device must be cpu, cuda, cuda:N or auto; got {self.device!r}")
        if self.target_format not in TARGET_FORMATS:
            raise ValueError(f"training.target_format must be one of {', '.join(TARGET_FORMATS)}; "
                             f"got {self.target_format!r}")
        names = set(task_names("training.tasks", self.tasks))  # refuses an unknown task, naming the key
        if not names:
            raise ValueError(f"training.tasks must be a non-empty list of task names, got {self.tasks!r}")
        object.__setattr__(self, "tasks", tuple(t for t in TASK_ORDER if t in names))
        if self.promote_metric not in METRICS:
            raise ValueError(f"training.promote_metric must be one of {', '.join(METRICS)}; "
                             f"got {self.promote_metric!r}")
        if not _is_number(self.promote_confidence) or not 0 <= self.promote_confidence < 1:
            raise ValueError(f"training.promote_confidence must be in [0, 1) (0: compare the means), "
                             f"got {self.promote_confidence!r}")
        if isinstance(self.calibration_min_boxes, bool) or not isinstance(self.calibration_min_boxes, int) \
                or self.calibration_min_boxes < 0:
            raise ValueError(f"training.calibration_min_boxes must be an integer >= 0, got {self.calibration_min_boxes!r}")
        if isinstance(self.promote_resamples, bool) or not isinstance(self.promote_resamples, int) \
                or self.promote_resamples < 100:
            raise ValueError(f"training.promote_resamples must be an integer >= 100, got {self.promote_resamples!r}")
        if self.promote not in PROMOTE_MODES:
            raise ValueError(f"training.promote must be one of {', '.join(PROMOTE_MODES)}; got {self.promote!r}")
        if self.promote_metric in GROUND_TRUTH_METRICS and not self.ground_truth:
            raise ValueError(f"training.promote_metric {self.promote_metric!r} needs training.ground_truth "
                             f"(a COCO instances JSON)")
        if self.promote == "better" and self.eval_fraction == 0:
            raise ValueError("training.promote = 'better' compares models on the validation split: set "
                             "training.eval_fraction > 0 (got 0) or training.promote = 'always'")
        if self.min_image_dependence > 0 and self.eval_fraction == 0:
            raise ValueError("training.min_image_dependence > 0 is measured on the validation split: set "
                             "training.eval_fraction > 0 (got 0) or training.min_image_dependence = 0")

    @property
    def examples_per_step(self) -> int:
        """Examples one optimizer step sees."""
        return self.batch_size * self.grad_accum

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainingConfig":
        """From the ``[training]`` table (plain TOML data); unknown keys raise ``ValueError``."""
        return from_plain(cls, dict(data or {}), "training")
