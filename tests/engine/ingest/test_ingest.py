"""engine.ingest.shards: counts, duplicates, idempotent re-ingest, bad input as rows, resume."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from PIL import Image

import engine.ingest.shards as ingest_module
from engine.ingest.shards import IngestConfig, ingest
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.images import encode, jpeg
from tests.shards import write_folder, write_tar

QUIET = IngestConfig(progress=False)


def _images(root: DataRoot) -> list[dict]:
    with Catalog(root) as catalog:
        rows = catalog.con.execute(
            "select shard, key, image_id, status, error, width, height from images order by shard, key").fetchall()
    return [dict(zip(["shard", "key", "image_id", "status", "error", "width", "height"], r)) for r in rows]


def test_every_bad_input_kind_becomes_an_error_row(tmp_path):
    big = encode(Image.new("L", (3000, 3000)), "PNG")
    members = [
        ("good.jpg", jpeg(seed=1)),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0 a jpeg header and then junk"),
        ("text.jpg", b"plain text under an image name"),
        ("truncated.png", encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")[:900]),
        ("empty.jpg", b""),
        ("notes.csv", b"a,b,c"),
        ("/abs/path.jpg", jpeg(seed=2)),
        ("../escape.jpg", jpeg(seed=3)),
        ("bomb.png", big),
        ("pixel.png", encode(Image.new("RGB", (1, 1)), "PNG")),
    ]
    root = DataRoot(tmp_path / "root")
    summary = ingest(root, [str(write_tar(tmp_path / "bad.tar", members))],
                     IngestConfig(progress=False, max_pixels=4_000_000))
    rows = {r["key"]: r for r in _images(root)}
    assert summary.ok == 1 and rows["good"]["status"] == "ok"
    expected = {"corrupt": "corrupt or truncated", "text": "not an image", "truncated": "corrupt or truncated", "empty": "empty file",
                "notes.csv": "not an image member", "/abs/path.jpg": "unsafe member name",
                "../escape.jpg": "unsafe member name", "bomb": "too large", "pixel": "too small"}
    for key, reason in expected.items():
        assert rows[key]["status"] == "error" and reason in rows[key]["error"], (key, rows[key])
    assert summary.error == len(expected)


def test_duplicates_keep_one_id_and_every_location(tmp_path):
    shared = jpeg(seed=42)
    first = write_tar(tmp_path / "a.tar", [("x.jpg", shared), ("y.jpg", jpeg(seed=1))])
    second = write_folder(tmp_path / "folder", [("copy.jpg", shared), ("z.jpg", shared)])
    root = DataRoot(tmp_path / "root")
    summary = ingest(root, [str(first), str(second)], QUIET)
    assert (summary.ok, summary.duplicate) == (2, 2)
    rows = [r for r in _images(root) if r["image_id"] == _images(root)[0]["image_id"] or r["key"] != "y"]
    locations = {(r["shard"].rsplit("/", 1)[-1], r["key"], r["status"]) for r in rows if r["key"] != "y"}
    assert locations == {("a.tar", "x", "ok"), ("folder", "copy", "duplicate"), ("folder", "z", "duplicate")}
    assert len({r["image_id"] for r in rows if r["key"] != "y"}) == 1


def test_reingest_adds_nothing(tmp_path):
    (tmp_path / "src").mkdir()
    shard = write_tar(tmp_path / "src" / "a.tar", [(f"{i}.jpg", jpeg(seed=i)) for i in range(5)])
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(shard)], QUIET)
    before = _images(root)
    again = ingest(root, [str(tmp_path / "src")], QUIET)  # the same shard, named through its folder
    assert (again.shards_ingested, again.shards_skipped, again.ok) == (0, 1, 0)
    assert _images(root) == before


def test_ingest_stopped_mid_shard_resumes_without_duplicates(tmp_path, monkeypatch):
    shards = [write_tar(tmp_path / f"s{n}.tar", [(f"{n}-{i}.jpg", jpeg(seed=10 * n + i)) for i in range(6)])
              for n in range(3)]
    clean = DataRoot(tmp_path / "clean")
    ingest(clean, [str(s) for s in shards], QUIET)

    real_probe, calls = ingest_module.probe_image, {"n": 0}

    def dying_probe(data, limits):
        calls["n"] += 1
        if calls["n"] == 9:  # inside the second shard
            raise KeyboardInterrupt("killed")
        return real_probe(data, limits)

    root = DataRoot(tmp_path / "root")
    monkeypatch.setattr(ingest_module, "probe_image", dying_probe)
    with pytest.raises(KeyboardInterrupt):
        ingest(root, [str(s) for s in shards], IngestConfig(progress=False, workers=1))
    parts = sorted(p.name for p in root.images.iterdir())
    assert len(parts) == 1 and not any(p.startswith(".") for p in parts)  # no half-written part
    monkeypatch.setattr(ingest_module, "probe_image", real_probe)
    resumed = ingest(root, [str(s) for s in shards], QUIET)
    assert (resumed.shards_skipped, resumed.shards_ingested) == (1, 2)
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(_images(root)) == strip(_images(clean))


def test_part_without_catalog_row_is_registered_on_rerun(tmp_path):
    shard = write_tar(tmp_path / "a.tar", [("a.jpg", jpeg()), ("b.jpg", b"junk")])
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(shard)], QUIET)
    with Catalog(root) as catalog:
        catalog.con.execute("delete from shards")
    ingest(root, [str(shard)], QUIET)
    with Catalog(root) as catalog:
        assert catalog.query("select images_ok, images_error from shards") == [(1, 1)]


def test_ingested_rows_have_true_upright_sizes(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(Image.new("RGB", (80, 30), (9, 9, 9)), "JPEG", exif=exif)
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(write_tar(tmp_path / "r.tar", [("r.jpg", rotated)]))], QUIET)
    (row,) = _images(root)
    assert (row["width"], row["height"]) == (30, 80)
    part = next(root.images.glob("part-*.parquet"))
    assert pq.read_table(part).column("exif_orientation").to_pylist() == [6]


def test_refused_images_come_back_when_the_limit_changes_or_on_retry(tmp_path):
    shard = write_tar(tmp_path / "a.tar", [("small.jpg", jpeg(seed=1)), ("wide.png", encode(Image.new("RGB", (300, 200)), "PNG"))])
    root = DataRoot(tmp_path / "root")
    strict = IngestConfig(progress=False, max_pixels=10_000)
    assert ingest(root, [str(shard)], strict).error == 1
    first = {r["key"]: r for r in _images(root)}
    assert first["wide"]["status"] == "error"
    # the same settings: nothing to do; retrying errors under the same limit refuses it again
    assert ingest(root, [str(shard)], strict).shards_skipped == 1
    again = ingest(root, [str(shard)], IngestConfig(progress=False, max_pixels=10_000, retry_errors=True))
    assert (again.shards_rejudged, again.error, again.ok) == (1, 1, 1)  # its own ok image is no duplicate
    # the default limit: the shard is judged again and the refused image comes back
    back = ingest(root, [str(shard)], QUIET)
    assert (back.shards_rejudged, back.ok, back.error, back.duplicate) == (1, 2, 0, 0)
    rows = {r["key"]: r for r in _images(root)}
    assert rows["wide"]["status"] == "ok" and rows["small"]["image_id"] == first["small"]["image_id"]
    assert len(_images(root)) == 2  # rewritten, not appended
    assert ingest(root, [str(shard)], QUIET).shards_skipped == 1


def test_a_repeated_key_keeps_its_first_record(tmp_path):
    import pyarrow as pa

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"key": ["a", "a", "a", "b"],
                             "image": [jpeg(seed=1), jpeg(seed=2), jpeg(seed=3), jpeg(seed=4)]}), path)
    root = DataRoot(tmp_path / "root")
    summary = ingest(root, [str(path)], QUIET)
    assert (summary.ok, summary.error) == (2, 2)
    statuses = [(r["key"], r["status"]) for r in _images(root)]
    assert sorted(statuses) == [("a", "error"), ("a", "error"), ("a", "ok"), ("b", "ok")]
    from engine.dataset.locations import image_locations, read_images

    with Catalog(root) as catalog:
        locations = image_locations(catalog)
    assert len(list(read_images(locations))) == 2  # the bytes of the first "a" read back, not another's


def test_a_wrong_value_in_the_image_struct_costs_its_row_only(tmp_path):
    import pyarrow as pa

    path = tmp_path / "structs.parquet"
    image = pa.struct([("bytes", pa.string()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": "not bytes", "path": "x.jpg"}, {"bytes": None, "path": "y"}],
                                               type=image)}), path)
    good = tmp_path / "good.parquet"
    binary = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([{"bytes": jpeg(seed=1), "path": "a.jpg"}], type=binary)}), good)
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(path), str(good)], QUIET)
    errors = sorted(r["error"] for r in _images(root) if r["status"] == "error")
    assert errors == ["null image bytes", "the image value is str, not bytes"]
    assert [r["status"] for r in _images(root)].count("ok") == 1


def test_members_over_the_size_limit_are_refused_unread(tmp_path):
    import io
    import tarfile

    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("huge.jpg")
        info.size = 64 * 2**20  # 64 MiB of zeros: a few KB compressed
        archive.addfile(info, io.BytesIO(bytes(info.size)))
        data = jpeg(seed=1)
        info = tarfile.TarInfo("fine.jpg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    assert path.stat().st_size < 2**20
    root = DataRoot(tmp_path / "root")
    summary = ingest(root, [str(path)], IngestConfig(progress=False, max_member_bytes=2**20))
    rows = {r["key"]: r for r in _images(root)}
    assert summary.ok == 1 and rows["huge.jpg"]["status"] == "error" and "member too large" in rows["huge.jpg"]["error"]


def test_an_unlistable_folder_is_an_error_row(tmp_path, monkeypatch):
    import os

    source = write_folder(tmp_path / "photos", [("a.jpg", jpeg(seed=1))])
    (source / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):  # folders are listed through their descriptors
        where = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else str(path)
        if where.endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    root = DataRoot(tmp_path / "root")
    summary = ingest(root, [str(source)], QUIET)
    rows = {r["key"]: r for r in _images(root)}
    assert summary.ok == 1 and summary.error == 1
    assert rows["locked/"]["status"] == "error" and "unreadable folder" in rows["locked/"]["error"]
    # a folder that cannot be listed at all: one error row, not "0 ok, 0 errors"
    monkeypatch.setattr(os, "scandir", lambda path=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(path))))
    nothing = ingest(DataRoot(tmp_path / "root2"), [str(tmp_path / "photos" / "locked")], QUIET)
    assert nothing.error == 1
