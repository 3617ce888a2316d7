"""Released file names: the user's own, made safe (one path component, no ``..``, no control
characters, a sane length) and unique (case-insensitively, a short hash suffix on a collision)."""

from __future__ import annotations

import hashlib

import pytest

from engine.release.names import MAX_STEM_BYTES, safe_name, unique_names

ID = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize("given, fmt, ext, expected", [
    ("page", "JPEG", "jpg", "page.jpg"),  # a folder key: the format's extension
    ("a/My Photo (1)", "PNG", "png", "My Photo (1).png"),
    ("Scan.JPG", "JPEG", "jpg", "Scan.JPG"),  # the name's own extension when it names the format
    ("photo.jpeg", "JPEG", "jpg", "photo.jpeg"),
    ("x.png", "JPEG", "jpg", "x.png.jpg"),  # an extension that lies about the bytes is kept as part of the name
    ("../../etc/passwd", "PNG", "png", "passwd.png"),
    ("..", "PNG", "png", f"{ID}.png"),
    (".hidden", "JPEG", "jpg", "hidden.jpg"),
    ("dir\\win.jpg", "JPEG", "jpg", "win.jpg"),
    ("a\nb\x00c\u202ed", "JPEG", "jpg", "a_b_c_d.jpg"),
    ('what?*:"<>|', "JPEG", "jpg", "what_______.jpg"),
    ("trailing. ", "JPEG", "jpg", "trailing.jpg"),
    ("CON", "JPEG", "jpg", "CON_.jpg"),
    ("", "JPEG", "jpg", f"{ID}.jpg"),
])
def test_safe_name(given, fmt, ext, expected):
    assert safe_name(given, fmt, ext, ID) == expected


def test_a_long_name_is_cut_on_a_character_boundary():
    name = safe_name("é" * 300, "JPEG", "jpg", ID)
    stem = name.rsplit(".", 1)[0]
    assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES and stem == "é" * (MAX_STEM_BYTES // 2)


def test_names_are_unique_case_insensitively_with_a_short_hash_suffix():
    ids = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("a/dup", "b/dup", "Dup", "dup-x", "long")}
    names = unique_names({ids["a/dup"]: ("a/dup", "a/dup", "JPEG", "jpg"), ids["b/dup"]: ("b/dup", "b/dup", "JPEG", "jpg"),
                          ids["Dup"]: ("Dup", "Dup.JPG", "JPEG", "jpg"),
                          ids["long"]: ("long", "é" * 300, "JPEG", "jpg"), ids["dup-x"]: ("dup-x", "x", "PNG", "png")})
    assert names[ids["Dup"]] == "Dup.JPG"  # first in key order keeps the plain name
    assert names[ids["a/dup"]] == f"dup-{ids['a/dup'][:8]}.jpg" and names[ids["b/dup"]] == f"dup-{ids['b/dup'][:8]}.jpg"
    assert len({n.casefold() for n in names.values()}) == len(names)
    assert len(names[ids["long"]].rsplit(".", 1)[0].encode()) <= MAX_STEM_BYTES
    again = unique_names({ids["a/dup"]: ("a/dup", "a/dup", "JPEG", "jpg"), ids["b/dup"]: ("b/dup", "b/dup", "JPEG", "jpg"),
                          ids["Dup"]: ("Dup", "Dup.JPG", "JPEG", "jpg"),
                          ids["long"]: ("long", "é" * 300, "JPEG", "jpg"), ids["dup-x"]: ("dup-x", "x", "PNG", "png")})
    assert again == names  # a pure function: the same release names the same files
