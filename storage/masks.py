"""Binary masks <-> COCO compressed RLE strings (pycocotools), over the upright image.

A mask is a ``numpy`` array of shape ``(height, width)``, truthy inside the object. The RLE
string is the ``counts`` field of pycocotools' compressed RLE, decoded as ASCII; together
with the image's height and width (held by the images table) it is the whole mask.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> str:
    """Compressed COCO RLE ``counts`` of a ``(H, W)`` boolean/uint8 mask."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def rle_object(counts: str, height: int, width: int) -> dict:
    """The pycocotools RLE dict (what COCO JSON ``segmentation`` holds) for a counts string."""
    return {"size": [int(height), int(width)], "counts": counts}


def decode_rle(counts: str, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` uint8 mask (0/1) of a compressed RLE counts string."""
    rle = {"size": [int(height), int(width)], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle)


def rle_bbox(counts: str, height: int, width: int) -> list[float]:
    """Tight box ``[x0, y0, x1, y1]`` (absolute pixels, x1/y1 exclusive) of an RLE mask."""
    x, y, w, h = mask_utils.toBbox({"size": [int(height), int(width)], "counts": counts.encode("ascii")})
    return [float(x), float(y), float(x + w), float(y + h)]


def rle_area(counts: str, height: int, width: int) -> int:
    """Number of mask pixels."""
    return int(mask_utils.area({"size": [int(height), int(width)], "counts": counts.encode("ascii")}))


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[float]]:
    """Outer boundaries of a ``(H, W)`` mask as flat ``[x0, y0, x1, y1, ...]`` polygons.

    Vertices lie on pixel *edges* (absolute pixels, origin top-left: pixel ``(r, c)`` covers
    ``[c, c+1) x [r, r+1)``), which is the convention pycocotools rasterizes, so with
    ``tolerance=0`` :func:`polygons_to_rle` gives the mask back exactly (holes aside: COCO
    polygons cannot express holes, each outer boundary is filled). ``tolerance`` > 0 simplifies
    each outline with Douglas-Peucker to within that many pixels. One polygon per connected
    component (8-connectivity), each with at least 3 vertices; an empty mask gives ``[]``.

    The outline is traced with OpenCV on the mask upsampled 2x: there a component's boundary
    pixels sit at even indices on left/top sides and odd ones on right/bottom sides, so
    ``ceil(u / 2)`` maps every traced vertex to the exact pixel edge.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "mask_to_polygons needs OpenCV: `pip install opencv-python-headless` "
            "(also installed by `pip install 'fld-engine[ocr]'`)"
        ) from None
    up = np.repeat(np.repeat(mask.astype(bool).astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons: list[list[float]] = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, 2.0 * tolerance, True)
        points = np.ceil(contour.reshape(-1, 2) / 2.0)
        if len(points) >= 3:
            polygons.append(points.astype(np.float64).ravel().tolist())
    return polygons


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> str:
    """Compressed RLE ``counts`` of the union of flat polygons rasterized on a ``height x width`` image.

    Polygons are in absolute pixels (pixel edges, as :func:`mask_to_polygons` gives them); each
    needs at least 3 vertices (6 values). No polygons give the empty mask.
    """
    polygons = [list(map(float, p)) for p in polygons]
    for polygon in polygons:
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"a polygon needs an even number >= 6 of values, got {len(polygon)}")
    if not polygons:
        return encode_rle(np.zeros((int(height), int(width)), dtype=np.uint8))
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, int(height), int(width)))
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else counts
