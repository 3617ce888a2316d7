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


#: most vertices rasterised in one call (all polygons together)
MAX_POLYGON_VERTICES = 1_000_000
#: the longest outline rasterised in one call, in pixels (the sum over edges of the larger of
#: their x and y extents): pycocotools allocates about 100 bytes per pixel of outline
MAX_OUTLINE_PIXELS = 1 << 22


def _clip(points: np.ndarray, low: tuple[float, float], high: tuple[float, float]) -> np.ndarray:
    """A polygon ``(n, 2)`` clipped to the rectangle ``low..high`` (x, y) by Sutherland-Hodgman,
    one pass per side: the same region inside the rectangle, no vertex outside it."""
    for axis, bound, below in ((0, low[0], False), (0, high[0], True), (1, low[1], False), (1, high[1], True)):
        if len(points) == 0:
            break
        inside = points[:, axis] <= bound if below else points[:, axis] >= bound
        if inside.all():
            continue
        nxt, nxt_inside = np.roll(points, -1, axis=0), np.roll(inside, -1)
        crossing = inside != nxt_inside
        t = np.divide(bound - points[:, axis], nxt[:, axis] - points[:, axis], out=np.zeros(len(points)),
                      where=crossing)
        cut = points + t[:, None] * (nxt - points)
        cut[:, axis] = bound
        # per edge (p, q): the crossing point if it crosses, then q if q is inside
        keep = np.stack([crossing, nxt_inside], axis=1).reshape(-1)
        points = np.stack([cut, nxt], axis=1).reshape(-1, 2)[keep]
    return points


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> str:
    """Compressed RLE ``counts`` of the union of flat polygons rasterized on a ``height x width`` image.

    Polygons are in absolute pixels (pixel edges, as :func:`mask_to_polygons` gives them); each
    needs at least 3 vertices (6 values). No polygons give the empty mask. The work is bounded
    before pycocotools sees anything: at most :data:`MAX_POLYGON_VERTICES` vertices, every value
    a finite number (else ``ValueError``), a polygon reaching farther than one image side past
    the image clipped to that margin (what lies outside the image is not in the mask either
    way, but pycocotools' work grows with the outline's length and its integer arithmetic
    overflows far out; polygons within the margin are drawn exactly as given), the outlines at
    most :data:`MAX_OUTLINE_PIXELS` pixels long.
    """
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"an image of {width} x {height} pixels has no mask")
    for polygon in polygons:
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"a polygon needs an even number >= 6 of values, got {len(polygon)}")
    if sum(len(p) for p in polygons) > 2 * MAX_POLYGON_VERTICES:
        raise ValueError(f"polygons of more than {MAX_POLYGON_VERTICES:,} vertices in all are not rasterised")
    clipped = []
    for polygon in polygons:
        try:
            points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise ValueError("polygon values must be numbers") from None
        if not np.isfinite(points).all():
            raise ValueError("polygon values must be finite numbers (a NaN or an infinity is not a vertex)")
        points = _clip(points, (-width, -height), (2.0 * width, 2.0 * height))
        if len(points) >= 3:
            clipped.append(points)
    outline = sum(float(np.abs(p - np.roll(p, -1, axis=0)).max(axis=1).sum()) for p in clipped)
    if outline > MAX_OUTLINE_PIXELS:
        raise ValueError(f"polygon outlines of {outline:,.0f} pixels are longer than the {MAX_OUTLINE_PIXELS:,} "
                         "rasterised in one mask")
    if not clipped:
        return encode_rle(np.zeros((height, width), dtype=np.uint8))
    rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in clipped], height, width))
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else counts
