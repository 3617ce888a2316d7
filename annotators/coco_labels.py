"""Existing human labels from a COCO JSON file, as ``region`` rows of type object.

The file (``path`` setting) is read once with pycocotools' ``COCO``. An image item is
matched to a COCO image, first hit wins:

1. by COCO image id: ``item.context["meta"]["coco_id"]`` (``meta`` a dict or a JSON string);
2. by file name: ``item.file_name``, then its basename, then ``item.key`` and the key's
   basename followed by each of :data:`IMAGE_EXTENSIONS`, against each COCO image's
   ``file_name`` and its basename.

Items with no match, and COCO images without annotations, yield no rows. Every annotation of
the matched image gives one row: ``text`` = the category name; ``bbox`` = COCO
``[x, y, w, h]`` converted to ``[x0, y0, x1, y1]`` absolute pixels of the upright image;
when a segmentation exists (polygons, or RLE compressed or not) ``polygons`` (absolute
pixels) and ``mask_rle`` (COCO compressed RLE over the item's image); ``score`` is null.

Scaling: when the COCO image's ``width``/``height`` differ from the item's (the labels were
made on a resized copy), boxes and polygons are scaled by ``item.width / coco_width`` on x
and ``item.height / coco_height`` on y, polygons are rasterized at the item's size, and RLE
masks are resized with nearest-neighbour sampling. Orientation is not corrected: COCO labels
are assumed to be on the upright image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotators.base import Annotator, AnnotatorError, ImageBatch, ImageItem, Rows
from annotators.registry import register_annotator
from hf.settings import check_positive_int, settings_from_kwargs
from storage.geometry import clamp_points
from storage.masks import decode_rle, encode_rle, mask_to_polygons, polygons_to_rle
from storage.schema import KIND_REGION, annotation_row

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".JPG", ".JPEG", ".PNG")


@dataclass(frozen=True)
class CocoLabelsSettings:
    """Settings of the ``coco_labels`` annotator: ``path`` of the COCO JSON; ``batch_size``."""

    path: str | os.PathLike[str] = ""
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not str(self.path):
            raise ValueError(f"path must be the path of a COCO JSON file, got {self.path!r}")
        check_positive_int("batch_size", self.batch_size)


def _basename(name: str) -> str:
    return posixpath.basename(str(name).replace("\\", "/"))


def _coco_id(item: ImageItem) -> Any:
    meta = item.context.get("meta")
    if isinstance(meta, (str, bytes)):
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    return meta.get("coco_id") if isinstance(meta, dict) else None


@register_annotator("coco_labels")
class CocoLabels(Annotator):
    """Human-made COCO boxes and masks, matched to images by COCO id or file name."""

    kinds = (KIND_REGION,)
    needs = ("meta",)
    reads = ()
    emits = (Rows(KIND_REGION, derived=False, region_type="object"),)

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(CocoLabelsSettings, settings, self.name)
        self.batch_size = self.settings.batch_size
        self.path = Path(self.settings.path).expanduser()
        if not self.path.is_file():
            raise AnnotatorError(f"COCO labels file {str(self.path)!r} does not exist (setting `path` of coco_labels)")
        self._version: str | None = None
        self._coco: Any = None
        self._by_name: dict[str, int] = {}

    @property
    def version(self) -> str:
        """16 hex of the sha256 of the COCO JSON file."""
        if self._version is None:
            self._version = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        return self._version

    def load(self) -> None:
        if self._coco is not None:
            return
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
            try:
                coco = COCO(str(self.path))
            except (ValueError, KeyError, TypeError, AssertionError) as error:
                raise AnnotatorError(f"COCO labels file {str(self.path)!r} is not valid COCO JSON: {error}") from None
        by_name: dict[str, int] = {}
        for image_id, image in coco.imgs.items():
            name = str(image.get("file_name", ""))
            by_name.setdefault(name, image_id)
        for image_id, image in coco.imgs.items():
            by_name.setdefault(_basename(image.get("file_name", "")), image_id)
        self._by_name = by_name
        self._coco = coco

    def match(self, item: ImageItem) -> int | None:
        """The COCO image id of ``item`` (see the module docstring for the order), or ``None``."""
        self.load()
        coco_id = _coco_id(item)
        if isinstance(coco_id, (int, str)) and not isinstance(coco_id, bool):
            for candidate in (coco_id, str(coco_id), int(coco_id) if str(coco_id).isdigit() else None):
                if candidate in self._coco.imgs:
                    return candidate
        names = [item.file_name, _basename(item.file_name)] if item.file_name else []
        for key in dict.fromkeys(k for k in (item.key, _basename(item.key)) if k):
            names.extend(key + ext for ext in IMAGE_EXTENSIONS)
        return next((self._by_name[name] for name in names if name in self._by_name), None)

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        rows: list[dict[str, Any]] = []
        for item in batch.items:
            coco_image_id = self.match(item)
            if coco_image_id is None:
                continue
            for ann in self._coco.imgToAnns.get(coco_image_id, []):
                rows.append(self._row(item, self._coco.imgs[coco_image_id], ann, batch.round))
        return rows

    def _row(self, item: ImageItem, image: dict, ann: dict, round_: int) -> dict[str, Any]:
        sx = item.width / float(image.get("width") or item.width)
        sy = item.height / float(image.get("height") or item.height)
        x, y, w, h = (float(v) for v in ann["bbox"])
        bbox = clamp_points([x * sx, y * sy, (x + w) * sx, (y + h) * sy], item.width, item.height)
        polygons, mask_rle = self._segmentation(item, image, ann, sx, sy)
        category = self._coco.cats.get(ann.get("category_id"), {})
        return annotation_row(
            image_id=item.image_id, round_=round_, source=self.name, source_version=self.version,
            kind=KIND_REGION, region_type="object", text=str(category.get("name", ann.get("category_id"))),
            bbox=bbox, polygons=polygons, mask_rle=mask_rle,
        )

    def _segmentation(self, item: ImageItem, image: dict, ann: dict, sx: float,
                      sy: float) -> tuple[list[list[float]] | None, str | None]:
        """``(polygons, mask_rle)`` of an annotation at the item's size; ``(None, None)`` without one."""
        segmentation = ann.get("segmentation")
        if not segmentation:
            return None, None
        if isinstance(segmentation, list):  # polygons in COCO image pixels
            polygons = [
                [float(v) * (sx if i % 2 == 0 else sy) for i, v in enumerate(polygon)]
                for polygon in segmentation if len(polygon) >= 6
            ]
            if not polygons:
                return None, None
            return polygons, polygons_to_rle(polygons, item.height, item.width)
        rle = self._coco.annToRLE(ann)  # compressed RLE at the COCO image's size
        counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
        mask = decode_rle(counts, *rle["size"])
        if tuple(mask.shape) != (item.height, item.width):
            from PIL import Image

            mask = np.asarray(Image.fromarray(mask * 255).resize((item.width, item.height), Image.NEAREST)) > 0
        return mask_to_polygons(mask) or None, encode_rle(mask)
