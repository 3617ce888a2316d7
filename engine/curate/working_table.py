"""The working form of curation (``filters.base``): building it from the raw rows, and turning
its live rows back into plain columns for the rules that do not opt into it.

The working table is narrow (``CURATION_COLUMNS`` + ``label`` + ``IMAGE_INDEX``): the image
ids are hashed once here (``engine.curate.string_index``) and never copied, the
low-cardinality columns and ``text`` are dictionary-encoded, boxes and quads are fixed-size
lists. :func:`plain_rows` gives a rule registered without ``working_form`` exactly the
columns of ``storage.schema.ANNOTATIONS`` plus ``label`` for the rows still alive: the
columns the rules may have replaced (boxes clipped, texts chosen) from the working table,
the others from the raw rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.curate.string_index import index_in
from filters.base import (
    CATEGORICAL_COLUMNS,
    CURATION_COLUMNS,
    IMAGE_INDEX,
    dictionary,
    equals,
    image_index,
    valid,
)
from storage.arrow_masks import with_nulls
from storage.geometry import as_fixed_size
from storage.schema import ANNOTATIONS

#: the type of every plain column the working form may hold in another form
PLAIN_TYPES: dict[str, pa.DataType] = {
    **{c: pa.string() for c in (*CATEGORICAL_COLUMNS, "text")},
    "bbox": ANNOTATIONS.field("bbox").type,
    "quad": ANNOTATIONS.field("quad").type,
}


#: the columns a rule without the working form is given
PLAIN_SCHEMA = pa.schema([*ANNOTATIONS, pa.field("label", pa.string())])


def image_index_column(table: pa.Table, images: pa.Table | None) -> pa.Array:
    """The :data:`IMAGE_INDEX` column for ``table`` (which has ``image_id``), looked up with
    the compiled string index: unknown images get distinct negative codes so they still
    group apart."""
    if images is None or table.num_rows == 0:
        index = np.full(table.num_rows, -1, np.int64)
    else:
        index = index_in(table["image_id"], images["image_id"])
    unknown = np.flatnonzero(index < 0)
    if len(unknown):
        codes, _ = dictionary(table["image_id"].take(pa.array(unknown)))
        index[unknown] = -1 - codes
    return pa.array(index.astype(np.int32))


def scatter_strings(parts: list[tuple[np.ndarray, pa.Array | pa.ChunkedArray, np.ndarray | None]], n: int
                    ) -> pa.Array | pa.ChunkedArray:
    """A string column of ``n`` rows, null except where a part ``(rows, values, index)`` puts
    ``values[index[j]]`` (``values[j]`` when ``index`` is None) at row ``rows[j]``: one take
    over all parts."""
    where = np.full(n, -1, np.int64)
    chunks, offset = [], 0
    for rows, values, index in parts:
        chunks += [c.cast(pa.string()) for c in (values.chunks if isinstance(values, pa.ChunkedArray) else [values])]
        where[rows] = offset + (np.arange(len(rows)) if index is None else index)
        offset += len(values)
    flat = pa.chunked_array([c for c in chunks if len(c)] or [pa.array([], pa.string())], pa.string())
    return flat.take(with_nulls(where, where < 0))


def scatter_reasons(parts: list[tuple[np.ndarray, pa.Array]], n: int) -> pa.DictionaryArray:
    """The reason column of ``n`` rows, null except where a part ``(rows, reasons)`` puts
    ``reasons[j]`` at row ``rows[j]``; dictionary-encoded from the parts' own dictionaries
    (filters give one-text reasons as dictionaries), so no text is hashed per row."""
    codes = np.full(n, -1, np.int32)  # into the parts' dictionaries, concatenated
    texts, offset = [], 0
    for rows, reasons in parts:
        reasons = reasons.combine_chunks() if isinstance(reasons, pa.ChunkedArray) else reasons
        encoded = reasons if pa.types.is_dictionary(reasons.type) else pc.dictionary_encode(reasons.cast(pa.string()))
        index = pc.fill_null(encoded.indices, -1 - offset).to_numpy(zero_copy_only=False).astype(np.int32)
        codes[rows] = index + offset
        texts.append(encoded.dictionary.cast(pa.string()))
        offset += len(encoded.dictionary)
    distinct = pc.dictionary_encode(pa.concat_arrays(texts) if texts else pa.array([], pa.string()))
    remap = distinct.indices.to_numpy(zero_copy_only=False).astype(np.int32)  # the same text of two rules: one entry
    if not np.array_equal(remap, np.arange(len(remap))):
        codes = np.r_[remap, np.int32(-1)][codes]  # code -1 picks the appended -1
    return pa.DictionaryArray.from_arrays(with_nulls(codes, codes < 0), distinct.dictionary)


def encode_column(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """``column`` as one dictionary array (an encoded column only unifies its chunks' dictionaries)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type.value_type).dictionary_encode()


def working_table(raw: pa.Table, images: pa.Table, pool: ThreadPoolExecutor
                   ) -> tuple[pa.Table, tuple[np.ndarray, list[str]]]:
    """The narrow table the filters see: :data:`CURATION_COLUMNS` with the
    :data:`CATEGORICAL_COLUMNS` and ``text`` dictionary-encoded, plus ``label`` (a top-level
    region's raw text) and :data:`IMAGE_INDEX` (image ids hashed once, here); and the producer
    of every row (code per row, distinct ``source@source_version`` tags) for the agreement lists."""
    encoded = [c for c in CURATION_COLUMNS if c in CATEGORICAL_COLUMNS]
    extra = ["text", "source_version"]
    jobs = {c: pool.submit(encode_column, raw[c]) for c in [*encoded, *extra]}  # on workers while this thread
    built = {"bbox": as_fixed_size(raw["bbox"], 4), "quad": as_fixed_size(raw["quad"], 8)}
    index = image_index_column(raw, images)  # converts the boxes and hashes the image ids
    columns = {c: job.result() for c, job in jobs.items()}
    text, version = columns.pop("text"), columns.pop("source_version")
    is_label = equals(columns["kind"], "region") & ~valid(raw["parent_id"]) & valid(text)  # a top-level region's text
    codes = (pc.fill_null(text.indices, 0) if text.null_count else text.indices).to_numpy(zero_copy_only=False)
    label = pa.DictionaryArray.from_arrays(with_nulls(codes.astype(np.int32, copy=False), ~is_label), text.dictionary)
    built["text"] = text
    work = pa.Table.from_arrays([columns.get(c, built.get(c, raw[c])) for c in CURATION_COLUMNS] + [label],
                                names=[*CURATION_COLUMNS, "label"])
    (source, sources), (version, versions) = dictionary(columns["source"]), dictionary(version)
    pair = source * len(versions) + version
    pairs = np.flatnonzero(np.bincount(pair, minlength=1))  # tags are built for the distinct pairs only
    code_of = np.zeros(len(sources) * len(versions) or 1, np.int64)
    code_of[pairs] = np.arange(len(pairs))
    tags = [f"{sources[p // len(versions)]}@{versions[p % len(versions)]}" for p in pairs]
    producer = (code_of[pair], tags)
    return work.append_column(IMAGE_INDEX, index), producer


def image_ids_of(index: np.ndarray, images: pa.Table, raw_ids: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """The image ids of the raw ``rows`` whose :data:`IMAGE_INDEX` is ``index``: gathered from
    the (small, cache-resident) images table where known, from the raw rows otherwise."""
    known = index >= 0
    if known.all():
        return images["image_id"].take(pa.array(index))
    unknown = np.flatnonzero(~known)
    return scatter_strings([(np.flatnonzero(known), images["image_id"], index[known]), (unknown, raw_ids, rows[unknown])],
                    len(index))


def plain_rows(work: pa.Table, rows: np.ndarray, raw: pa.Table, images: pa.Table) -> pa.Table:
    """The live rows ``work`` (at raw positions ``rows``) with plain columns: exactly
    ``ANNOTATIONS`` + ``label``, strings decoded, boxes as variable lists, ``image_id``
    in place of :data:`IMAGE_INDEX`."""
    index = image_index(work, images)
    taken = raw.select([c for c in ANNOTATIONS.names if c not in work.column_names and c != "image_id"])
    taken = taken.take(pa.array(rows))
    columns = []
    for name in [*ANNOTATIONS.names, "label"]:
        if name == "image_id":
            columns.append(image_ids_of(index, images, raw["image_id"], rows))
        elif name in work.column_names:
            columns.append(work[name].cast(PLAIN_TYPES.get(name, work.schema.field(name).type)))
        else:
            columns.append(taken[name])
    return pa.Table.from_arrays(columns, schema=PLAIN_SCHEMA)


def to_working_type(values: pa.Array | pa.ChunkedArray, column: str, work: pa.Table, rule: str) -> pa.Array:
    """A plain rule's replacement ``values`` for ``column`` in the working table's type; a
    column the working form does not carry cannot be replaced (a one-line error)."""
    if column not in work.column_names or column == IMAGE_INDEX:
        raise ValueError(f"filter {rule!r} replaces column {column!r}, which curation does not carry "
                         f"(it may replace: {', '.join(c for c in work.column_names if c != IMAGE_INDEX)})")
    return values.cast(work.schema.field(column).type)
