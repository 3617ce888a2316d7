"""OCR annotator: RapidOCR (``rapidocr_onnxruntime``) with the ONNX weights its wheel ships.

Needs no model setting: ``build_annotator("ocr")`` works once ``rapidocr-onnxruntime`` (a core dependency) is
installed. Each image goes through RapidOCR's text detection (PP-OCRv4 det), optional
180-degree angle classification and recognition (PP-OCRv4 rec); every text line with a
recognition score >= ``min_score`` gives one ``region`` row:

- ``region_type = "ocr"``, ``text`` = the recognized string, ``score`` = its recognition score;
- ``quad``: 8 floats ``x, y`` in absolute pixels of the upright image, clockwise (in image
  coordinates, y down) starting at the top-left corner. RapidOCR's own order comes from
  an x-sort that can mislabel corners of tilted boxes, so the points are re-ordered here by
  angle around their centroid, starting at the corner with the smallest ``x + y``;
- ``bbox = [x0, y0, x1, y1]``: the box enclosing the quad.

The three ONNX sessions are created once per annotator in :meth:`OCR.load`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from annotators.base import Annotator, ImageBatch, ImageItem, Rows
from annotators.registry import register_annotator
from hf.loading import require_package
from hf.settings import check_bool, check_int, check_positive_int, check_range, settings_from_kwargs
from storage.geometry import clamp_points
from storage.schema import KIND_REGION, annotation_row

PACKAGE = "rapidocr_onnxruntime"
DISTRIBUTION = "rapidocr-onnxruntime"


@dataclass(frozen=True)
class OCRSettings:
    """Settings of the ``ocr`` annotator.

    ``min_score``: minimum recognition score kept, in [0, 1]. ``use_angle_cls``: run the
    180-degree text-direction classifier. ``box_thresh``: minimum text-detection box score,
    in [0, 1]. ``unclip_ratio``: how much detected text regions are grown (RapidOCR default
    1.6). ``num_threads``: ONNX Runtime intra-op threads per session (0 = its default).
    ``batch_size``: images per ``annotate`` chunk (RapidOCR itself runs image by image).
    """

    min_score: float = 0.5
    use_angle_cls: bool = True
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    num_threads: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        check_range("min_score", self.min_score, 0.0, 1.0)
        check_range("box_thresh", self.box_thresh, 0.0, 1.0)
        check_range("unclip_ratio", self.unclip_ratio, 0.5, 10.0)
        check_bool("use_angle_cls", self.use_angle_cls)
        check_int("num_threads", self.num_threads, 0)
        check_positive_int("batch_size", self.batch_size)


def clockwise_quad(points: Any) -> list[float]:
    """Four ``(x, y)`` points as 8 floats, clockwise in image coordinates from the top-left one.

    With y pointing down, clockwise on screen is increasing ``atan2(y - cy, x - cx)``; the
    start is the corner with the smallest ``x + y`` (the top-left of an upright box).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(4, 2)
    center = pts.mean(axis=0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - center[1], pts[:, 0] - center[0]), kind="stable")]
    pts = np.roll(pts, -int(np.argmin(pts.sum(axis=1))), axis=0)
    return pts.ravel().tolist()


def quad_bbox(quad: list[float]) -> list[float]:
    """``[x0, y0, x1, y1]`` enclosing an 8-float quad."""
    xs, ys = quad[0::2], quad[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def _model_files() -> list[Path]:
    import rapidocr_onnxruntime

    return sorted((Path(rapidocr_onnxruntime.__file__).parent / "models").glob("*.onnx"))


@register_annotator("ocr")
class OCR(Annotator):
    """RapidOCR text lines as ``region`` rows of type ocr (quad + enclosing bbox + text)."""

    kinds = (KIND_REGION,)
    reads = ()
    emits = (Rows(KIND_REGION, derived=False, region_type="ocr"),)

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(OCRSettings, settings, self.name)
        self.batch_size = self.settings.batch_size
        require_package(PACKAGE)
        self._version: str | None = None
        self._engine: Any = None

    @property
    def version(self) -> str:
        """``rapidocr-onnxruntime==X.Y.Z+`` 12 hex of the sha256 over its shipped ONNX files."""
        if self._version is None:
            digest = hashlib.sha256()
            for path in _model_files():
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
            self._version = f"{DISTRIBUTION}=={metadata.version(DISTRIBUTION)}+{digest.hexdigest()[:12]}"
        return self._version

    def load(self) -> None:
        if self._engine is not None:
            return
        from rapidocr_onnxruntime import RapidOCR

        threads = self.settings.num_threads or -1
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        rows: list[dict[str, Any]] = []
        for item in batch.items:
            rows.extend(self._rows(item, batch.round))
        return rows

    def _rows(self, item: ImageItem, round_: int) -> list[dict[str, Any]]:
        settings = self.settings
        result, _ = self._engine(
            np.asarray(item.image.convert("RGB"))[:, :, ::-1].copy(),  # RapidOCR wants BGR arrays
            use_cls=settings.use_angle_cls,
            text_score=float(settings.min_score),
            box_thresh=float(settings.box_thresh),
            unclip_ratio=float(settings.unclip_ratio),
        )
        rows = []
        for points, text, score in result or ():
            if not str(text).strip() or float(score) < settings.min_score:
                continue
            quad = clamp_points(clockwise_quad(points), item.width, item.height)
            rows.append(annotation_row(
                image_id=item.image_id, round_=round_, source=self.name, source_version=self.version,
                kind=KIND_REGION, region_type="ocr", text=str(text), quad=quad, bbox=quad_bbox(quad),
                score=float(score),
            ))
        return rows
