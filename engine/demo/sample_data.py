"""``fld sample``: WebDataset shards of synthetic scenes plus their ground truth as COCO JSON.

Output folder::

    shards/shard-00000.tar ...     members KEY.jpg|KEY.png and KEY.json ({"caption": brief, "coco_id": N})
    ground_truth.json              COCO instances: shapes and words, boxes + RLE masks (info.style),
                                   plus every FLD-5B text kind of each image (below)
    noisy_labels.json              (with noise) the same boxes, some dropped, jittered, some
                                   labels swapped, without the texts: stands in for "existing labels"

Everything is a pure function of the seed: the same call writes byte-identical files.
COCO ``file_name`` is the tar member name (``KEY.jpg``). Word annotations have category ``text``
and the word in a ``text`` field. The ground truth's extra fields (evaluation only: the shards'
sidecars carry the brief caption alone), written by :mod:`engine.demo.scene_text`::

    {"vocabulary": {"shapes": [...], "colors": [...], "words": [...]},   # what captions can name
     "images": [{"id": 1, ..., "caption": BRIEF,
                 "captions": {"brief": BRIEF, "detailed": "...", "more_detailed": "..."},
                 "phrases": {"brief": [{"span": [0, 12], "text": "A red circle", "objects": [1]}, ...],
                             "detailed": [...], "more_detailed": [...]}}],
     "annotations": [{"id": 1, ..., "color": "red", "description": "a small red circle"}]}

``span``: characters ``[start, end)`` of the caption of that granularity (``caption[start:end] ==
text``); ``objects``: the COCO annotation ids the phrase refers to (a plural phrase, all of them);
``color``: a shape's fill colour name, ``black`` for a word's ink.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.demo.scenes import COLORS, SHAPES, WORDS, Scene, render_scene
from engine.demo.styles import check_style
from storage.atomic import atomic_path, write_text_atomic
from storage.masks import encode_rle

CATEGORIES = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
CATEGORIES.append({"id": len(SHAPES) + 1, "name": "text", "supercategory": "text"})
CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}


@dataclass(frozen=True)
class SampleConfig:
    """Settings of ``fld sample``.

    ``images``: how many scenes; ``images_per_shard``: tar size; ``seed``: makes it all
    reproducible; ``noise``: write ``noisy_labels.json`` (drop rate ``drop``, box jitter
    ``jitter`` as a fraction of box size, label swap rate ``swap``); ``png_every``: every
    n-th image is a PNG (the rest JPEG quality 92), so both formats are exercised; ``style``: the
    scenes' background (:mod:`engine.demo.styles`; the objects of a seed are the same in every style).
    """

    images: int = 64
    images_per_shard: int = 16
    seed: int = 0
    noise: bool = True
    drop: float = 0.25
    jitter: float = 0.12
    swap: float = 0.1
    png_every: int = 4
    progress: bool = False
    style: str = "plain"

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")
        if self.images_per_shard < 1:
            raise ValueError(f"images_per_shard must be >= 1, got {self.images_per_shard}")
        for name in ("drop", "jitter", "swap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")
        check_style(self.style)
        if self.png_every < 1:
            raise ValueError(f"png_every must be >= 1, got {self.png_every}")


def _encode(scene: Scene, png: bool) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    if png:
        scene.image.save(buffer, format="PNG", optimize=False)
        return "png", buffer.getvalue()
    scene.image.save(buffer, format="JPEG", quality=92)
    return "jpg", buffer.getvalue()


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    archive.addfile(info, io.BytesIO(data))


def _coco_annotation(ann_id: int, image_id: int, obj, width: int, height: int) -> dict[str, Any]:
    x0, y0, x1, y1 = obj.bbox
    annotation = {
        "id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[obj.category],
        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(obj.mask.sum()), "iscrowd": 0,
        "segmentation": {"size": [height, width], "counts": encode_rle(obj.mask)},
    }
    if obj.text is not None:
        annotation["text"] = obj.text
    return annotation


def _texts(scene: Scene, first_id: int) -> dict[str, Any]:
    """The image entry's text fields; object index ``i`` is annotation id ``first_id + i``."""
    return {"captions": dict(scene.texts.captions),
            "phrases": {g: [{"span": [p.start, p.end], "text": p.text, "objects": [first_id + i for i in p.objects]}
                            for p in phrases] for g, phrases in scene.texts.phrases.items()}}


def _noisy(annotations: list[dict[str, Any]], images: dict[int, dict], config: SampleConfig) -> list[dict]:
    rng = random.Random(config.seed * 7919 + 17)
    shape_ids = [CATEGORY_IDS[s] for s in SHAPES]
    noisy = []
    for ann in annotations:
        if rng.random() < config.drop:
            continue
        x, y, w, h = ann["bbox"]
        image = images[ann["image_id"]]
        x = min(max(0.0, x + rng.gauss(0, config.jitter) * w), image["width"] - 1.0)
        y = min(max(0.0, y + rng.gauss(0, config.jitter) * h), image["height"] - 1.0)
        w = min(max(2.0, w * (1 + rng.gauss(0, config.jitter))), image["width"] - x)
        h = min(max(2.0, h * (1 + rng.gauss(0, config.jitter))), image["height"] - y)
        category = ann["category_id"]
        if category in shape_ids and rng.random() < config.swap:
            category = rng.choice([c for c in shape_ids if c != category])
        item = {"id": ann["id"], "image_id": ann["image_id"], "category_id": category,
                "bbox": [round(v, 2) for v in (x, y, w, h)], "area": round(w * h, 2), "iscrowd": 0}
        if "text" in ann:
            item["text"] = ann["text"]
        noisy.append(item)
    return noisy


def write_sample(out: str | Path, config: SampleConfig = SampleConfig()) -> dict[str, Any]:
    """Write the sample dataset into ``out``; returns a summary (paths and counts)."""
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []  # per image: its captions and phrases (ground truth only)
    annotations: list[dict[str, Any]] = []
    described: list[dict[str, Any]] = []  # the annotations with colour and description (ground truth only)
    shard_paths: list[Path] = []
    bar = tqdm(total=config.images, desc="sample", unit="img", disable=not config.progress)
    for first in range(0, config.images, config.images_per_shard):
        shard_path = out / "shards" / f"shard-{first // config.images_per_shard:05d}.tar"
        with atomic_path(shard_path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as archive:
            for index in range(first, min(first + config.images_per_shard, config.images)):
                scene = render_scene(config.seed * 1_000_003 + index, style=config.style)
                key = f"{index:06d}"
                ext, data = _encode(scene, png=index % config.png_every == config.png_every - 1)
                width, height = scene.image.size
                image_id = index + 1
                images.append({"id": image_id, "file_name": f"{key}.{ext}", "width": width,
                               "height": height, "caption": scene.caption})
                texts.append(_texts(scene, len(annotations) + 1))
                for obj, description in zip(scene.objects, scene.texts.descriptions):
                    annotation = _coco_annotation(len(annotations) + 1, image_id, obj, width, height)
                    annotations.append(annotation)
                    described.append({**annotation, "color": obj.color, "description": description})
                sidecar = json.dumps({"caption": scene.caption, "coco_id": image_id}, sort_keys=True)
                _add_member(archive, f"{key}.{ext}", data)
                _add_member(archive, f"{key}.json", sidecar.encode())
                bar.update(1)
        shard_paths.append(shard_path)
    bar.close()
    info = {"description": f"fld-engine synthetic sample, seed {config.seed}", "version": "1", "style": config.style}
    truth = {"info": info, "images": images, "annotations": annotations, "categories": CATEGORIES}
    vocabulary = {"shapes": list(SHAPES), "colors": sorted(COLORS), "words": sorted(set(WORDS))}
    full = {**truth, "images": [{**image, **t} for image, t in zip(images, texts)], "annotations": described,
            "vocabulary": vocabulary}
    write_text_atomic(json.dumps(full, sort_keys=True), out / "ground_truth.json")
    summary: dict[str, Any] = {"shards": [str(p) for p in shard_paths], "images": len(images),
                               "annotations": len(annotations), "ground_truth": str(out / "ground_truth.json")}
    if config.noise:
        noisy = _noisy(annotations, {i["id"]: i for i in images}, config)
        write_text_atomic(json.dumps({**truth, "annotations": noisy}, sort_keys=True), out / "noisy_labels.json")
        summary["noisy_labels"] = str(out / "noisy_labels.json")
        summary["noisy_annotations"] = len(noisy)
    return summary
