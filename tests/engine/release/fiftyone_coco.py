"""Reads a release's COCO with FiftyOne's own importer and prints what FiftyOne sees, as JSON.

Run by ``test_release_fiftyone.py`` under the interpreter that has FiftyOne (``.venv-fiftyone``, made
by ``scripts/install_fiftyone.sh``; FiftyOne cannot share ``.venv``), so it imports nothing of ours:

    python fiftyone_coco.py RELEASE/images RELEASE/exports/coco.json

``fiftyone.utils.coco.COCODetectionDatasetImporter`` is used as a context manager and iterated,
which needs no database (``fo.Dataset`` would start or connect MongoDB). Printed: ``{"samples":
[{"file": path relative to the images folder, "width", "height", "detections": [{"label",
"bounding_box": [x, y, w, h] relative to the image in [0, 1], "confidence", "fld_annotation_id"}],
"masks": [[mask height, mask width] of each segmentation with a mask]}], "classes": [...]}``.
"""

from __future__ import annotations

import json
import os
import sys


def main(data_path: str, labels_path: str) -> None:
    import fiftyone.utils.coco as fouc

    importer = fouc.COCODetectionDatasetImporter(data_path=data_path, labels_path=labels_path,
                                                 label_types=["detections", "segmentations"], extra_attrs=True)
    samples = []
    with importer:
        for image_path, metadata, label in importer:
            label = label or {}
            detections = label.get("detections")
            segmentations = label.get("segmentations")
            samples.append({
                "file": os.path.relpath(image_path, data_path), "exists": os.path.isfile(image_path),
                "width": metadata.width, "height": metadata.height,
                "detections": [{"label": d.label, "bounding_box": list(d.bounding_box), "confidence": d.confidence,
                                "fld_annotation_id": d["fld_annotation_id"]}
                               for d in (detections.detections if detections else [])],
                "masks": [list(d.mask.shape) for d in (segmentations.detections if segmentations else [])
                          if d.mask is not None]})
        info = importer.get_dataset_info()
    print(json.dumps({"samples": samples, "classes": info.get("classes")}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
