"""storage.readers: tar / tar.gz / folder / Parquet streaming, sidecars, broken shards."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.readers import SourceError, discover_shards
from storage.readers.base import split_key
from tests.images import jpeg
from tests.shards import write_folder, write_parquet, write_tar


def _records(path):
    (shard,) = discover_shards([str(path)])
    return shard, list(shard.records())


def test_split_key_follows_webdataset():
    assert split_key("a/b/img.001.jpg") == ("a/b/img", "001.jpg")
    assert split_key("x.JPG") == ("x", "jpg")
    assert split_key("noext") == ("noext", "")


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz")])
def test_tar_groups_images_with_sidecars(tmp_path, mode, suffix):
    members = [("a.jpg", jpeg(seed=1)), ("a.json", b'{"caption": "one"}'), ("a.txt", b"alt text"),
               ("sub/b.png", jpeg(seed=2)), ("c.jpg", jpeg(seed=3))]
    shard, records = _records(write_tar(tmp_path / f"s{suffix}", members, mode))
    assert shard.format == "tar"
    assert [r.key for r in records] == ["a", "sub/b", "c"]
    assert records[0].meta == {"json": {"caption": "one"}, "txt": "alt text"}
    assert records[0].data == jpeg(seed=1) and records[0].name == "a.jpg"
    assert records[1].meta == {} and all(r.error is None for r in records)


def test_tar_reports_unsafe_and_non_image_members(tmp_path):
    members = [("/etc/evil.jpg", jpeg(seed=1)), ("../up.jpg", jpeg(seed=2)), ("notes.csv", b"a,b"),
               ("lonely.json", b"{}"), ("ok.jpg", jpeg(seed=3))]
    _, records = _records(write_tar(tmp_path / "s.tar", members))
    errors = {r.key: r.error for r in records if r.error}
    assert "unsafe member name" in errors["/etc/evil.jpg"]
    assert "unsafe member name" in errors["../up.jpg"]
    assert "not an image member" in errors["notes.csv"]
    assert "sidecar without an image" in errors["lonely.json"]
    assert [r.key for r in records if r.error is None] == ["ok"]


@pytest.mark.parametrize("mode,fraction", [("w", 0.5), ("w", 0.37), ("w:gz", 0.6)])
def test_truncated_tar_keeps_what_was_read_and_reports_the_cut(tmp_path, mode, fraction):
    # 0.5 cuts a plain tar exactly at a member boundary: only the missing end marker tells
    members = [(f"{i:03d}.jpg", jpeg(seed=i)) for i in range(6)]
    full = write_tar(tmp_path / "full.tar", members, mode).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full[: int(len(full) * fraction)])
    _, records = _records(cut)
    good = [r for r in records if r.error is None]
    assert len(good) < 6 and len(good) >= (1 if mode == "w" else 0)
    assert records[-1].error.startswith("truncated or corrupt tar")


def test_folder_is_walked_recursively_in_sorted_order(tmp_path):
    root = write_folder(tmp_path / "imgs", [("b.jpg", jpeg(seed=1)), ("a/z.png", jpeg(seed=2)),
                                           ("a/z.json", b'{"k": 1}'), ("readme.md", b"hi"),
                                           (".hidden.jpg", jpeg(seed=3))])
    shard, records = _records(root)
    assert shard.format == "folder"
    assert [(r.key, r.error is None) for r in records] == [("b", True), ("readme.md", False), ("a/z", True)]
    assert records[2].meta == {"json": {"k": 1}}


def test_folder_of_shards_stands_for_its_shards(tmp_path):
    write_tar(tmp_path / "d" / "x.tar" if (tmp_path / "d").mkdir() is None else None, [("a.jpg", jpeg())])
    write_parquet(tmp_path / "d" / "y.parquet", ["k"], [jpeg(seed=5)], ["c"])
    shards = discover_shards([str(tmp_path / "d")])
    assert sorted(s.format for s in shards) == ["parquet", "tar"]


def test_parquet_binary_column_with_keys_and_meta(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", ["k1", "k2", "k3"], [jpeg(seed=1), None, jpeg(seed=3)],
                         ["first", "second", "third"])
    _, records = _records(path)
    assert [r.key for r in records] == ["k1", "k2", "k3"]
    assert records[0].data == jpeg(seed=1) and records[0].meta["columns"]["caption"] == "first"
    assert records[1].error == "null image bytes"


def test_parquet_huggingface_image_struct(tmp_path):
    struct = pa.array([{"bytes": jpeg(seed=7), "path": "cat.jpg"}],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": struct}), tmp_path / "hf.parquet")
    _, records = _records(tmp_path / "hf.parquet")
    assert records[0].data == jpeg(seed=7) and records[0].name == "cat.jpg" and records[0].key == "00000000"


def test_truncated_parquet_is_an_error_record(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", ["k"], [jpeg()], ["c"])
    path.write_bytes(path.read_bytes()[:-30])
    _, records = _records(path)
    assert len(records) == 1 and "unreadable Parquet" in records[0].error


def test_missing_and_unsupported_sources_raise(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        discover_shards([str(tmp_path / "nope.tar")])
    (tmp_path / "f.csv").write_text("x")
    with pytest.raises(SourceError, match="not a shard"):
        discover_shards([str(tmp_path / "f.csv")])
    with pytest.raises(SourceError, match="no file matches"):
        discover_shards([str(tmp_path / "*.tar")])


def test_shard_id_is_stable_and_changes_with_content(tmp_path):
    path = write_tar(tmp_path / "s.tar", [("a.jpg", jpeg())])
    first = discover_shards([str(path)])[0].shard_id
    assert discover_shards([str(path)])[0].shard_id == first
    write_tar(path, [("a.jpg", jpeg()), ("b.jpg", jpeg(seed=4))])
    assert discover_shards([str(path)])[0].shard_id != first
    assert json.dumps(first)  # a plain string
