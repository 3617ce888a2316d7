"""Synthetic scenes with exact ground truth: coloured shapes and rendered words.

Every scene is drawn from one ``random.Random`` so it is a pure function of its seed. Its texts
at every FLD-5B granularity (brief, detailed and more detailed captions with their phrase ->
object links, a description per object: :mod:`engine.demo.scene_text`) are written from the
objects with a second stream, ``random.Random(f"text:{seed}")``, so they never move a pixel. Shapes
and words never overlap, so each object's mask is exactly what was drawn and its box is the
tight box of that mask. Coordinates: absolute pixels, origin top-left; boxes are
``[x0, y0, x1, y1]`` with ``x1``/``y1`` exclusive (the COCO convention ``[x, y, w, h]`` is
``[x0, y0, x1 - x0, y1 - y0]``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.demo.scene_text import SceneTexts, TextObject, scene_texts
from engine.demo.styles import STYLES, check_style

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {
    "red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
    "yellow": (230, 200, 30), "purple": (140, 50, 170), "orange": (240, 130, 20),
}
WORDS = ("hello", "data", "engine", "vision", "florence", "sample", "label", "river",
         "garden", "market", "coffee", "window", "planet", "summer", "ticket", "museum")


@dataclass
class SceneObject:
    """One drawn object. ``category``: a shape name or ``"text"``; ``text``: the word, if any."""

    category: str
    color: str
    bbox: list[float]
    mask: np.ndarray = field(repr=False)
    text: str | None = None


@dataclass
class Scene:
    """A rendered RGB image with its objects, its one-sentence (brief) caption and its texts at
    every granularity (``texts.captions["brief"] == caption``)."""

    image: Image.Image
    objects: list[SceneObject]
    caption: str
    texts: SceneTexts


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    corners = {"square": 4, "triangle": 3, "diamond": 4}[shape]
    offset = {"square": math.pi / 4, "triangle": -math.pi / 2, "diamond": 0.0}[shape]
    return [(cx + r * math.cos(offset + 2 * math.pi * i / corners),
             cy + r * math.sin(offset + 2 * math.pi * i / corners)) for i in range(corners)]


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r), fill=fill)


def _free(box: list[float], taken: list[list[float]], margin: float) -> bool:
    return all(box[2] + margin <= t[0] or t[2] + margin <= box[0] or
               box[3] + margin <= t[1] or t[3] + margin <= box[1] for t in taken)


def _mask_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    base = np.array([rng.randint(200, 245) for _ in range(3)], dtype=np.float32)
    tilt = np.array([rng.uniform(-25, 25) for _ in range(3)], dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(base + tilt * ramp, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def render_scene(seed: int, width: int | None = None, height: int | None = None,
                 max_shapes: int = 4, max_words: int = 2, style: str = "plain") -> Scene:
    """Render the scene of ``seed``; sizes default to a random 192..320 pixels per side.
    ``style``: the background (:mod:`engine.demo.styles`); the objects of a seed are the same
    in every style."""
    rng = random.Random(seed)
    width = width or rng.randrange(192, 321, 16)
    height = height or rng.randrange(192, 321, 16)
    image = STYLES[check_style(style)](random.Random(f"style:{seed}"), _background(rng, width, height))
    draw = ImageDraw.Draw(image)
    taken: list[list[float]] = []
    objects: list[SceneObject] = []
    for _ in range(rng.randint(1, max_shapes)):
        shape, color = rng.choice(SHAPES), rng.choice(sorted(COLORS))
        r = rng.uniform(14, min(width, height) / 5)
        for _attempt in range(30):
            cx, cy = rng.uniform(r + 2, width - r - 2), rng.uniform(r + 2, height - r - 2)
            box = [cx - r, cy - r, cx + r, cy + r]
            if _free(box, taken, margin=4):
                break
        else:
            continue
        mask_image = Image.new("L", (width, height), 0)
        _draw(ImageDraw.Draw(mask_image), shape, cx, cy, r, 255)
        _draw(draw, shape, cx, cy, r, COLORS[color])
        mask = np.asarray(mask_image) > 127
        taken.append(box)
        objects.append(SceneObject(shape, color, _mask_box(mask), mask))
    for _ in range(rng.randint(0, max_words)):
        word = rng.choice(WORDS)
        font = ImageFont.load_default(size=rng.randint(22, 32))
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        w, h = right - left, bottom - top
        if w + 8 >= width or h + 8 >= height:
            continue
        for _attempt in range(30):
            x, y = rng.uniform(4, width - w - 4), rng.uniform(4, height - h - 4)
            box = [x, y, x + w, y + h]
            if _free(box, taken, margin=6):
                break
        else:
            continue
        ink = tuple(rng.randint(0, 60) for _ in range(3))
        draw.text((x - left, y - top), word, font=font, fill=ink)
        mask_image = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask_image).text((x - left, y - top), word, font=font, fill=255)
        mask = np.asarray(mask_image) > 127
        if not mask.any():
            continue
        taken.append(box)
        objects.append(SceneObject("text", "black", _mask_box(mask), mask, text=word))
    texts = scene_texts([TextObject(o.category, o.color, tuple(o.bbox), o.text) for o in objects],
                        width, height, style, random.Random(f"text:{seed}"))
    return Scene(image=image, objects=objects, caption=texts.captions["brief"], texts=texts)
