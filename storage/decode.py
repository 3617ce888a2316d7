"""Image bytes -> validated facts (ingest) and upright RGB pixels (annotation).

Both paths apply the same rules so an image that ingests as ``ok`` always decodes later:
- the format is read from the content (never from the file name); JPEG, PNG, WebP, GIF
  (first frame), BMP and TIFF are accepted;
- the image is fully decoded, so truncated data is caught at ingest;
- EXIF orientation is applied: width/height are those of the *upright* image;
- an image above ``max_pixels`` (decompression bomb) or with a side below ``min_side`` is
  refused with a reason;
- grayscale, palette, CMYK, 16-bit and alpha images come out as 8-bit RGB (alpha is
  composited onto white).

Failures raise :class:`ImageRejected` whose message is the recorded reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# We enforce our own pixel limit (DecodeLimits.max_pixels); Pillow's global one would warn or
# raise before ours with a different message, so it is switched off for this process.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})


class ImageRejected(ValueError):
    """The bytes are not a usable image; ``str(exc)`` is the reason recorded for it."""


@dataclass(frozen=True)
class DecodeLimits:
    """Limits applied to every image.

    ``max_pixels``: largest width*height accepted (decompression-bomb guard), pixels.
    ``min_side``: smallest accepted width or height, pixels (a 1x1 tracking pixel is useless).
    """

    max_pixels: int = 64_000_000
    min_side: int = 8

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be >= 1, got {self.min_side}")


@dataclass(frozen=True)
class ImageInfo:
    """What ingest records of a valid image. ``width``/``height``: upright pixels."""

    format: str
    width: int
    height: int
    exif_orientation: int


def _open(data: bytes, limits: DecodeLimits) -> tuple[Image.Image, int]:
    """Open (header only) and check format and size; returns the image and its EXIF orientation."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image: Pillow cannot identify the format") from None
    except Exception as exc:  # Pillow raises many types on malformed headers
        raise ImageRejected(f"corrupt or truncated image header: {type(exc).__name__}: {exc}") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected(f"unsupported format {image.format}")
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"image too large: {width}x{height} = {width * height} pixels exceeds max_pixels={limits.max_pixels}"
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(f"image too small: {width}x{height} is below min_side={limits.min_side}")
    try:
        orientation = int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    return image, orientation


def _load(image: Image.Image) -> None:
    """Fully decode the current (first) frame; truncation and corruption raise ImageRejected."""
    try:
        image.load()
    except Exception as exc:
        raise ImageRejected(f"corrupt or truncated image data: {type(exc).__name__}: {exc}") from None


def probe_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> ImageInfo:
    """Validate ``data`` by fully decoding it; return format and upright size.

    Cheaper than :func:`decode_rgb`: no rotation or colour conversion is done, the upright
    size is derived from the EXIF orientation.
    """
    image, orientation = _open(data, limits)
    _load(image)
    width, height = image.size
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageInfo(format=image.format, width=width, height=height, exif_orientation=orientation)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any Pillow mode; alpha is composited onto white; 16-bit is rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in {"I", "F"}:
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(array.max(initial=1.0)), 1e-12)
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or image.mode == "RGBA":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_rgb(data: bytes, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode ``data`` to an upright 8-bit RGB image (first frame of animations)."""
    image, orientation = _open(data, limits)
    _load(image)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return _to_rgb(image)
