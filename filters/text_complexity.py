"""Text filtering of FLD-5B section 4.2: excessive objects and low complexity.

Judged rows: top-level rows (no ``parent_id``) of a kind in ``kinds`` (default captions)
whose granularity is in ``granularities`` (empty = every granularity) and that have text.
Measures come from ``ctx.text_metrics`` (the engine parses each distinct text once with the
spaCy pipeline named in ``pipeline``, or, when that is the default and it is not installed,
measures it with a rule-based stand-in; see ``engine.curate.text_metrics`` for the definitions):

* ``objects > max_objects`` -> dropped (excessive objects);
* ``object_complexity < min_object_complexity`` -> dropped (a text without nouns has
  object complexity 0);
* ``action_complexity < min_action_complexity`` -> dropped, for texts with at least one
  verb (the measure is undefined without verbs; captions without actions are normal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.base import FilterContext, FilterResult, is_in, reason_where, register_filter, valid, with_prefix
from storage.schema import GRANULARITIES, KINDS

#: the pipeline a config names when it names none; when it is not installed the engine measures
#: texts with its rule-based stand-in (``engine.curate.rule_text_metrics``) after one warning
DEFAULT_PIPELINE = "en_core_web_sm"


@dataclass(frozen=True)
class TextComplexityConfig:
    pipeline: str = DEFAULT_PIPELINE  # spaCy package name or a pipeline directory
    max_objects: int = 20
    min_object_complexity: float = 1.0  # mean undirected degree of the nouns
    min_action_complexity: float = 0.0  # mean undirected degree of the verbs
    kinds: tuple[str, ...] = ("caption",)
    granularities: tuple[str, ...] = ()  # empty: all
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, str) or not self.pipeline:
            raise ValueError(f"text.pipeline must name a spaCy pipeline, got {self.pipeline!r}")
        if isinstance(self.max_objects, bool) or not isinstance(self.max_objects, int) or self.max_objects < 0:
            raise ValueError(f"text.max_objects must be an integer >= 0, got {self.max_objects!r}")
        for name in ("min_object_complexity", "min_action_complexity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"text.{name} must be a number >= 0, got {value!r}")
        if bad := [k for k in self.kinds if k not in KINDS]:
            raise ValueError(f"text.kinds has unknown kinds {bad}; known: {KINDS}")
        if bad := [g for g in self.granularities if g not in GRANULARITIES]:
            raise ValueError(f"text.granularities has unknown values {bad}; known: {GRANULARITIES}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"text.batch_size must be an integer >= 1, got {self.batch_size!r}")


def text_scope(table: pa.Table, config: TextComplexityConfig) -> np.ndarray:
    """Rows this rule judges (see module docstring)."""
    if table.num_rows == 0:
        return np.zeros(0, bool)
    scope = is_in(table["kind"], config.kinds)
    if config.granularities:
        scope &= is_in(table["granularity"], config.granularities)
    return scope & ~valid(table["parent_id"]) & valid(table["text"])


@register_filter("text_complexity", section="text", settings=TextComplexityConfig, working_form=True)
def text_complexity_filter(table: pa.Table, config: TextComplexityConfig, ctx: FilterContext) -> FilterResult:
    """Drop texts with excessive objects or below the minimum object/action complexity."""
    scope = text_scope(table, config)
    if not scope.any():
        return FilterResult.keep_all(scope)
    if ctx.text_metrics is None:
        raise ValueError("the text_complexity filter needs FilterContext.text_metrics (a texts -> metrics callable)")
    texts = table["text"].filter(pa.array(scope))
    metrics = ctx.text_metrics(pc.unique(texts).to_pylist())
    idx = pc.index_in(table["text"], value_set=metrics["text"].combine_chunks())
    found = valid(idx) & scope
    idx = pc.fill_null(idx, 0)

    def column(name: str) -> np.ndarray:
        return pc.take(metrics[name], idx).to_numpy(zero_copy_only=False).astype(np.float64)

    objects, actions = column("objects"), column("actions")
    obj_cx, act_cx = column("object_complexity"), column("action_complexity")
    many = found & (objects > config.max_objects)
    flat_obj = found & ~many & ~(obj_cx >= config.min_object_complexity)
    flat_act = found & ~(many | flat_obj) & (actions > 0) & ~(act_cx >= config.min_action_complexity)
    missing = scope & ~found
    reason = reason_where(flat_act, pc.binary_join_element_wise(
        "action complexity ", pc.cast(pc.round(pa.array(act_cx), 2), pa.string()),
        f" < {config.min_action_complexity}", ""))
    reason = reason_where(flat_obj, pc.binary_join_element_wise(
        "object complexity ", pc.cast(pc.round(pa.array(obj_cx), 2), pa.string()),
        f" < {config.min_object_complexity}", ""), reason)
    reason = reason_where(many, with_prefix("objects ", pa.array(objects.astype(np.int64)),
                                            f" > {config.max_objects}"), reason)
    reason = reason_where(missing, "text metrics missing for this text", reason)
    return FilterResult(keep=~(many | flat_obj | flat_act | missing), reason=reason, judged=scope)
