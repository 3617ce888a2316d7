"""``DataRoot.holds_images``: a folder of images (or shards) named as the data root is told apart
from an empty folder, a data root and a folder of other files."""

from __future__ import annotations

from PIL import Image

from storage.layout import DataRoot


def test_images_at_the_top_or_one_folder_down(tmp_path):
    flat, nested, other, empty = (tmp_path / n for n in ("flat", "nested", "other", "empty"))
    for folder in (flat, nested / "2023", other, empty):
        folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "IMG_0001.JPG")
    Image.new("RGB", (8, 8)).save(nested / "2023" / "beach.png")
    (other / "notes.txt").write_text("hello")
    assert DataRoot(flat).holds_images() and DataRoot(nested).holds_images()
    assert not DataRoot(other).holds_images() and not DataRoot(empty).holds_images()
    assert not DataRoot(tmp_path / "missing").holds_images()
    assert not DataRoot(flat).holds_images(scan=0)  # the scan is bounded


def test_a_data_root_or_a_link_out_is_never_an_image_folder(tmp_path):
    root = DataRoot(tmp_path / "root").ensure()
    (root.path / "catalog.duckdb").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(root.path / "stray.jpg")
    assert not root.holds_images()  # it has a catalog
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.jpg")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "album").symlink_to(photos)
    assert not DataRoot(linked).holds_images()
