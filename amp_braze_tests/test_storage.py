"""Storage: Parquet tables and JSON on a local folder and on S3 (a moto server), written atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest

from amp_braze.storage import Storage


def _frame(n: int, tag: int) -> pl.DataFrame:
    return pl.DataFrame({"id": pl.int_range(n, eager=True), "tag": pl.repeat(tag, n, eager=True)})


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return Storage(f"s3://{bucket}/amp/prefix")


def test_table_round_trip_list_and_json(storage):
    df = _frame(1000, 1).with_columns(name=pl.format("u{}", pl.col("id")))
    uri = storage.write_table("sources/pos", df)
    assert uri == f"{storage.root}/tables/sources/pos.parquet"
    assert storage.table_exists("sources/pos")
    assert not storage.table_exists("sources/other")
    back = storage.read_table("sources/pos")
    assert back.equals(df)
    assert storage.scan_table("sources/pos").filter(pl.col("id") < 10).collect().height == 10
    storage.write_json("sync/state/CURRENT.json", {"version": 3, "parts": ["a", "b"]})
    assert storage.read_json("sync/state/CURRENT.json") == {"version": 3, "parts": ["a", "b"]}
    assert storage.read_json("sync/missing.json", default={}) == {}
    assert storage.list("tables") == ["tables/sources/pos.parquet"]
    assert storage.list("sync") == ["sync/state/CURRENT.json"]
    storage.delete_prefix("sync")
    assert storage.list("sync") == []
    with pytest.raises(FileNotFoundError, match="materialize the asset 'nope' first"):
        storage.scan_table("nope")


def test_s3_objects_are_really_in_the_bucket(s3_bucket):
    from amp_braze.storage import s3_client

    Storage(f"s3://{s3_bucket}/p").write_table("customer_profiles", _frame(10, 2))
    keys = [o["Key"] for o in s3_client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["p/tables/customer_profiles.parquet"]


def test_large_s3_table_through_polars_native_writer(s3_bucket):
    df = pl.DataFrame({"id": pl.int_range(9_000_000, eager=True)})  # > 64 MB in memory
    storage = Storage(f"s3://{s3_bucket}/big")
    storage.write_table("t", df)
    assert storage.scan_table("t").select(pl.len()).collect().item() == 9_000_000


def test_readers_never_see_a_half_written_table(tmp_path):
    storage = Storage(tmp_path)
    storage.write_table("t", _frame(200_000, 0))
    stop = threading.Event()
    failures: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            df = storage.read_table("t")
            if df.height != 200_000 or df["tag"].n_unique() != 1:
                failures.append(f"saw {df.height} rows, tags {df['tag'].unique().to_list()}")

    t = threading.Thread(target=reader)
    t.start()
    for i in range(1, 25):
        storage.write_table("t", _frame(200_000, i))
    stop.set()
    t.join()
    assert failures == []
    assert storage.read_table("t")["tag"][0] == 24
    assert [p.name for p in (tmp_path / "tables").iterdir()] == ["t.parquet"]


def test_a_scan_and_a_snapshot_read_the_version_there_when_they_were_made(storage):
    """Before: a lazy scan read its footer from one version and its pages from the next one that
    another run renamed over it ("page header reported the wrong page size"), and a footer read
    apart from the rows could describe another version (its ids digest lined up wrong rows)."""
    storage.write_table("t", _frame(300_000, 1), {"ids_digest": "one"})
    scan = storage.scan_table("t")
    snap = storage.table_snapshot("t")
    storage.write_table(
        "t", _frame(1_000, 2).with_columns(extra=pl.lit("x")), {"ids_digest": "two"}
    )
    for frame in (scan, snap.frame):
        old = frame.collect()
        assert old.height == 300_000 and old["tag"].unique().to_list() == [1]
        assert frame.filter(pl.col("id") >= 299_990).collect()["id"].to_list()[-1] == 299_999
    assert snap.footer["ids_digest"] == "one" and snap.footer["rows"] == 300_000
    assert storage.table_snapshot("t").footer["ids_digest"] == "two"
    assert storage.scan_table("t").collect().columns == ["id", "tag", "extra"]


WRITER = """
import sys, polars as pl
from amp_braze.storage import Storage
s = Storage(sys.argv[1])
i = 1
print("ready", flush=True)
while True:
    s.write_table("t", pl.DataFrame({"v": pl.repeat(i, 3_000_000, eager=True)}))
    i += 1
"""


def test_writer_killed_mid_write_leaves_the_old_table_whole(tmp_path):
    storage = Storage(tmp_path)
    storage.write_table("t", pl.DataFrame({"v": pl.repeat(0, 3_000_000, eager=True)}))
    for delay in (0.05, 0.2, 0.45):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        df = storage.read_table("t")
        assert df.height == 3_000_000
        assert df["v"].n_unique() == 1
    assert storage.list("tables") == ["tables/t.parquet"]


def test_create_only_writes(storage):
    assert storage.create_bytes("sync/state/v000001/manifest.json", b"first")
    assert not storage.create_bytes("sync/state/v000001/manifest.json", b"second")
    assert storage.read_bytes("sync/state/v000001/manifest.json") == b"first"
