"""A curated round to review: sample shards ingested, two sources built from their ground
truth (a seed label set with a swapped class and a missing box, a jittered scored model),
curated as round 0. Ground truth only builds the rows; nothing reads it afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.curate.config import DEFAULT_RULES, CurationConfig
from engine.curate.curation import curate_round
from storage.atomic import write_parquet_atomic
from storage.layout import DataRoot
from storage.schema import ANNOTATIONS, annotation_row, table_from_rows
from tests.engine.retrain.data import image_ids_by_key, make_root

#: the rules these tests curate with: the defaults but the caption parser's (no spaCy pipeline needed)
CURATION = CurationConfig(rules=tuple(r for r in DEFAULT_RULES if r != "text_complexity"))


def _boxes_by_image(root: DataRoot, truth: dict[str, Any]) -> dict[str, list[tuple[str, list[float]]]]:
    ids = image_ids_by_key(root)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    files = {img["id"]: img["file_name"] for img in truth["images"]}
    out: dict[str, list[tuple[str, list[float]]]] = {}
    for ann in truth["annotations"]:
        key = Path(files[ann["image_id"]]).stem
        image = next((v for k, v in ids.items() if Path(k).stem == key or k == files[ann["image_id"]]), None)
        if image is None:
            continue
        x, y, w, h = ann["bbox"]
        out.setdefault(image, []).append((names[ann["category_id"]], [x, y, x + w, y + h]))
    return out


def write_sources(root: DataRoot, boxes: dict[str, list[tuple[str, list[float]]]], round_: int) -> None:
    """Round ``round_``'s raw rows: ``seed`` (every box, the first label of every third image
    swapped, the last box of every fourth image missing), ``model`` (boxes shifted 1 px, scores
    0.9), ``reader`` (one OCR line "SALE" per image) and ``captioner`` (one brief caption per image)."""
    seed, model = [], []
    for k, (image, items) in enumerate(sorted(boxes.items())):
        for j, (label, box) in enumerate(items):
            if k % 4 == 0 and j == len(items) - 1:
                continue
            shown = "square" if (k % 3 == 0 and j == 0 and label != "square") else label
            seed.append(annotation_row(image_id=image, round_=round_, source="seed", source_version="v1", kind="region",
                                       region_type="object", text=shown, bbox=box))
            model.append(annotation_row(image_id=image, round_=round_, source="model", source_version="m1",
                                        kind="region", region_type="object", text=label,
                                        bbox=[v + 1.0 for v in box], score=0.9))
    words, captions = [], []
    for image, items in sorted(boxes.items()):
        x0, y0, x1, y1 = items[0][1]
        words.append(annotation_row(image_id=image, round_=round_, source="reader", source_version="r1", kind="region",
                                    region_type="ocr", text="SALE", bbox=[x0, y0, x1, y1],
                                    quad=[x0, y0, x1, y0, x1, y1, x0, y1], score=0.95))
        captions.append(annotation_row(image_id=image, round_=round_, source="captioner", source_version="c1",
                                       kind="caption", granularity="brief", text=f"{len(items)} shapes on a plain background",
                                       score=0.9))
    for name, rows in (("seed", seed), ("model", model), ("reader", words), ("captioner", captions)):
        write_parquet_atomic(table_from_rows(rows, ANNOTATIONS), root.annotations(round_, name) / "shard=0.parquet")


def reviewed_root(tmp: Path, images: int = 8) -> tuple[DataRoot, dict[str, list[tuple[str, list[float]]]]]:
    """(root with round 0 curated, the ground-truth boxes per image the sources came from)."""
    root, truth = make_root(tmp, images=images, seed=11, per_shard=images)
    boxes = _boxes_by_image(root, truth)
    write_sources(root, boxes, 0)
    curate_round(root, 0, CURATION)
    return root, boxes
