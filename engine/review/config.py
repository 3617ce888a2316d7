"""The ``[review]`` config: how ``fld review plan`` weighs what it finds on an image."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReviewConfig:
    """Weights of the findings (priority = sum of weight x count on the image), the IoU at
    which two boxes are the same object, and the score ``margin`` around a source's
    threshold that counts as borderline (scores are probabilities in 0..1)."""

    disputed_label_weight: float = 3.0
    borderline_drop_weight: float = 2.0
    one_source_weight: float = 1.0
    near_threshold_weight: float = 1.0
    iou: float = 0.5
    margin: float = 0.15

    def __post_init__(self) -> None:
        for name in ("disputed_label_weight", "borderline_drop_weight", "one_source_weight", "near_threshold_weight",
                     "iou", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"review.{name} must be a number >= 0, got {value!r}")
        if not 0 < self.iou <= 1:
            raise ValueError(f"review.iou must be in (0, 1], got {self.iou!r}")
        if self.margin > 1:
            raise ValueError(f"review.margin must be in [0, 1] (scores are probabilities), got {self.margin!r}")
