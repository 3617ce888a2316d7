"""The ``[review]`` config: how ``fld review plan`` weighs what it finds on an image."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReviewConfig:
    """Weights of the findings (priority = sum of weight x count on the image), the IoU at
    which two boxes are the same object, and the score ``margin`` around a source's
    threshold that counts as borderline (scores are probabilities in 0..1). Each round's
    ``review`` step queues ``budget_fraction`` of the curated images (at most ``max_budget``,
    at least one; ``budget_fraction = 0`` turns the step off) and, with ``export``, writes them
    as Label Studio tasks to ``ROOT/review/round=R/label-studio``."""

    disputed_label_weight: float = 3.0
    borderline_drop_weight: float = 2.0
    one_source_weight: float = 1.0
    near_threshold_weight: float = 1.0
    iou: float = 0.5
    margin: float = 0.15
    budget_fraction: float = 0.1
    max_budget: int = 500
    export: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_budget, bool) or not isinstance(self.max_budget, int) or self.max_budget < 1:
            raise ValueError(f"review.max_budget must be a whole number >= 1, got {self.max_budget!r}")
        if not isinstance(self.export, bool):
            raise ValueError(f"review.export must be true or false, got {self.export!r}")
        for name in ("disputed_label_weight", "borderline_drop_weight", "one_source_weight", "near_threshold_weight",
                     "iou", "margin", "budget_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"review.{name} must be a number >= 0, got {value!r}")
        if not 0 < self.iou <= 1:
            raise ValueError(f"review.iou must be in (0, 1], got {self.iou!r}")
        if self.budget_fraction > 1:
            raise ValueError(f"review.budget_fraction must be in [0, 1], got {self.budget_fraction!r}")
        if self.margin > 1:
            raise ValueError(f"review.margin must be in [0, 1] (scores are probabilities), got {self.margin!r}")

    def budget(self, images: int) -> int:
        """Images the round's queue holds for ``images`` curated images (0: the step is off)."""
        if self.budget_fraction == 0 or images == 0:
            return 0
        return max(1, min(self.max_budget, round(self.budget_fraction * images)))
