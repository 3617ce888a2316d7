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
