"""Helpers that make image bytes of every kind with Pillow (no files are shipped)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A deterministic RGB gradient converted to ``mode``."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(xs, (height, width)), np.broadcast_to(ys, (height, width)),
                    np.full((height, width), 128, np.float32)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(rgb, "RGB")


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A small JPEG whose content depends on ``seed`` (distinct seeds -> distinct bytes)."""
    image = gradient(width, height)
    image.putpixel((seed % width, (seed // width) % height), (255, 0, (seed * 37) % 256))
    return encode(image, "JPEG", quality=95)
