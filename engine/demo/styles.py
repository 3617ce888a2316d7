"""Scene styles: what the background of a synthetic scene looks like (a registry).

Every style starts from the plain background (a tilted colour ramp drawn from the scene's own
random stream, so the objects of a seed are the same in every style) and adds its own pattern
from a second stream seeded by the scene seed. Shapes and words are drawn on top, so their masks
and boxes (the ground truth) do not change with the style.

- ``plain``: the ramp alone (what the shipped demo checkpoint was pre-trained on);
- ``grid``: dark grid lines every 7-12 pixels (a sheet of graph paper, a tiled floor);
- ``textured``: a photographic-looking surface: soft light and shade at a few scales plus grain.
"""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

#: the demo's scene style: not the plain style the shipped checkpoint was pre-trained on, as a
#: generic pre-trained Florence-2 meets a user's own images (the shipped checkpoint scores shape
#: AP50 0.72 on unseen plain scenes and 0.32 on unseen grid scenes: ``engine.demo.model_quality``)
DEMO_STYLE = "grid"

#: style name -> the function that adds its pattern to a plain background, in place
STYLES: dict[str, Callable[[random.Random, Image.Image], Image.Image]] = {}


def register_style(name: str) -> Callable[[Callable], Callable]:
    def wrap(function: Callable[[random.Random, Image.Image], Image.Image]) -> Callable:
        STYLES[name] = function
        return function

    return wrap


def check_style(name: str) -> str:
    """``name`` when it is a registered style; otherwise a ``ValueError`` listing them."""
    if name not in STYLES:
        raise ValueError(f"unknown scene style {name!r}; known: {', '.join(STYLES)}")
    return name


@register_style("plain")
def plain(rng: random.Random, image: Image.Image) -> Image.Image:
    return image


@register_style("grid")
def grid(rng: random.Random, image: Image.Image) -> Image.Image:
    spacing = rng.randrange(7, 13)
    ink = tuple(rng.randint(20, 90) for _ in range(3))
    x0, y0 = rng.randrange(spacing), rng.randrange(spacing)
    draw = ImageDraw.Draw(image)
    for x in range(x0, image.width, spacing):
        draw.line([(x, 0), (x, image.height - 1)], fill=ink, width=1)
    for y in range(y0, image.height, spacing):
        draw.line([(0, y), (image.width - 1, y)], fill=ink, width=1)
    return image


@register_style("textured")
def textured(rng: random.Random, image: Image.Image) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(32))
    pixels = np.asarray(image, dtype=np.float32)
    shade = np.zeros(pixels.shape[:2], np.float32)
    for cells, amplitude in ((3, 45.0), (9, 25.0), (27, 12.0)):  # light and shade at three scales
        coarse = noise.uniform(-1, 1, (cells, cells)).astype(np.float32)
        layer = Image.fromarray(coarse, "F").resize(image.size, Image.Resampling.BICUBIC)
        shade += amplitude * np.asarray(layer, dtype=np.float32)
    tint = noise.uniform(0.7, 1.3, 3).astype(np.float32)
    grain = noise.normal(0, 6, pixels.shape).astype(np.float32)
    out = pixels - 25.0 + shade[..., None] * tint + grain  # darker: the ramp is near white
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
