"""Many small, unique JPEGs in WebDataset tar shards, cheap to make, for the scale benchmark.

A few rendered scenes (``engine.demo.scenes``) are the backgrounds; each image stamps its index
as a row of black and white 4 x 4 pixel squares (one bit each) in its top rows, so every image's
bytes differ (ingest deduplicates by content) at any count. Members are ``KEY.jpg`` only.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from engine.demo.scenes import render_scene

BIT = 4  # pixels per side of one stamped bit


def stamp(pixels: np.ndarray, index: int, bits: int) -> np.ndarray:
    """A copy of ``pixels`` (H x W x 3) with ``index`` written as ``bits`` black/white squares."""
    out = pixels.copy()
    per_row = out.shape[1] // BIT
    for bit in range(bits):
        row, col = divmod(bit, per_row)
        out[row * BIT:(row + 1) * BIT, col * BIT:(col + 1) * BIT] = 255 if (index >> bit) & 1 else 0
    return out


def write_small_shards(out: Path, images: int, per_shard: int, size: tuple[int, int] = (128, 96),
                       scenes: int = 16, quality: int = 85) -> list[Path]:
    """``images`` unique JPEGs of ``size`` (width, height) pixels in tars of ``per_shard`` images
    (the last one may hold fewer) under ``out``; returns the shard paths."""
    width, height = size
    bits = max(1, (images - 1).bit_length())
    if bits > (width // BIT) * (height // BIT):
        raise ValueError(f"{images} images need {bits} stamped bits, more than a {width}x{height} image holds")
    out.mkdir(parents=True, exist_ok=True)
    bases = [np.asarray(render_scene(seed, width, height).image.convert("RGB")) for seed in range(scenes)]
    paths = []
    for first in range(0, images, per_shard):
        path = out / f"scale-{first // per_shard:05d}.tar"
        with tarfile.open(path, "w") as archive:
            for index in range(first, min(images, first + per_shard)):
                buffer = io.BytesIO()
                Image.fromarray(stamp(bases[index % scenes], index, bits)).save(buffer, "JPEG", quality=quality)
                info = tarfile.TarInfo(f"{index:09d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                archive.addfile(info, buffer)
        paths.append(path)
    return paths
