"""The filter contract, its registry and the vectorised helpers every filter shares.

A filter is one file: a plain function ``fn(table, config, ctx) -> FilterResult`` registered
with its settings dataclass::

    @dataclass(frozen=True)
    class CaptionLengthConfig:
        max_words: int = 40          # validated in __post_init__

    @register_filter("caption_length", settings=CaptionLengthConfig)
    def caption_length(table, config, ctx):
        words = pc.utf8_length(...)  # ``table`` has plain columns: see below
        ...
        return FilterResult(keep=..., reason=...)

``table`` is an Arrow table whose columns are exactly those of ``storage.schema.ANNOTATIONS``
(``image_id`` and ``text`` as strings, ``bbox``/``quad`` as variable lists of float32, pixels
of the upright image) plus ``label`` (a region's class label, kept when ``region_text``
replaces its text); ``config`` the settings object of the rule's config section;
``ctx`` a :class:`FilterContext` with the tables it may look things up in. It returns, per
row of ``table``: whether the row is kept, the reason when it is not, and optionally whether
the rule judged the row at all, which surviving row absorbed it and replacement column
values. Filters never loop in Python over rows; they use numpy, ``pyarrow.compute``, DuckDB
or compiled kernels.

The settings dataclass registers with the rule: the rule's section of the ``[curation]``
config (``section``, default the rule's name; several rules may share one) is built from
it, so a new filter is one new module plus its test. Every module of this package is
imported on the first registry lookup, then the user's plugin modules (``FLD_PLUGINS``, the
engine config's ``plugins``).

**The working form (opt-in).** Curation runs over millions of rows with a narrower table:
the :data:`CURATION_COLUMNS` plus ``label`` and :data:`IMAGE_INDEX` (the row of
``ctx.images`` holding the row's image, negative for unknown images) in place of
``image_id``, the :data:`CATEGORICAL_COLUMNS` and ``text`` dictionary-encoded, ``bbox`` and
``quad`` as fixed-size lists. A rule registered with ``working_form=True`` promises to read
its table only through what accepts both forms: :func:`dictionary`, :func:`equals`,
:func:`is_in`, :func:`normalized_codes`, :func:`image_index`, :func:`image_keys`,
``pyarrow.compute``'s ``take``, ``filter``, ``unique``, ``index_in``, ``equal`` and
``if_else``, and ``storage.geometry.boxes_from_arrow`` / ``quads_from_arrow``; it then gets
the working table as it is. Every other rule gets plain columns (``engine.curate`` converts
the live rows for it), so a rule written against the plain columns is always right, and
``tests/filters/test_contract.py`` checks that every registered rule decides the same
either way.

During curation the engine may split the rows into partitions of whole images that run the
rules on threads; a rule whose decision for a row depends on rows of other images
registers a ``prepare`` hook ``prepare(table, config, ctx) -> part`` and a
``combine(parts) -> state`` hook: the engine calls ``prepare`` on the live rows of each
partition (on its thread), ``combine`` on the parts, and passes the state as
``ctx.prepared`` to the rule on each partition. When a round is curated in partitions of
its own (``engine.curate.partitioned``), each in a task of its own, a rule may also register
``state_files`` (:class:`StateFiles`): each task writes its parts to one file, the state is
built from the files out of core and each partition reads only its own share of it, so no
process ever holds a state that grows with the round.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.arrow_masks import valid_mask, with_nulls
from storage.plugins import load_plugins

#: modules of this package that hold no rule
_NOT_RULES = frozenset({"base", "kernels"})


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
    then prepares over its own table). calibrated: source -> score threshold calibrated for
    the checkpoint that produced this round's rows of that source (``engine.retrain``
    measures it on held-out curated labels; empty when none is known). reviews: the people's
    verdicts that bind this round (``filters.human_review.ReviewState``; None: no review).
    """

    images: pa.Table | None = None
    previous: pa.Table | None = None
    text_metrics: Callable[[Sequence[str]], pa.Table] | None = None
    workers: int | None = None
    prepared: Any = None
    calibrated: Mapping[str, float] = field(default_factory=dict)
    reviews: Any = None


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
class StateFiles:
    """A hooked rule's state built out of core, for a round curated in partitions
    (``engine.curate.partitioned``). ``write(parts, index, path)``: partition ``index``'s
    ``prepare`` parts stored as the one file ``path``; ``combine(paths, folder, scratch)``:
    every partition's file (listed by partition index) turned into one state per partition
    under the new folder ``folder``, in memory bounded by a partition (spilling under
    ``scratch``); ``read(folder, index)``: partition ``index``'s state, given to the rule as
    ``ctx.prepared`` — it must decide each of that partition's rows as the in-memory
    ``combine`` over every part would."""

    write: Callable[[list, int, Path], None]
    combine: Callable[[list[Path], Path, Path], None]
    read: Callable[[Path, int], Any]


@dataclass(frozen=True)
class FilterSpec:
    """A registered rule: its function, its config section and that section's settings
    class, whether it takes the working form, and its optional ``prepare`` and ``combine``
    hooks (state computed over the rows of all partitions, see the module docstring).
    ``protects``: the rows it judges and keeps are judged by no later rule and merge as they
    are (people's verdicts, ``filters.human_review``)."""

    name: str
    fn: FilterFn
    section: str
    settings: type
    working_form: bool = False
    prepare: PrepareFn | None = None
    combine: CombineFn | None = None
    protects: bool = False
    state_files: StateFiles | None = None


_REGISTRY: dict[str, FilterSpec] = {}
_SECTIONS: dict[str, type] = {}


def register_filter(name: str, *, settings: type, section: str | None = None, working_form: bool = False,
                    prepare: PrepareFn | None = None, combine: CombineFn | None = None, protects: bool = False,
                    state_files: StateFiles | None = None) -> Callable[[FilterFn], FilterFn]:
    """Decorator: register ``fn`` as rule ``name``.

    ``settings``: the dataclass of its config section (constructible with no arguments: the
    defaults); ``section``: the ``[curation.SECTION]`` table it reads (default ``name``;
    rules sharing a section share one settings class); ``working_form``: the rule accepts
    the working form (module docstring); ``prepare`` and ``combine``: the hooks for state
    over every partition's rows (both or neither); ``protects``: the rows it judges and keeps
    are exempt from every later rule and from the merge; ``state_files``: how the state is
    built out of core for a round curated in partitions (needs the hooks; without it the
    partitions' parts are combined in memory)."""
    section = section or name
    if (prepare is None) != (combine is None):
        raise ValueError(f"filter {name!r} needs both a prepare and a combine hook, or neither")
    if state_files is not None and prepare is None:
        raise ValueError(f"filter {name!r}: state_files needs the prepare and combine hooks")
    if not (isinstance(settings, type) and is_dataclass(settings)):
        raise TypeError(f"filter {name!r}: settings must be a dataclass, got {settings!r}")
    if name in ("rules", "merge") or section in ("rules", "merge"):
        raise ValueError(f"filter {name!r}: 'rules' and 'merge' are curation's own keys")
    if _SECTIONS.get(section, settings) is not settings:
        raise ValueError(f"filter {name!r}: section {section!r} already has settings {_SECTIONS[section].__qualname__}")

    def wrap(fn: FilterFn) -> FilterFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"filter {name!r} is already registered by {_REGISTRY[name].fn.__qualname__}")
        _REGISTRY[name] = FilterSpec(name, fn, section, settings, working_form, prepare, combine, protects,
                                     state_files)
        _SECTIONS[section] = settings
        return fn

    return wrap


_BUILTINS_LOADED: list[bool] = []


def _load_builtins() -> None:
    """Import every rule module of this package (once per process), then the user's plugins
    (each call: the plugin list may change)."""
    if not _BUILTINS_LOADED:
        package = importlib.import_module(__package__ or "filters")
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in _NOT_RULES:
                importlib.import_module(f"{package.__name__}.{module.name}")
        _BUILTINS_LOADED.append(True)
    load_plugins()


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


def settings_sections() -> dict[str, type]:
    """``{section: settings class}`` of every registered rule, sorted by section."""
    _load_builtins()
    return dict(sorted(_SECTIONS.items()))


#: the annotation columns of the working form (``image_id`` and the wide columns no built-in
#: rule reads are left out; ``label`` and :data:`IMAGE_INDEX` are added)
CURATION_COLUMNS: tuple[str, ...] = (
    "annotation_id", "source", "kind", "granularity", "region_type", "text", "bbox", "quad",
    "parent_id", "span_start", "span_end", "score",
)
#: low-cardinality string columns that are dictionary-encoded in the working form (so the
#: working table shrinks by int32 takes and :func:`dictionary` is free)
CATEGORICAL_COLUMNS: tuple[str, ...] = ("source", "kind", "granularity", "region_type", "label")
#: the int32 column of the working form in place of ``image_id``: the row of
#: ``FilterContext.images`` holding the row's image, or a negative code (-1, -2, ...) per
#: distinct unknown image, so rules need not hash the 64-character image ids again
IMAGE_INDEX = "image_index"


# ------------------------------------------------------------------ vectorised helpers
def image_index(table: pa.Table, images: pa.Table | None) -> np.ndarray:
    """Row of ``images`` for each row's image (int64; negative when absent): the
    :data:`IMAGE_INDEX` column of the working form, else ``image_id`` looked up (the first
    row of an id listed twice)."""
    if IMAGE_INDEX in table.column_names:
        return to_numpy(table[IMAGE_INDEX], -1).astype(np.int64)
    if images is None or table.num_rows == 0:
        return np.full(table.num_rows, -1, np.int64)
    ids = images["image_id"]
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return to_numpy(pc.index_in(table["image_id"], value_set=ids), -1).astype(np.int64)


def image_keys(table: pa.Table, ctx: FilterContext) -> np.ndarray:
    """An int64 grouping key per row that equals for rows of the same image (known or not)."""
    if IMAGE_INDEX in table.column_names:
        return image_index(table, ctx.images)
    return dictionary(table["image_id"])[0]


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
