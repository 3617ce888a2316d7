"""Per-source confidence threshold (FLD-5B: "noisy boxes under a confidence threshold").

Every row is judged. A row whose ``score`` (the annotator's own confidence, in the
annotator's own scale) is below its source's threshold is dropped. Rows without a score
(captions from generative models, existing labels) follow ``null_score``. A source whose
checkpoint has a calibrated threshold (``FilterContext.calibrated``: the lowest score at
which the model's boxes reached the target precision on held-out curated labels) uses it
in place of the configured one while ``calibrated`` is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import FilterContext, FilterResult, dictionary, reason_from_codes, register_filter, valid

NULL_SCORE_POLICIES = ("keep", "drop")


@dataclass(frozen=True)
class ConfidenceConfig:
    """default: threshold for sources not in ``per_source``; per_source: source -> threshold;
    null_score: ``keep`` or ``drop`` rows that carry no score; calibrated: a calibrated
    threshold of the producing checkpoint replaces the configured one."""

    default: float = 0.3
    # the matcher's score is a softmax over its candidates (relative, not a confidence); the caption
    # scorer's is an image-text similarity that the caption_similarity rule judges
    per_source: dict[str, float] = field(default_factory=lambda: {"region_text_matcher": 0.0, "caption_scorer": 0.0})
    null_score: str = "keep"
    calibrated: bool = True

    def __post_init__(self) -> None:
        for name, value in [("default", self.default), *((f"per_source[{k!r}]", v) for k, v in self.per_source.items())]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0.0 <= value <= 1.0:  # scores are probabilities: above 1 would drop every row
                raise ValueError(f"confidence.{name} must be a number in [0, 1] (scores are probabilities), "
                                 f"got {value!r}")
        if not isinstance(self.calibrated, bool):
            raise ValueError(f"confidence.calibrated must be true or false, got {self.calibrated!r}")
        if self.null_score not in NULL_SCORE_POLICIES:
            raise ValueError(f"confidence.null_score must be one of {NULL_SCORE_POLICIES}, got {self.null_score!r}")

    def threshold_of(self, source: str | None, calibrated: Mapping[str, float] | None = None) -> float:
        """The threshold of ``source``: its calibrated one when known and enabled, else the
        configured one."""
        if self.calibrated and calibrated and source in calibrated:
            return float(calibrated[source])
        return float(self.per_source.get(source, self.default))


@register_filter("confidence", settings=ConfidenceConfig, working_form=True)
def confidence_filter(table: pa.Table, config: ConfidenceConfig, ctx: FilterContext) -> FilterResult:
    """Keep rows with ``score >= threshold(source)``; null scores follow ``config.null_score``."""
    n = table.num_rows
    if n == 0:
        return FilterResult(np.ones(0, bool), [])
    codes, sources = dictionary(table["source"])
    per_source = np.array([config.threshold_of(s, ctx.calibrated) for s in [*sources, None]], dtype=np.float64)  # -1: null
    threshold = per_source[codes]
    has_score = valid(table["score"])
    score = pc.fill_null(table["score"], np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    low = has_score & ~(score >= threshold)  # NaN scores count as low
    missing = ~has_score & (config.null_score == "drop")
    # one reason text per source threshold (formatted as Arrow casts the number), given as codes
    calibrated = [config.calibrated and s in ctx.calibrated for s in [*sources, None]]
    texts = {k + 1: f"score below {t} " + ("(calibrated for its checkpoint)" if c else "for its source")
             for k, (t, c) in enumerate(zip(pa.array(per_source).cast(pa.string()).to_pylist(), calibrated))}
    texts[len(per_source) + 1] = "no score (confidence.null_score = drop)"
    code = np.where(low, np.where(codes < 0, len(per_source) - 1, codes) + 1, 0)
    code[missing] = len(per_source) + 1
    return FilterResult(keep=~(low | missing), reason=reason_from_codes(code, texts))
