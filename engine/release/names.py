"""Each released image's file name: the name its user gave it, made safe and unique.

The name an image is given is the input COCO labels' ``file_name`` when the round's labels
named it, else the last part of its source key (a folder's ``a/My Photo (1).png`` has the key
``a/My Photo (1)``). Made safe: only the last path component; control, format and
path-separator characters (and the ones Windows refuses, ``<>:"|?*``) become ``_``; leading
dots and spaces and trailing dots and spaces go (no hidden file, no ``..``); a Windows device
name (``CON``, ``NUL``, ``COM1`` ...) gets a ``_``; the stem is cut to :data:`MAX_STEM_BYTES`
UTF-8 bytes; an empty stem becomes the image id. The extension is the name's own when it is
one of the image format's (``.jpeg``, ``.JPG`` for JPEG), else the format's (``.jpg``,
``.png`` ...). Unique: names are compared case-insensitively (macOS and Windows file systems
fold case); images are named in (source key, image id) order, the first keeps the plain name
and a later one gets ``-`` and the first 8 hex digits of its image id (16, then all 64, in
the unlikely case that is taken too). The image id stays the sha256 everywhere else. A build
finds the same names without a set of every name (:mod:`engine.release.name_table`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

#: longest stem kept, in UTF-8 bytes (file systems allow 255 per name)
MAX_STEM_BYTES = 100
#: extension (lower case) -> the Pillow formats it can name
FORMAT_EXTENSIONS = {"jpg": "JPEG MPO", "jpeg": "JPEG MPO", "jpe": "JPEG MPO", "jfif": "JPEG MPO", "png": "PNG",
                     "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tif": "TIFF", "tiff": "TIFF"}
UNSAFE = re.compile(r'[/\\<>:"|?*]')
DEVICE_NAMES = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
#: the end of a suffixed candidate's name: ``-``, hex digits of an image id, the extension
HEX_SUFFIXED = re.compile(r"-[0-9a-f]{8,64}\.[^.]*\Z")


def _clean(text: str) -> str:
    """``text`` with path separators, characters Windows refuses and every control, format or
    unassigned character replaced by ``_``."""
    text = UNSAFE.sub("_", unicodedata.normalize("NFC", text))
    return "".join("_" if unicodedata.category(ch).startswith("C") else ch for ch in text)


def _cut(stem: str, limit: int = MAX_STEM_BYTES) -> str:
    """``stem`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    data = stem.encode("utf-8")
    return stem if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def safe_name(given: str, image_format: str, extension: str, image_id: str) -> str:
    """The safe file name (module docstring) of an image ``given`` a name (a key or a COCO
    ``file_name``, maybe with folders), of Pillow format ``image_format`` whose usual extension
    is ``extension``."""
    base = given.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, theirs = base.rpartition(".")
    if not dot or image_format not in FORMAT_EXTENSIONS.get(theirs.lower(), "").split():
        stem, theirs = base, extension
    stem = _cut(_clean(stem).strip(" .").rstrip(" ")).strip(" .")
    stem = stem or image_id
    name = f"{stem}.{_clean(theirs)}"
    return f"{stem}_.{_clean(theirs)}" if DEVICE_NAMES.fullmatch(name) else name


def candidates(plain: str, image_id: str) -> tuple[str, str, str, str]:
    """The names an image whose safe name is ``plain`` may get, in the order tried: ``plain``, then
    with ``-`` and the first 8, 16 and 64 hex digits of its image id (module docstring)."""
    stem, _, ext = plain.rpartition(".")
    return (plain, *(f"{_cut(stem, MAX_STEM_BYTES - n - 1)}-{image_id[:n]}.{ext}" for n in (8, 16, 64)))  # type: ignore[return-value]


def may_be_suffixed(folded: str) -> bool:
    """Whether the case-folded name ``folded`` has the form of a suffixed candidate (``-``, 8 to
    64 hex digits, the extension), so that it could be another image's suffixed name."""
    return HEX_SUFFIXED.search(folded) is not None


def unique_names(given: Mapping[str, tuple[str, str, str, str]]) -> dict[str, str]:
    """image_id -> its unique safe name; ``given``: image_id -> (order key, given name, Pillow
    format, usual extension), named in (order key, image id) order (module docstring). The
    reference for :mod:`engine.release.name_table`, which names a release's images in bounded
    memory."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for image_id, (_, name, image_format, extension) in sorted(given.items(), key=lambda kv: (kv[1][0], kv[0])):
        for candidate in candidates(safe_name(name, image_format, extension, image_id), image_id):
            if candidate.casefold() not in used:
                break
        used.add(candidate.casefold())
        out[image_id] = candidate
    return out
