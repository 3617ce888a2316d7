"""The filter contract, its registry and the vectorised helpers every filter shares.

A filter is a plain function ``fn(table, config, ctx) -> FilterResult``: ``table`` is an
Arrow table of annotation rows (the ``storage.schema.ANNOTATIONS`` columns; during curation
the engine passes :data:`CURATION_COLUMNS`, plus ``label`` and :data:`IMAGE_INDEX` in place
of ``image_id``), ``config`` the typed settings of its family (a dataclass defined in the
family's module), ``ctx`` a :class:`FilterContext` with the tables it may look things up in.
It returns, per row of ``table``: whether the row is kept, the reason when it is not, and
optionally whether the rule judged the row at all, which surviving row absorbed it and
replacement column values. Filters never loop in Python over rows; they use numpy,
``pyarrow.compute``, DuckDB or the compiled kernels of :mod:`filters.kernels`. During
curation the :data:`CATEGORICAL_COLUMNS` and ``text`` arrive dictionary-encoded;
:func:`dictionary`, :func:`equals`, :func:`is_in`, ``pyarrow.compute``'s ``take``,
``filter``, ``unique`` and ``index_in`` and DuckDB accept both forms (string functions go
through :func:`dictionary`'s distinct values or :func:`normalized_codes`). ``bbox`` and
``quad`` may arrive as fixed-size lists (``storage.geometry.as_fixed_size``): read them with
``storage.geometry.boxes_from_arrow`` / ``quads_from_arrow``, which take both.

``@register_filter("name", section="family")`` registers a function; ``section`` names the
field of the curation config that holds its settings. During curation the engine may split
the rows into partitions of whole images that run the rules on threads; a rule whose
decision for a row depends on rows of other images registers a ``prepare`` hook
``prepare(table, config, ctx) -> part`` and a ``combine(parts) -> state`` hook: the engine
calls ``prepare`` on the live rows of each partition (on its thread), ``combine`` on the
parts, and passes the state as ``ctx.prepared`` to the rule on each partition.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.string_index import index_in
from storage.arrow_masks import valid_mask, with_nulls

#: modules whose ``@register_filter`` decorators run on first lookup
BUILTIN_MODULES: tuple[str, ...] = (
    "filters.confidence",
    "filters.geometry",
    "filters.text_complexity",
    "filters.phrase_rules",
    "filters.nms",
    "filters.region_text",
)


@dataclass(frozen=True)
class FilterContext:
    """What a filter may consult besides its table.

    images: ``image_id, width, height`` (upright pixels) of the images with status ``ok``.
    previous: the curated table of the previous round (for parents that live there), or None.
    text_metrics: callable ``texts -> Table`` of ``storage.schema.TEXT_METRICS`` rows (one
    per distinct text given), injected by the engine so filters need not import spaCy.
    workers: threads a filter may use (None: one per core; 1 while the engine runs
    partitions on threads). prepared: what the rule's ``combine`` hook made of every
    partition's ``prepare`` (None when the rule has no hooks or is called directly: the rule
    then prepares over its own table).
    """

    images: pa.Table | None = None
    previous: pa.Table | None = None
    text_metrics: Callable[[Sequence[str]], pa.Table] | None = None
    workers: int | None = None
    prepared: Any = None


REASON_TYPE = pa.dictionary(pa.int32(), pa.string())  #: the type of dictionary-encoded reasons


@dataclass
class FilterResult:
    """Per-row outcome of one filter over a table of ``n`` rows.

    keep: bool ``(n,)``. reason: string per row, null where kept (list, numpy or Arrow; kept
    dictionary-encoded when given so, e.g. by :func:`reason_where`).
    judged: bool ``(n,)`` rows the rule looked at (None = all); unjudged rows must be kept.
    absorbed_by: int64 ``(n,)`` row index (in the same table) of the survivor that absorbed a
    dropped row, -1 otherwise. agrees: whether absorption counts as another source agreeing
    (NMS) or only as consumed material (region text candidates).
    replace: column name -> full-length Arrow array of new values (e.g. clipped boxes).
    """

    keep: np.ndarray
    reason: Any
    judged: np.ndarray | None = None
    absorbed_by: np.ndarray | None = None
    agrees: bool = False
    replace: dict[str, pa.Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keep = np.asarray(self.keep, dtype=bool)
        n = len(self.keep)
        reason = self.reason
        if not isinstance(reason, (pa.Array, pa.ChunkedArray)):
            reason = pa.array(list(reason), pa.string())
        if isinstance(reason, pa.ChunkedArray):
            reason = reason.combine_chunks()
        self.reason = reason.cast(REASON_TYPE if pa.types.is_dictionary(reason.type) else pa.string())
        self.judged = np.ones(n, bool) if self.judged is None else np.asarray(self.judged, bool)
        if self.absorbed_by is not None:
            self.absorbed_by = np.asarray(self.absorbed_by, dtype=np.int64)
        for name, arr in [("reason", self.reason), ("judged", self.judged), ("absorbed_by", self.absorbed_by)]:
            if arr is not None and len(arr) != n:
                raise ValueError(f"FilterResult.{name} has {len(arr)} rows, keep has {n}")
        for name, arr in self.replace.items():
            if len(arr) != n:
                raise ValueError(f"FilterResult.replace[{name!r}] has {len(arr)} rows, keep has {n}")
        if (~self.keep & ~self.judged).any():
            raise ValueError("FilterResult drops rows it did not judge")
        if (valid(self.reason) == self.keep).any():
            raise ValueError("FilterResult.reason must be set exactly on the dropped rows")

    @classmethod
    def keep_all(cls, judged: np.ndarray) -> "FilterResult":
        """Every row kept (no reasons): for a rule whose scope ``judged`` holds no row to drop,
        or none at all (rules return it early instead of building empty work)."""
        judged = np.asarray(judged, bool)
        return cls(keep=np.ones(len(judged), bool), reason=pa.nulls(len(judged), pa.string()), judged=judged)


FilterFn = Callable[[pa.Table, Any, FilterContext], FilterResult]
PrepareFn = Callable[[pa.Table, Any, FilterContext], Any]
CombineFn = Callable[[list], Any]


@dataclass(frozen=True)
class FilterSpec:
    """A registered rule: its function, its config section and its optional ``prepare`` and
    ``combine`` hooks (state computed over the rows of all partitions, see the module docstring)."""

    name: str
    fn: FilterFn
    section: str
    prepare: PrepareFn | None = None
    combine: CombineFn | None = None


_REGISTRY: dict[str, FilterSpec] = {}


def register_filter(name: str, *, section: str, prepare: PrepareFn | None = None,
                    combine: CombineFn | None = None) -> Callable[[FilterFn], FilterFn]:
    """Decorator: register ``fn`` as rule ``name`` reading its settings from config
    ``section``; ``prepare`` and ``combine``: the hooks for state over every partition's rows
    (optional, both or neither)."""
    if (prepare is None) != (combine is None):
        raise ValueError(f"filter {name!r} needs both a prepare and a combine hook, or neither")

    def wrap(fn: FilterFn) -> FilterFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"filter {name!r} is already registered by {_REGISTRY[name].fn.__qualname__}")
        _REGISTRY[name] = FilterSpec(name, fn, section, prepare, combine)
        return fn

    return wrap


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def filter_names() -> list[str]:
    """Names of every registered filter, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def filter_spec(name: str) -> FilterSpec:
    """The spec registered as ``name``; unknown names raise with the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown filter {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


#: the annotation columns a filter sees during curation (``engine.curate.curation`` leaves out the
#: wide ones no rule reads: ``image_id`` is replaced by :data:`IMAGE_INDEX`)
CURATION_COLUMNS: tuple[str, ...] = (
    "annotation_id", "source", "kind", "granularity", "region_type", "text", "bbox", "quad",
    "parent_id", "span_start", "span_end", "score",
)
#: low-cardinality string columns the engine passes dictionary-encoded during curation (so
#: the working table shrinks by int32 takes and :func:`dictionary` is free): filters compare
#: them with ``pyarrow.compute`` (``equal``, ``is_in``, ``if_else`` accept both forms) or
#: through :func:`dictionary`, never with string functions such as ``utf8_lower``
CATEGORICAL_COLUMNS: tuple[str, ...] = ("source", "kind", "granularity", "region_type", "label")


# ------------------------------------------------------------------ vectorised helpers
#: optional int32 column the engine adds once per run in place of ``image_id``: the row of
#: ``FilterContext.images`` holding the row's image, or a negative code (-1, -2, ...) per
#: distinct unknown image, so filters need not hash the 64-character image ids again
IMAGE_INDEX = "image_index"


def image_index(table: pa.Table, images: pa.Table | None) -> np.ndarray:
    """Row of ``images`` for each row's image (int64; negative when absent: from the
    :data:`IMAGE_INDEX` column, one code per unknown image, else -1)."""
    if IMAGE_INDEX in table.column_names:
        return to_numpy(table[IMAGE_INDEX], -1).astype(np.int64)
    if images is None or table.num_rows == 0:
        return np.full(table.num_rows, -1, np.int64)
    return index_in(table["image_id"], images["image_id"])


def image_index_column(table: pa.Table, images: pa.Table | None) -> pa.Array:
    """The :data:`IMAGE_INDEX` column for ``table`` (which has ``image_id``): unknown images
    get distinct negative codes so they still group apart."""
    index = image_index(table, images)
    unknown = np.flatnonzero(index < 0)
    if len(unknown):
        codes, _ = dictionary(table["image_id"].take(pa.array(unknown)))
        index[unknown] = -1 - codes
    return pa.array(index.astype(np.int32))


def image_keys(table: pa.Table, ctx: FilterContext) -> np.ndarray | pa.ChunkedArray:
    """A grouping key per row that equals for rows of the same image: the
    :data:`IMAGE_INDEX` column when present, the image's row index when every image is
    known, else the ``image_id`` strings."""
    if IMAGE_INDEX in table.column_names:
        return image_index(table, ctx.images)
    index = image_index(table, ctx.images)
    return index if (index >= 0).all() and ctx.images is not None else table["image_id"]


def to_numpy(column: pa.Array | pa.ChunkedArray, fill: Any) -> np.ndarray:
    """A primitive column as numpy with nulls replaced by ``fill``."""
    return pc.fill_null(column, fill).to_numpy(zero_copy_only=False) if len(column) else np.zeros(0)


def valid(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Bool mask of the non-null rows (read from the validity bitmaps)."""
    return valid_mask(column)


def equals(column: pa.Array | pa.ChunkedArray, value: Any) -> np.ndarray:
    """Bool mask of rows equal to ``value`` (null -> False)."""
    return is_in(column, [value])


def is_in(column: pa.Array | pa.ChunkedArray, values: Sequence[Any]) -> np.ndarray:
    """Bool mask of rows whose value is one of ``values`` (null -> False). A dictionary column
    is tested once per dictionary entry, not once per row."""
    if len(column) == 0:
        return np.zeros(0, bool)
    if pa.types.is_dictionary(column.type):
        codes, distinct = dictionary(column)
        wanted = set(values)
        hit = np.array([v in wanted for v in distinct] + [False], bool)  # the last entry serves code -1 (null)
        return hit[codes]
    return to_numpy(pc.is_in(column, value_set=pa.array(list(values), column.type)), False).astype(bool)


def reason_where(drop: np.ndarray, reason: str | pa.Array | Callable[[np.ndarray], pa.Array],
                 base: pa.Array | None = None) -> pa.Array:
    """``reason`` where ``drop`` else ``base`` (default null): a string array per row (a
    dictionary array when ``reason`` is one text and there is no ``base``).

    ``reason`` is one text, a per-row array, or a callable given the indices of the dropped
    rows that returns their texts (so per-row texts are built only for those rows). Calling it
    from the lowest- to the highest-priority check leaves the highest one that failed, so each
    dropped row carries one reason. Costs nothing when no row is dropped.
    """
    n = len(drop)
    base = pa.nulls(n, pa.string()) if base is None else base
    rows = np.flatnonzero(np.asarray(drop, bool))
    if len(rows) == 0:
        return base
    if isinstance(reason, str) and base.null_count == n:
        return _one_text_where(np.asarray(drop, bool), reason)
    if callable(reason):
        values = reason(rows)
    elif isinstance(reason, str):
        values = pa.repeat(pa.scalar(reason, pa.string()), len(rows))
    else:
        values = reason.take(pa.array(rows))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(base, pa.ChunkedArray):
        base = base.combine_chunks()
    if len(values) != len(rows):
        raise ValueError(f"reason gave {len(values)} texts for {len(rows)} dropped rows")
    return pc.replace_with_mask(base.cast(pa.string()), pa.array(np.asarray(drop, bool)), values.cast(pa.string()))


def reason_from_codes(codes: np.ndarray, texts: dict[int, str]) -> pa.Array:
    """``texts[code]`` where ``codes > 0`` and null where 0, as a dictionary array: for rules
    that give each row the code of its failing check."""
    codes = np.asarray(codes)
    dropped = codes > 0
    if not dropped.any():
        return pa.nulls(len(codes), pa.string())
    if missing := set(unique(codes[dropped]).tolist()) - set(texts):
        raise ValueError(f"reason codes without a text: {sorted(missing)}")
    keys = sorted(texts)
    lookup = np.zeros(max(keys) + 1, np.int32)
    lookup[keys] = np.arange(len(keys))
    indices = with_nulls(lookup[np.where(dropped, codes, 0)], ~dropped)
    return pa.DictionaryArray.from_arrays(indices, pa.array([texts[k] for k in keys], pa.string()))


def _one_text_where(drop: np.ndarray, text: str) -> pa.DictionaryArray:
    """``text`` where ``drop``, null elsewhere, as a dictionary array of one entry (no string
    is copied per row, and the engine gathers reasons without hashing them)."""
    indices = with_nulls(np.zeros(len(drop), np.int32), ~drop)
    return pa.DictionaryArray.from_arrays(indices, pa.array([text], pa.string()))


def with_prefix(prefix: str, values: pa.Array, suffix: str = "") -> pa.Array:
    """Per-row ``prefix + str(value) + suffix`` (vectorised string building for reasons)."""
    return pc.binary_join_element_wise(prefix, pc.cast(values, pa.string()), suffix, "")


def dictionary(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """Dictionary-encode ``column`` -> (int64 code per row, -1 for null; the distinct values).

    A dictionary-typed column gives its own indices and dictionary, which may also hold
    values no row uses any more (after rows were taken away)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)  # (an encoded column: combine_chunks unified the dictionaries)
    indices = pc.fill_null(column.indices, -1) if column.null_count else column.indices
    return indices.to_numpy(zero_copy_only=False).astype(np.int64), column.dictionary.to_pylist()


def normalize_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lowercase, trim and collapse whitespace (the form labels and phrases compare in)."""
    out = pc.utf8_lower(column)
    out = pc.replace_substring_regex(out, r"\s+", " ")
    return pc.utf8_trim_whitespace(out)


def normalized_codes(column: pa.Array | pa.ChunkedArray,
                     transform: Callable[[pa.Array], pa.Array] = normalize_text) -> np.ndarray:
    """Int64 code per row of ``transform(column)`` (-1 for null), with ``transform`` applied to
    the distinct values only: labels repeat, so this is far cheaper than per row."""
    codes, values = dictionary(column)
    if not values:
        return codes
    norm_codes, _ = dictionary(transform(pa.array(values, pa.string())))
    return np.r_[norm_codes, -1][codes]  # code -1 (null) picks the appended -1


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: numpy 2.4's hash-based ``np.unique`` is ~50x slower
    on millions of int64)."""
    out = np.sort(values)
    return out[np.r_[True, out[1:] != out[:-1]]] if len(out) else out


def dense_codes(values: np.ndarray) -> np.ndarray:
    """Int64 rank of each value among the distinct values (``np.unique(return_inverse=True)``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    codes = np.empty(len(values), np.int64)
    codes[order] = np.cumsum(np.r_[False, ordered[1:] != ordered[:-1]]) if len(values) else 0
    return codes


def group_codes(*columns: pa.Array | pa.ChunkedArray | np.ndarray, dense: bool = True) -> np.ndarray:
    """Int64 group id per row from the tuple of ``columns`` (null is its own value): equal
    tuples get equal ids. ``dense``: ids are ``0..groups-1`` in tuple order (one more sort)."""
    n = len(columns[0]) if columns else 0
    codes = np.zeros(n, dtype=np.int64)
    if n == 0:
        return codes
    span = 1  # codes lie in [0, span)
    for col in columns:
        if isinstance(col, np.ndarray) and col.dtype.kind in "iu":
            part = col.astype(np.int64) - int(col.min())
        elif isinstance(col, np.ndarray):
            part = dense_codes(col)
        else:
            part = dictionary(col)[0] + 1
        width = int(part.max()) + 1
        if span * width >= 2**62:  # compact before the mixed-radix code could overflow
            codes = dense_codes(codes)
            span = int(codes.max()) + 1
        codes = codes * width + part
        span *= width
    return dense_codes(codes) if dense else codes
