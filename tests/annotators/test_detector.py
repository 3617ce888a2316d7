"""detector: test-size DETR and RT-DETR checkpoints loaded by path through the annotator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from annotators.base import AnnotatorError, ImageBatch, ImageItem
from annotators.registry import build_annotator
from hf.loading import checkpoint_version
from storage.schema import ANNOTATIONS, table_from_rows
from tests.annotators.builders_vision import LABELS, tiny_detr_dir, tiny_rtdetr_dir

SIZES = [(80, 50), (40, 70), (64, 64)]  # (width, height)


@pytest.fixture(scope="module", params=["detr", "rtdetr"])
def checkpoint(request, tmp_path_factory):
    make = {"detr": tiny_detr_dir, "rtdetr": tiny_rtdetr_dir}[request.param]
    return make(tmp_path_factory.mktemp(request.param))


def _batch(round_: int = 3) -> ImageBatch:
    rng = np.random.default_rng(1)
    items = [
        ImageItem(image_id=f"img{i}", image=Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                  width=w, height=h)
        for i, (w, h) in enumerate(SIZES)
    ]
    return ImageBatch(items=items, round=round_)


def test_rows_are_schema_valid_in_bounds_and_labelled_from_id2label(checkpoint):
    detector = build_annotator("detector", model=str(checkpoint), threshold=0.0, batch_size=2)
    batch = _batch()
    rows = detector.annotate(batch)
    table = table_from_rows(rows, ANNOTATIONS)
    assert table.num_rows == len(rows)
    sizes = {item.image_id: (item.width, item.height) for item in batch.items}
    assert set(sizes) == {row["image_id"] for row in rows}  # every image of both chunks got rows
    for row in rows:
        assert (row["kind"], row["region_type"], row["source"], row["round"]) == ("region", "object", "detector", 3)
        assert row["source_version"] == checkpoint_version(checkpoint)
        assert row["text"] in LABELS.values()
        width, height = sizes[row["image_id"]]
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert 0.0 <= row["score"] <= 1.0


def test_threshold_filters_scores(checkpoint):
    rows = build_annotator("detector", model=str(checkpoint), threshold=0.0).annotate(_batch())
    cut = float(np.median([row["score"] for row in rows]))
    kept = build_annotator("detector", model=str(checkpoint), threshold=cut).annotate(_batch())
    assert 0 < len(kept) < len(rows)
    assert all(row["score"] >= cut - 1e-6 for row in kept)


def test_load_is_lazy_and_idempotent(checkpoint):
    detector = build_annotator("detector", model=str(checkpoint))
    assert detector._model is None
    detector.load()
    model = detector._model
    detector.load()
    assert detector._model is model


def test_missing_model_dir_fails_at_construction(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(AnnotatorError, match="no-such-checkpoint"):
        build_annotator("detector", model=str(missing))
    with pytest.raises(AnnotatorError, match="model"):
        build_annotator("detector")


@pytest.mark.parametrize("setting,value", [("threshold", 1.5), ("batch_size", 0), ("dtype", "int8"),
                                           ("device", "tpu")])
def test_bad_settings_raise_value_error_naming_them(checkpoint, setting, value):
    with pytest.raises(ValueError, match=setting):
        build_annotator("detector", model=str(checkpoint), **{setting: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_rows_are_in_bounds(checkpoint, dtype):
    rows = build_annotator("detector", model=str(checkpoint), threshold=0.0, device="cuda", dtype=dtype).annotate(
        _batch())
    assert rows
    table_from_rows(rows, ANNOTATIONS)
    sizes = {f"img{i}": size for i, size in enumerate(SIZES)}
    for row in rows:
        width, height = sizes[row["image_id"]]
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
