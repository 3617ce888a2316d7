"""A release's images with their annotations, one row per image, as Hugging Face ``datasets``
loads them: ``load_dataset(RELEASE_FOLDER)`` gives PIL images and nested annotations per split.

Files: ``hf/{split}-KKKKK-of-NNNNN.parquet`` (``split``: train / validation, by image id as the
Florence-2 examples are split), zstd. Columns (pixels of the upright image; boxes x0, y0, x1, y1;
scores in [0, 1]: a model's confidence, null for given labels and rows their source did not
score, :mod:`engine.release.scores`):

* ``image``: ``{bytes, path}``, the bytes as ingested, ``path`` the file name under ``images/``
  (the ``Image`` feature);
* ``image_id`` (sha256 of the bytes), ``file_name`` (the image's own name, made safe and unique:
  :mod:`engine.release.names`), ``width``, ``height``;
* ``annotated``: whether any curated row is on the image (every ingested image is released;
  one without rows has empty lists);
* ``regions``: object and other non-OCR regions ``{annotation_id, label, text, region_type, bbox,
  score, mask_rle (COCO compressed RLE, or null), source}``;
* ``ocr``: OCR lines ``{annotation_id, text, quad (8 numbers, clockwise from the top-left), bbox,
  score, source}``;
* ``captions``: ``{annotation_id, granularity, text, score, source}``;
* ``phrases``: grounded phrases ``{annotation_id, caption_id, text, span_start, span_end, bbox,
  score, source}``.

The features are declared in each file's ``huggingface`` schema metadata (``datasets`` 4+
``List`` form) and in the card's ``dataset_info``, so no ``datasets`` import is needed to build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

Row = dict[str, Any]
F32 = pa.float32()
BOX = pa.list_(F32)
REGION = pa.struct([("annotation_id", pa.string()), ("label", pa.string()), ("text", pa.string()),
                    ("region_type", pa.string()), ("bbox", BOX), ("score", F32), ("mask_rle", pa.string()),
                    ("source", pa.string())])
OCR = pa.struct([("annotation_id", pa.string()), ("text", pa.string()), ("quad", BOX), ("bbox", BOX),
                 ("score", F32), ("source", pa.string())])
CAPTION = pa.struct([("annotation_id", pa.string()), ("granularity", pa.string()), ("text", pa.string()),
                     ("score", F32), ("source", pa.string())])
PHRASE = pa.struct([("annotation_id", pa.string()), ("caption_id", pa.string()), ("text", pa.string()),
                    ("span_start", pa.int32()), ("span_end", pa.int32()), ("bbox", BOX), ("score", F32),
                    ("source", pa.string())])
SCHEMA = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                    ("image_id", pa.string()), ("file_name", pa.string()), ("width", pa.int32()),
                    ("height", pa.int32()), ("annotated", pa.bool_()), ("regions", pa.list_(REGION)),
                    ("ocr", pa.list_(OCR)), ("captions", pa.list_(CAPTION)),
                    ("phrases", pa.list_(PHRASE))])


def hf_feature(kind: pa.DataType) -> Any:
    """The ``datasets`` feature dict of an Arrow type (Value / List / struct as a dict)."""
    if pa.types.is_list(kind):
        return {"feature": hf_feature(kind.value_type), "_type": "List"}
    if pa.types.is_struct(kind):
        return {kind.field(i).name: hf_feature(kind.field(i).type) for i in range(kind.num_fields)}
    names = {pa.string(): "string", pa.float32(): "float32", pa.int32(): "int32", pa.binary(): "binary",
             pa.bool_(): "bool"}
    return {"dtype": names[kind], "_type": "Value"}


def features() -> dict[str, Any]:
    """The features of :data:`SCHEMA`, ``image`` as an ``Image``."""
    out = {field.name: hf_feature(field.type) for field in SCHEMA}
    out["image"] = {"_type": "Image"}
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _floats(values: Iterable[float] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def image_row(image_id: str, meta: Mapping[str, Any], data: bytes, rows: list[Row]) -> Row:
    """One image's row (module docstring) from its curated rows."""
    regions, ocr, captions, phrases = [], [], [], []
    for r in sorted(rows, key=lambda r: r["annotation_id"]):
        common = {"annotation_id": r["annotation_id"], "score": _float(r.get("score")), "source": r.get("source")}
        if r["kind"] == "caption":
            captions.append({**common, "granularity": r.get("granularity"), "text": r.get("text")})
        elif r["kind"] == "phrase":
            phrases.append({**common, "caption_id": r.get("parent_id"), "text": r.get("text"),
                            "span_start": r.get("span_start"), "span_end": r.get("span_end"),
                            "bbox": _floats(r.get("bbox"))})
        elif r["kind"] == "region" and r.get("region_type") == "ocr":
            ocr.append({**common, "text": r.get("text"), "quad": _floats(r.get("quad")), "bbox": _floats(r.get("bbox"))})
        elif r["kind"] == "region":
            regions.append({**common, "label": r.get("label"), "text": r.get("text"), "region_type": r.get("region_type"),
                            "bbox": _floats(r.get("bbox")), "mask_rle": r.get("mask_rle")})
    return {"image": {"bytes": data, "path": meta["file_name"]}, "image_id": image_id, "file_name": meta["file_name"],
            "width": int(meta["width"]), "height": int(meta["height"]), "annotated": bool(rows), "regions": regions,
            "ocr": ocr, "captions": captions, "phrases": phrases}


class HfFiles:
    """``hf/`` under ``stage`` (module docstring), written as the images come in image id order:
    each split's images in files of ``images_per_file`` (``split_sizes``: images per split, known
    before, so each file's name says how many files its split has); each image's bytes are read
    from ``images_dir / file_name`` when its file is written, so the bytes of one file at a time
    are held (and the rows of at most one unwritten file per split)."""

    def __init__(self, stage: Path, images_dir: Path, split_sizes: Mapping[str, int], images_per_file: int):
        self.stage, self.images_dir, self.images_per_file = stage, images_dir, images_per_file
        self.sizes = dict(split_sizes)
        self.schema = SCHEMA.with_metadata({"huggingface": json.dumps({"info": {"features": features()}})})
        self.pending: dict[str, list[tuple[str, Mapping[str, Any], list[Row]]]] = {split: [] for split in self.sizes}
        self.written: dict[str, int] = dict.fromkeys(self.sizes, 0)
        self.files: dict[tuple[str, int], tuple[str, int]] = {}
        self.splits: dict[str, dict[str, int]] = {}
        (stage / "hf").mkdir(parents=True, exist_ok=True)

    def add(self, image_id: str, meta: Mapping[str, Any], rows: list[Row], split: str) -> None:
        """One image (``meta``: its file name and size) with its curated rows."""
        self.pending[split].append((image_id, meta, rows))
        if len(self.pending[split]) == self.images_per_file or \
                self.written[split] + len(self.pending[split]) == self.sizes[split]:
            self._write(split)

    def _write(self, split: str) -> None:
        chunk, files = self.pending[split], max(1, -(-self.sizes[split] // self.images_per_file))
        k = self.written[split] // self.images_per_file
        rel = f"hf/{split}-{k:05d}-of-{files:05d}.parquet"
        table = pa.Table.from_pylist([image_row(i, meta, (self.images_dir / meta["file_name"]).read_bytes(), rows)
                                      for i, meta, rows in chunk], schema=self.schema)
        pq.write_table(table, self.stage / rel, compression="zstd")
        del table
        self.files[(split, k)] = (rel, len(chunk))
        split_size = self.splits.setdefault(split, {"num_examples": 0, "num_bytes": 0})
        split_size["num_examples"] += len(chunk)
        split_size["num_bytes"] += pq.read_table(self.stage / rel).nbytes  # as `datasets` measures it: read back
        self.written[split] += len(chunk)
        self.pending[split] = []

    def close(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Rows per written file (relative paths, in split then file order) and, per split,
        ``num_examples`` and ``num_bytes`` (the size of its files' Arrow tables as read back,
        which is what ``datasets`` records when it loads them; the card declares both)."""
        if any(self.pending.values()) or self.written != self.sizes:
            from engine.release.batching import RoundChanged

            raise RoundChanged(f"the images ({self.sizes} per split counted, {self.written} streamed)")
        return ({rel: n for _, (rel, n) in sorted(self.files.items())},
                {split: self.splits[split] for split in sorted(self.splits)})
