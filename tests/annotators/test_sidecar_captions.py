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
        ("a", "A red circle.", "brief", 2), ("b", "alt", "brief", 2), ("c", "from parquet", "brief", 2)]
    txt = build_annotator("sidecar_captions", field="txt", granularity="detailed").annotate(batch)
    assert [(r["image_id"], r["text"], r["granularity"]) for r in txt] == [("b", "alt", "detailed")]


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="granularity"):
        build_annotator("sidecar_captions", granularity="long")


def test_sidecars_by_convention_without_a_field():
    """A ``.txt`` sidecar is the caption (WebDataset's KEY.txt beside KEY.jpg); ``.json`` sidecars
    and Parquet columns give their usual caption fields, in order; an explicit field wins."""
    batch = ImageBatch([
        _item("txt", {"txt": "  a dog on a beach\n"}),
        _item("alt", {"json": {"alt_text": "a red car", "description": "a long description"}}),
        _item("order", {"json": {"description": "third", "text": "first", "alt": "second"}}),
        _item("both", {"txt": "from txt", "json": {"caption": "from json"}}),
        _item("column", {"columns": {"alt": "from a column"}}),
        _item("none", {"json": {"url": "http://example.com/x.jpg", "caption": "  "}}),
    ], round=1)
    rows = build_annotator("sidecar_captions").annotate(batch)
    assert [(r["image_id"], r["text"]) for r in rows] == [
        ("txt", "a dog on a beach"), ("alt", "a red car"), ("order", "first"), ("both", "from txt"),
        ("column", "from a column")]
    explicit = build_annotator("sidecar_captions", field="description").annotate(batch)
    assert [(r["image_id"], r["text"]) for r in explicit] == [("alt", "a long description"), ("order", "third")]


def test_txt_sidecars_of_a_real_folder_become_captions(tmp_path):
    """Files on disk: KEY.jpg + KEY.txt and KEY.jpg + KEY.json, ingested, read back as each image's meta."""
    from engine.dataset.locations import image_locations
    from engine.ingest.shards import IngestConfig, ingest
    from storage.layout import DataRoot

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, color in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (32, 24), color).save(photos / f"IMG_{i:04d}.jpg")
    (photos / "IMG_0000.txt").write_text("a red wall\n")
    (photos / "IMG_0001.json").write_text('{"alt_text": "a green field", "width": 32}')
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(photos)], IngestConfig(progress=False))
    locations = image_locations(root)
    items = [ImageItem(image_id=loc.image_id, image=Image.new("RGB", (8, 8)), width=8, height=8,
                       context={"meta": loc.meta}) for loc in locations.values()]
    rows = build_annotator("sidecar_captions").annotate(ImageBatch(items, round=0))
    keys = {loc.image_id: loc.key for loc in locations.values()}
    assert sorted((keys[r["image_id"]], r["text"]) for r in rows) == [
        ("IMG_0000", "a red wall"), ("IMG_0001", "a green field")]
