"""A prior score for rows whose source gives none (existing labels, people's corrections).

Existing labels (``coco_labels``) and other score-less sources carry no confidence, and a
missing score used to count as 0 wherever scores are compared (cross-source NMS, the
merge's weighted fusion). This rule gives every row that has a box or a quad and no score
the prior of its source (``per_source``, else ``default``; ``None`` leaves it without a
score). It judges those rows, keeps every row and replaces ``score``; the curated row then
carries the prior it was weighed with. Scores are in 0..1 like the annotators' own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from filters.base import FilterContext, FilterResult, dictionary, register_filter, to_numpy, valid
from storage.arrow_masks import with_nulls


@dataclass(frozen=True)
class PriorScoreConfig:
    """default: the prior of a source not in ``per_source`` (None: no prior); per_source:
    source -> prior in [0, 1] (e.g. ``{coco_labels = 0.6, human = 1.0}``)."""

    default: float | None = 0.5
    per_source: dict[str, float] = field(default_factory=lambda: {"human": 1.0})

    def __post_init__(self) -> None:
        for name, value in [("default", self.default), *((f"per_source[{k!r}]", v) for k, v in self.per_source.items())]:
            if value is None and name == "default":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"prior_score.{name} must be a number in [0, 1], got {value!r}")

    def prior_of(self, source: str | None) -> float:
        """The prior of ``source`` (NaN: none)."""
        value = self.per_source.get(source, self.default) if source is not None else self.default
        return float("nan") if value is None else float(value)


@register_filter("prior_score", settings=PriorScoreConfig, working_form=True)
def prior_score_filter(table: pa.Table, config: PriorScoreConfig, ctx: FilterContext) -> FilterResult:
    """Score-less rows with geometry get their source's prior (every row is kept)."""
    n = table.num_rows
    judged = ~valid(table["score"]) & (valid(table["bbox"]) | valid(table["quad"])) if n else np.zeros(0, bool)
    codes, sources = dictionary(table["source"]) if n else (np.zeros(0, np.int64), [])
    priors = np.array([config.prior_of(s) for s in [*sources, None]], np.float64)[codes]
    judged &= ~np.isnan(priors)
    if not judged.any():
        return FilterResult.keep_all(judged)
    score = np.where(judged, priors, to_numpy(table["score"], np.nan).astype(np.float64))
    values = with_nulls(score.astype(np.float32), ~(judged | valid(table["score"])))
    return FilterResult(keep=np.ones(n, bool), reason=pa.nulls(n, pa.string()), judged=judged,
                        replace={"score": values})
