"""A curated set that is exactly the ground truth of a sample, in every FLD-5B kind.

Per image of the sample's ``ground_truth.json``: a caption row per granularity; per shape an
object region (text = label = the shape, box, RLE mask) and its description (a ``region`` row,
``granularity = 'brief'``, ``parent_id`` the object region); per word an OCR region; per phrase
of each caption and per object it refers to, a ``phrase`` row (the caption's granularity, span,
the object's box). Boxes: absolute pixels x0 y0 x1 y1 of the upright image.
"""

from __future__ import annotations

from storage.schema import annotation_row
from tests.engine.retrain.data import image_ids_by_key


def truth_rows(root, truth: dict, round_: int) -> list[dict]:
    """The rows (each with a ``label``, as ``write_curated`` takes them) of the whole truth."""
    ids = image_ids_by_key(root)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    rows = []
    for image in truth["images"]:
        common = dict(image_id=ids[image["file_name"].split(".")[0]], round_=round_, source="truth", source_version="1")
        captions = {g: annotation_row(kind="caption", granularity=g, text=text, **common)
                    for g, text in image["captions"].items()}
        rows += [{**row, "label": None} for row in captions.values()]
        boxes = {}
        for ann in (a for a in truth["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            boxes[ann["id"]] = box = [x, y, x + w, y + h]
            name = names[ann["category_id"]]
            if name == "text":
                rows.append({**annotation_row(kind="region", region_type="ocr", text=ann["text"], bbox=box,
                                              quad=[x, y, x + w, y, x + w, y + h, x, y + h], **common), "label": None})
                continue
            region = annotation_row(kind="region", region_type="object", text=name, bbox=box,
                                    mask_rle=ann["segmentation"]["counts"], **common)
            rows.append({**region, "label": name})
            rows.append({**annotation_row(kind="region", region_type="object", granularity="brief", bbox=box,
                                          text=ann["description"], parent_id=region["annotation_id"], **common),
                         "label": None})
        for g, phrases in image["phrases"].items():
            for phrase in phrases:
                start, end = phrase["span"]
                for obj in phrase["objects"]:
                    rows.append({**annotation_row(kind="phrase", granularity=g, text=phrase["text"], bbox=boxes[obj],
                                                  parent_id=captions[g]["annotation_id"], span_start=start,
                                                  span_end=end, **common), "label": None})
    return rows
