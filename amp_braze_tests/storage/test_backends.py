"""The storage interface, the same test for both back-ends: a local folder and S3 (a moto server)."""

from __future__ import annotations

import copy
import os
import pickle
import time

import polars as pl
import pytest

from amp_braze.storage import LocalStorage, S3Storage, Storage, s3_client


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(tmp_path / "root")
    return Storage(f"s3://{request.getfixturevalue('s3_bucket')}/amp/prefix")


def test_the_root_picks_the_back_end(tmp_path):
    local, s3 = Storage(tmp_path), Storage("s3://bucket/some/prefix/")
    assert type(local) is LocalStorage and not local.is_s3 and local.storage_options is None
    assert type(s3) is S3Storage and s3.is_s3
    assert (s3.root, s3.bucket, s3.prefix) == ("s3://bucket/some/prefix", "bucket", "some/prefix")
    assert isinstance(local, Storage) and isinstance(s3, Storage)
    assert LocalStorage(tmp_path).root == local.root == str(tmp_path)
    for made in (local, s3):  # copies and pickles keep their back-end and root
        for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
            assert type(again) is type(made) and again.root == made.root


def test_bytes_json_exists_and_delete(storage):
    storage.write_bytes("a/b/one.bin", b"1")
    storage.write_bytes("a/b/one.bin", b"2")  # overwritten whole
    assert storage.read_bytes("a/b/one.bin") == b"2"
    assert storage.exists("a/b/one.bin") and not storage.exists("a/b/two.bin")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a/b/two.bin")
    storage.write_json("a/doc.json", {"k": [1, 2]})
    assert storage.read_json("a/doc.json") == {"k": [1, 2]}
    assert storage.read_json("a/none.json", default={"d": 1}) == {"d": 1}
    storage.delete("a/b/one.bin")
    storage.delete("a/b/one.bin")  # deleting what is gone is no error
    assert not storage.exists("a/b/one.bin")
    assert storage.list("a") == ["a/doc.json"]


def test_create_only_writes_have_one_winner(storage):
    assert storage.create_bytes("v/manifest.json", b"first")
    assert not storage.create_bytes("v/manifest.json", b"second")
    assert storage.read_bytes("v/manifest.json") == b"first"
    assert storage.list("v") == ["v/manifest.json"]  # the loser left nothing behind


def test_listing_is_sorted_per_folder_and_versions_change_on_rewrite(storage):
    for name in ("f/b.bin", "f/a.bin", "f/sub/c.bin", "f2/d.bin"):
        storage.write_bytes(name, b"x")
    assert storage.list("f") == ["f/a.bin", "f/b.bin", "f/sub/c.bin"]  # not f2: a folder
    assert storage.list("/f/") == storage.list("f")
    assert storage.list("nothing") == []
    before = storage.versions("f")
    time.sleep(0.01)
    storage.write_bytes("f/a.bin", b"longer")
    after = storage.versions("f")
    assert after["f/a.bin"] != before["f/a.bin"]
    assert {k: v for k, v in after.items() if k != "f/a.bin"} == {
        k: v for k, v in before.items() if k != "f/a.bin"
    }
    storage.delete_prefix("f")
    assert storage.list("f") == [] and storage.list("f2") == ["f2/d.bin"]


def test_parquet_footer_snapshot_and_missing_files(storage):
    df = pl.DataFrame({"id": [1, 2, 3], "v": ["a", None, "c"]})
    uri = storage.write_parquet("p/t.parquet", df, {"ids_digest": "d1"})
    assert uri == storage.uri("p/t.parquet") == f"{storage.root}/p/t.parquet"
    footer = storage.footer("p/t.parquet")
    assert footer["rows"] == 3 and footer["non_null"] == {"id": 3, "v": 2}
    assert footer["ids_digest"] == "d1" and len(footer["write_id"]) == 32
    snap = storage.snapshot("p/t.parquet")
    assert snap.footer == footer and snap.frame.collect().equals(df)
    assert storage.read_parquet("p/t.parquet").equals(df)
    storage.write_parquet("p/u.parquet", df.head(1))
    both = storage.scan_parquet(["p/t.parquet", "p/u.parquet"]).collect()
    assert both.get_column("id").to_list() == [1, 2, 3, 1]
    for read in (storage.read_parquet, storage.scan_parquet, storage.snapshot):
        with pytest.raises(FileNotFoundError, match="materialize it first"):
            read("p/missing.parquet")


def test_a_local_file_to_hand_to_an_engine_that_reads_paths(storage):
    df = pl.DataFrame({"id": [1, 2, 3], "v": ["a", None, "c"]})
    storage.write_parquet("p/t.parquet", df)
    with storage.local_file("p/t.parquet") as path:
        assert path.is_file() and pl.read_parquet(path).equals(df)
        import duckdb

        where = str(path).replace("'", "''")
        assert duckdb.sql(f"SELECT sum(id) FROM read_parquet('{where}')").fetchall() == [(6,)]
    # A copy goes when the block ends; a local root's own file stays.
    assert path.exists() == (not storage.is_s3)
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        with storage.local_file("p/missing.parquet"):
            pass


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(storage):
    """What a killed write leaves (locally a dot-file beside its target, on S3 a multipart upload
    never completed) is removed once older than the limit, and never listed."""
    storage.write_bytes("w/kept.bin", b"k")
    if storage.is_s3:
        client = s3_client()
        up = client.create_multipart_upload(
            Bucket=storage.bucket, Key=f"{storage.prefix}/w/half.bin"
        )
        # moto reports every upload as initiated long ago, so only removal is shown here
        assert storage.remove_stale_temp_files("w") == 1
        left = client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
        assert up["UploadId"] not in [u["UploadId"] for u in left]
    else:
        folder = os.path.join(storage.root, "w")
        stale, fresh = (os.path.join(folder, f".half.bin.tmp-{t}") for t in ("old", "new"))
        for path in (stale, fresh):
            with open(path, "wb") as f:
                f.write(b"half")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        assert storage.list("w") == ["w/kept.bin"]  # temporary files are never listed
        assert storage.remove_stale_temp_files("w", older_than_seconds=3600) == 1
        assert not os.path.exists(stale) and os.path.exists(fresh)
    assert storage.read_bytes("w/kept.bin") == b"k"


def test_empty_folders_are_removed_where_there_are_folders(storage):
    storage.write_bytes("e/a/b/x.bin", b"x")
    storage.write_bytes("e/c/y.bin", b"y")
    storage.delete("e/a/b/x.bin")
    storage.remove_empty_folders("e")
    assert storage.list("e") == ["e/c/y.bin"]
    if not storage.is_s3:
        assert sorted(os.listdir(os.path.join(storage.root, "e"))) == ["c"]
