"""The JSON of a release's exports: strict JSON bytes, curated rows made JSON-ready, Florence-2
JSON lines (written as a stream, one file per split) and WebDataset samples' JSON.

Every writer is a pure function of the release's sorted curated rows (dicts with the
``CURATED`` columns, geometry in absolute pixels of the upright image, boxes x0, y0, x1, y1)
and the images' sizes, so building the same round twice gives the same bytes. JSON is written
with sorted keys and coordinates rounded to 1/100 pixel. COCO is :mod:`engine.release.coco`.

Florence-2 (``florence2/{train,validation}.jsonl``): the examples of
:mod:`engine.retrain.examples` (split by image id), one file per split, ``image`` relative to the
file (``../images/<file name>``), ``prefix`` the task prompt, ``suffix`` the target;
:class:`Florence2Files` appends each image's lines as the build streams the images in image id
order, so no file is held.
"""

from __future__ import annotations

import collections
import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

Row = dict[str, Any]


class NonFiniteValue(ValueError):
    """A NaN or an infinity was about to be written into a release file (JSON has neither): an
    engine bug, since imports and annotators refuse them; the release is not written."""


def dumps(value: Any, indent: int | None = None, at: str = "") -> bytes:
    """Deterministic, strict JSON bytes (sorted keys, UTF-8, no trailing spaces); a non-finite
    number anywhere in ``value`` raises :class:`NonFiniteValue` naming where, never an invalid file
    (``at``: where ``value`` is in the document it is part of, e.g. ``annotations[3]``)."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=indent, allow_nan=False,
                          separators=(",", ": ") if indent else (",", ":")).encode("utf-8")
    except ValueError:
        where = _non_finite(value, at)
        if where is None:
            raise
        raise NonFiniteValue(f"a non-finite number ({where[1]}) was about to be written at {where[0] or 'the top'}"
                             f"{where[2]}: an engine bug, since imports refuse them; nothing was released, please "
                             "report it with this line") from None


def _non_finite(value: Any, path: str) -> tuple[str, float, str] | None:
    """(where, the value, the row it is in) of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value, ""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, child in children:
        found = _non_finite(child, (f"{path}.{key}" if path else key) if isinstance(key, str) else f"{path}[{key}]")
        if found is not None:
            row = value.get("fld_annotation_id") or value.get("annotation_id") if isinstance(value, dict) else None
            return (found if found[2] or not row else (found[0], found[1], f" (annotation {row})"))
    return None


def rounded(values: Iterable[float] | None) -> list[float] | None:
    """Coordinates rounded to 1/100 pixel (None stays None)."""
    return None if values is None else [round(float(v), 2) for v in values]


def json_row(row: Row) -> Row:
    """A curated row made JSON-ready: timestamps as ISO text, coordinates rounded to 1/100 px."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    for column in ("bbox", "quad"):
        out[column] = rounded(row.get(column))
    if row.get("polygons") is not None:
        out["polygons"] = [rounded(p) for p in row["polygons"]]
    if row.get("score") is not None:
        out["score"] = round(float(row["score"]), 4)
    return out


def florence2_line(image: str, image_id: str, task: str, prompt: str, target: str, width: int, height: int) -> Row:
    """One Florence-2 fine-tuning line: ``image`` (a path relative to the JSONL file), ``prefix``
    (the task prompt), ``suffix`` (the target) and our extras. ``fld export`` writes the same."""
    return {"image": image, "prefix": prompt, "suffix": target, "image_id": image_id, "task": task,
            "width": width, "height": height}


class Florence2Files:
    """``florence2/{split}.jsonl`` under ``folder``, appended to image by image (a split's file is
    made with its first line, so a split without examples has none): ``image`` relative to the
    file, ``prefix`` the task prompt, ``suffix`` the target, plus ``image_id``, ``task``, ``width``,
    ``height``. Images come in image id order, the order of the lines."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, BinaryIO] = {}
        self.counts: collections.Counter = collections.Counter()

    def add(self, image_id: str, meta: Mapping[str, Any], rows: list[Row], split: str, image: str) -> None:
        """The lines of one image (``meta``: its width and height; ``rows``: its curated rows;
        ``image``: its path as the file names it, ``../images/<file name>`` or the source)."""
        from engine.dataset.curated import CURATED_COLUMNS
        from florence2.targets import image_targets

        ordered = sorted(({c: row.get(c) for c in CURATED_COLUMNS} for row in rows), key=lambda r: r["annotation_id"])
        for task, prompt, target in image_targets(ordered, meta["width"], meta["height"]):
            if split not in self.files:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.files[split] = open(self.folder / f"{split}.jsonl", "wb")
            self.files[split].write(dumps(florence2_line(image, image_id, task, prompt, target, meta["width"],
                                                         meta["height"])) + b"\n")
            self.counts[f"{split}/{task}"] += 1

    def close(self) -> tuple[list[str], dict[str, int]]:
        """Close the files; returns the splits written (sorted) and the examples per ``split/task``."""
        for handle in self.files.values():
            handle.close()
        return sorted(self.files), dict(sorted(self.counts.items()))


def tar_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``name`` with fixed metadata (mtime 0, root owner, mode 644) so tars are reproducible."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    archive.addfile(info, io.BytesIO(data))


def sample_json(image_id: str, meta: Mapping[str, Any], rows: list[Row], with_bytes: bool) -> bytes:
    """``KEY.json`` of one WebDataset sample (key = image id): the image's file name, format, size,
    ``annotated``, source (when the sample does not hold the bytes) and curated rows."""
    doc = {"image_id": image_id, "file_name": meta["file_name"], "format": meta["format"], "width": meta["width"],
           "height": meta["height"], "annotated": bool(rows), "annotations": [json_row(r) for r in rows]}
    if not with_bytes:
        doc["source"] = {"shard": meta["shard"], "key": meta["key"]}
    return dumps(doc)
