"""``fld review export --to label-studio``: the review queue of a round as Label Studio tasks.

``OUT`` receives:

* ``images/<image_id>.<ext>``: each queued image (its ingested bytes; an image stored
  rotated by EXIF is written upright as PNG, since our coordinates are upright pixels);
* ``tasks.json``: one task per image, in queue order, the curated rows as one prediction
  (``engine.review.label_studio``), the image referenced as ``IMAGE_URL_PREFIX`` +
  ``images/<file>`` (Label Studio's local-files URL, served with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=OUT`` and a *Local files* storage of ``OUT/images``
  on the project);
* ``label_config.xml``: the labelling config that matches the tasks (every object label of the
  round's curated set, so a person can pick any class);
* ``README.md``: the steps from here to ``fld review import``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from engine.curate.parquet_io import read_curated
from engine.dataset.locations import image_locations, read_images
from engine.review.label_studio import label_config, task
from engine.review.rows import object_labels, scoped_rows
from storage.atomic import write_bytes_atomic, write_text_atomic
from storage.catalog import Catalog
from storage.decode import decode_rgb, probe_image
from storage.layout import DataRoot

IMAGE_URL_PREFIX = "/data/local-files/?d="

README = """# Review of round {round} ({tasks} images)

1. Start Label Studio with this folder as its local-files root:

       LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\
       LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={out} label-studio start

2. Create a project and paste `label_config.xml` as its labelling interface. In the project's
   Settings -> Cloud Storage, add a Source Storage of type *Local files* with the absolute path
   `{out}/images` (Label Studio serves local files only under such a storage; no sync needed).
3. Import `tasks.json` (the boxes, masks, OCR text and captions appear as predictions to correct).
4. Correct each task and submit it (move or relabel boxes, delete wrong ones, draw missing ones,
   fix texts). Skipped tasks count as not reviewed.
5. Export the project as JSON and bring the corrections back:

       fld review import --root {root} EXPORT.json

   The next round curates with them: what people kept or drew stands, and no later model output
   can override it.
"""


def _image_file(data: bytes, image_id: str, extension: str) -> tuple[str, bytes]:
    """The file name and bytes Label Studio shows: as ingested, or upright PNG when EXIF rotates it."""
    if probe_image(data).exif_orientation in (0, 1):
        return f"{image_id}.{extension}", data
    buffer = io.BytesIO()
    decode_rgb(data).save(buffer, format="PNG")
    return f"{image_id}.png", buffer.getvalue()


def export_label_studio(root: DataRoot, round_: int, out: Path, image_url_prefix: str = IMAGE_URL_PREFIX
                        ) -> dict[str, Any]:
    """Write the Label Studio review of round ``round_``'s queue to ``out``; returns counts."""
    queue_path = root.review_queue(round_)
    if not queue_path.exists():
        raise ValueError(f"round {round_} has no review queue: run `fld review plan --root {root.path} "
                                f"--round {round_} --budget N` first")
    queue = pq.read_table(queue_path).sort_by("rank")
    image_ids = queue["image_id"].to_pylist()
    curated = read_curated(root, round_)
    rows = scoped_rows(root, round_, image_ids, curated)
    with Catalog(root, read_only=True) as catalog:
        locations = image_locations(catalog, image_ids)
    out = Path(out)
    files: dict[str, str] = {}
    for location, data in read_images(locations):
        name, payload = _image_file(data, location.image_id, location.extension)
        write_bytes_atomic(payload, out / "images" / name)
        files[location.image_id] = name
    tasks = [task(image, f"{image_url_prefix}images/{files[image]}", round_, rows.get(image, []),
                  locations[image].width, locations[image].height, model_version=f"fld-round-{round_}")
             for image in image_ids if image in files]
    labels = object_labels(curated)
    has_masks = any(r.get("polygons") for image_rows in rows.values() for r in image_rows)
    write_text_atomic(label_config(labels, masks=has_masks), out / "label_config.xml")
    write_text_atomic(json.dumps(tasks, indent=1), out / "tasks.json")
    write_text_atomic(README.format(round=round_, tasks=len(tasks), out=out.resolve(), root=root.path), out / "README.md")
    return {"round": round_, "tasks": len(tasks), "rows": sum(len(v) for v in rows.values()),
            "missing_images": len(image_ids) - len(tasks), "labels": len(labels), "out": str(out)}
