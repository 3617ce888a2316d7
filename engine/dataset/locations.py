"""Where an ingested image lives, and its bytes read back from its shard.

An image's location is its first ``ok`` row of the images view by (shard, key): shard path + key,
upright size, Pillow format, byte count and its sidecar meta, with the shard's reader format
from the ``shards`` table (found from the path when the table lacks the shard). Bytes are
streamed shard by shard through the shard readers (``storage.readers.READERS``) and checked
against the image id (sha256 of the bytes), so a shard that changed since ingest fails loudly
instead of shipping other pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from storage.catalog import Catalog
from storage.layout import DataRoot
from storage.readers import READERS

#: Pillow format -> file extension of the bytes as stored
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class ImageBytesError(RuntimeError):
    """An image's bytes cannot be read back as ingested."""


@dataclass(frozen=True)
class ImageLocation:
    """One image: ``width``/``height`` in upright pixels, ``format`` the Pillow format name,
    ``shard``/``key``/``shard_format`` where its bytes are (``READERS[shard_format](shard)``),
    ``meta`` its parsed sidecars (``{"json": {...}, "txt": "..."}``, {} without any)."""

    image_id: str
    shard: str
    key: str
    shard_format: str
    format: str
    width: int
    height: int
    num_bytes: int
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.format, "bin")


def image_locations(source: Catalog | DataRoot | str | Path,
                    image_ids: Iterable[str] | None = None) -> dict[str, ImageLocation]:
    """image_id -> location of ``image_ids`` (all ``ok`` images when None), the first by (shard,
    key). ``source``: an open catalog, or a data root (its catalog opened for reading)."""
    if not isinstance(source, Catalog):
        with Catalog.reading(source) as catalog:
            return image_locations(catalog, image_ids)
    rows = source.query(
        "select i.image_id, i.shard, i.key, coalesce(s.format, ''), i.format, i.width, i.height, i.num_bytes, i.meta "
        "from images i left join shards s on s.shard = i.shard where i.status = 'ok' and i.image_id is not null "
        "order by i.shard, i.key")
    wanted = None if image_ids is None else set(image_ids)
    formats: dict[str, str] = {}
    out: dict[str, ImageLocation] = {}
    for image_id, shard, key, shard_format, fmt, width, height, num_bytes, meta in rows:
        if image_id in out or (wanted is not None and image_id not in wanted):
            continue
        if not shard_format:
            shard_format = formats[shard] if shard in formats else formats.setdefault(shard, _format_of(shard))
        out[image_id] = ImageLocation(image_id, shard, key, shard_format, fmt or "", int(width), int(height),
                                      int(num_bytes or 0), json.loads(meta) if meta else {})
    return out


def _format_of(shard: str) -> str:
    """The reader format of a shard the catalog does not list, from its path ('' if none reads it)."""
    from storage.readers.discover import reader_for_file

    if Path(shard).is_dir():
        return "folder"
    reader = reader_for_file(Path(shard))
    return "" if reader is None else reader.format


def read_images(locations: Mapping[str, ImageLocation]) -> Iterator[tuple[ImageLocation, bytes]]:
    """``(location, bytes)`` of every location, shard by shard in path order, records in shard
    order. Raises :class:`ImageBytesError` when an image is missing or its bytes changed."""
    by_shard: dict[tuple[str, str], dict[str, ImageLocation]] = {}
    for location in locations.values():
        by_shard.setdefault((location.shard, location.shard_format), {})[location.key] = location
    for (shard, shard_format), keys in sorted(by_shard.items()):
        if shard_format not in READERS:
            raise ImageBytesError(f"shard {shard} has reader format {shard_format!r}; known: {sorted(READERS)}")
        found, wanted = 0, len(keys)
        for record in READERS[shard_format](shard).records():
            location = keys.pop(record.key, None) if record.data is not None else None
            if location is None:  # not wanted, or a later record of a repeated key
                continue
            if hashlib.sha256(record.data).hexdigest() != location.image_id:
                raise ImageBytesError(f"{shard}#{record.key}: bytes changed since ingest (sha256 differs from "
                                      f"image id {location.image_id})")
            found += 1
            yield location, record.data
            if found == wanted:
                break
        if found < wanted:
            raise ImageBytesError(f"{wanted - found} images of {shard} are no longer in the shard")
