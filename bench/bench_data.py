"""Benchmark data: many unique, decode-heavy images in WebDataset shards, ingested.

Renders a few large synthetic scenes and makes every image unique by changing one pixel
before JPEG encoding, so a few seconds of rendering give thousands of distinct images whose
decoding dominates what a pipeline does per image.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from engine.demo.scenes import render_scene
from engine.ingest.shards import IngestConfig, ingest
from storage.layout import DataRoot


def write_shards(out: Path, shards: int, per_shard: int, size: tuple[int, int] = (1024, 768),
                 scenes: int = 8) -> list[Path]:
    """``shards`` tars of ``per_shard`` unique JPEGs of ``size`` (width, height) pixels.

    Unique up to ``scenes * (width // 16) * (height // 16)`` images.
    """
    out.mkdir(parents=True, exist_ok=True)
    bases = [np.asarray(render_scene(seed, *size).image).copy() for seed in range(scenes)]
    paths = []
    index = 0
    for shard in range(shards):
        path = out / f"bench-{shard:05d}.tar"
        with tarfile.open(path, "w") as archive:
            for _ in range(per_shard):
                pixels = bases[index % scenes].copy()
                cell = index // scenes  # a black 16x16 block at a position unique per scene
                columns = size[0] // 16
                row, col = (cell // columns) % (size[1] // 16), cell % columns
                pixels[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = 0
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
                data = buffer.getvalue()
                info = tarfile.TarInfo(f"{index:08d}.jpg")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                index += 1
        paths.append(path)
    return paths


def ingested_root(path: Path, shards: list[Path]) -> DataRoot:
    root = DataRoot(path)
    ingest(root, [str(p) for p in shards], IngestConfig(progress=False))
    return root
