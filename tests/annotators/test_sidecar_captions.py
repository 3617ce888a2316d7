"""sidecar_captions: alt text from .json / .txt sidecars and Parquet columns becomes captions."""

from __future__ import annotations

import pytest
from PIL import Image

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from storage.schema import ANNOTATIONS, table_from_rows


def _item(image_id: str, meta: dict) -> ImageItem:
    return ImageItem(image_id=image_id, image=Image.new("RGB", (8, 8)), width=8, height=8, context={"meta": meta})


def test_captions_from_each_sidecar_kind():
    batch = ImageBatch([_item("a", {"json": {"caption": " A red circle. "}}), _item("b", {"txt": "alt"}),
                        _item("c", {"columns": {"caption": "from parquet"}}), _item("d", {}),
                        _item("e", {"json": {"caption": ""}})], round=2)
    rows = build_annotator("sidecar_captions").annotate(batch)
    table_from_rows(rows, ANNOTATIONS).validate(full=True)
    assert [(r["image_id"], r["text"], r["granularity"], r["round"]) for r in rows] == [
        ("a", "A red circle.", "brief", 2), ("c", "from parquet", "brief", 2)]
    txt = build_annotator("sidecar_captions", field="txt", granularity="detailed").annotate(batch)
    assert [(r["image_id"], r["text"], r["granularity"]) for r in txt] == [("b", "alt", "detailed")]


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="granularity"):
        build_annotator("sidecar_captions", granularity="long")
