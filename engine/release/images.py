"""A release's images: ``images/<file name>`` and the WebDataset tars, one sample per image.

Every ingested ``ok`` image is released, annotated or not (``annotated`` says which). Tars are
one series, ``webdataset/shard-KKKKK.tar``, so the one glob people copy,
``load_dataset("webdataset", data_files="webdataset/*.tar")``, reads all of them: every sample
has the same members, ``ID.jpg`` and ``ID.json`` (key: the image id, the sha256 of the bytes),
as ``datasets``' WebDataset builder needs (it takes the features of the first samples and gives
a member another sample lacks as None). The image member is named :data:`WDS_IMAGE_KEY`
whatever the image's format and holds the bytes exactly as ingested (a PNG stays a PNG): both
``datasets`` and the ``webdataset`` package pick the image decoder by the member's extension
and PIL then reads the format from the bytes, so no re-encoding is needed and none is done; the
JSON member says the ``format`` and the ``file_name``. ``reference`` mode: JSON-only samples
that name the source shard and key instead of holding the bytes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Mapping

from engine.dataset.locations import ImageLocation, read_images
from engine.release.exports import tar_member, webdataset_sample

#: the one member name every sample's image bytes have, whatever their format (module docstring)
WDS_IMAGE_KEY = "jpg"
TAR_SERIES = "shard"


def write_images(stage: Path, locations: Mapping[str, ImageLocation], rows_by_image: Mapping[str, list],
                 with_bytes: bool, images_per_shard: int, file_names: Mapping[str, str],
                 portable: Any) -> dict[str, dict]:
    """Tars of WebDataset samples in shard-read order and (``with_bytes``) each image as
    ``images/<file name>``; returns image_id -> meta (size, format, file name, annotated, source
    shard made portable by ``portable`` and key, and ``member``: where its bytes are)."""
    if with_bytes:
        stream = read_images(locations)
    else:
        stream = ((loc, None) for _, loc in sorted(locations.items(), key=lambda kv: (kv[1].shard, kv[1].key)))
    metas: dict[str, dict] = {}
    archive: tarfile.TarFile | None = None
    try:
        for n, (location, data) in enumerate(stream):
            number = n // images_per_shard
            tar_name = f"webdataset/{TAR_SERIES}-{number:05d}.tar"
            if n % images_per_shard == 0:
                if archive is not None:
                    archive.close()
                (stage / "webdataset").mkdir(parents=True, exist_ok=True)
                archive = tarfile.open(stage / tar_name, "w", format=tarfile.PAX_FORMAT)
            image_id = location.image_id
            meta = {"width": location.width, "height": location.height, "extension": location.extension,
                    "shard": portable(location.shard), "key": location.key, "format": location.format,
                    "num_bytes": location.num_bytes, "file_name": file_names[image_id],
                    "annotated": bool(rows_by_image.get(image_id))}
            meta["member"] = (f"{tar_name}#{image_id}.{WDS_IMAGE_KEY}" if data is not None
                              else f"{meta['shard']}#{location.key}")
            if data is not None:  # the files COCO importers and fine-tuning scripts open
                path = stage / "images" / meta["file_name"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            for name, payload in webdataset_sample(image_id, meta, rows_by_image.get(image_id, []), data, WDS_IMAGE_KEY):
                tar_member(archive, name, payload)
            metas[image_id] = meta
    finally:
        if archive is not None:
            archive.close()
    return metas
