"""The annotator contract, run over every registered annotator on the same small batch.

Each annotator is built by its test-size builder (tests/annotators/builders*.py) through the
production path (``build_annotator`` on a checkpoint saved to disk) and must return rows that
fit the annotation schema, name it as their source, stay inside the image, and point at rows
that exist.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.registry import annotator_class, annotator_names
from storage.schema import ANNOTATIONS, KINDS, table_from_rows
from tests.annotators.builders import all_builders
from tests.annotators.builders_language import context_rows

ROUND = 3


def _batch() -> ImageBatch:
    items = []
    for index, (width, height) in enumerate([(96, 64), (64, 80), (72, 72)]):
        rng = np.random.default_rng(index)
        image = Image.fromarray(rng.integers(150, 255, (height, width, 3), dtype=np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        draw.ellipse([width * 0.1, height * 0.2, width * 0.5, height * 0.7], fill=(200, 30, 30))
        draw.rectangle([width * 0.55, height * 0.05, width * 0.95, height * 0.45], fill=(30, 30, 200))
        image_id = hashlib.sha256(image.tobytes()).hexdigest()
        items.append(ImageItem(image_id=image_id, image=image, width=width, height=height, key=f"img{index}",
                               file_name=f"img{index}.png",
                               context={"annotations": context_rows(image_id, width, height, ROUND),
                                        "meta": {}}))
    return ImageBatch(items=items, round=ROUND)


def _inside(values, width: float, height: float) -> bool:
    xs, ys = np.asarray(values[0::2], float), np.asarray(values[1::2], float)
    tol = 1e-3
    return bool((xs >= -tol).all() and (xs <= width + tol).all() and (ys >= -tol).all() and (ys <= height + tol).all())


def test_every_registered_annotator_has_a_builder():
    assert sorted(all_builders()) == annotator_names()


@pytest.mark.parametrize("name", annotator_names())
def test_contract(name, tmp_path):
    annotator = all_builders()[name](tmp_path)
    assert annotator.name == name and isinstance(annotator.version, str) and annotator.version
    assert annotator.batch_elements_kwargs()["max_batch_size"] >= 1
    batch = _batch()
    annotator.load()
    annotator.load()  # idempotent
    rows = annotator.annotate(batch)
    assert isinstance(rows, list)
    table_from_rows(rows, ANNOTATIONS).validate(full=True)  # schema: types, nullability, no extra keys
    sizes = {item.image_id: (item.width, item.height) for item in batch.items}
    known_ids = {r["annotation_id"] for item in batch.items for r in item.context["annotations"]}
    known_ids |= {r["annotation_id"] for r in rows}
    texts = {r["annotation_id"]: r.get("text") for item in batch.items for r in item.context["annotations"]}
    texts.update({r["annotation_id"]: r.get("text") for r in rows})
    assert len({r["annotation_id"] for r in rows}) == len(rows), "duplicate annotation ids"
    for row in rows:
        assert row["source"] == name and row["round"] == ROUND and row["source_version"] == annotator.version
        assert row["kind"] in KINDS and row["kind"] in annotator_class(name).kinds
        made = Rows(row["kind"], derived=row.get("parent_id") is not None, region_type=row.get("region_type"))
        assert any(r.may_hold(made, name) for r in annotator_class(name).emitted_rows()), ("not in emits", made)
        width, height = sizes[row["image_id"]]
        for column in ("bbox", "quad"):
            if row.get(column) is not None:
                assert _inside(row[column], width, height), (column, row[column], width, height)
        if row.get("bbox") is not None:
            x0, y0, x1, y1 = row["bbox"]
            assert x0 <= x1 and y0 <= y1
        for polygon in row.get("polygons") or []:
            assert _inside(polygon, width, height)
        if row.get("parent_id") is not None:
            assert row["parent_id"] in known_ids
        if row["kind"] == "phrase" and row.get("span_start") is not None:
            parent_text = texts[row["parent_id"]]
            assert parent_text[row["span_start"]:row["span_end"]] == row["text"]
