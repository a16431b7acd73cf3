"""Tables kept as parts under a head: written a part at a time, changed by writing the changes,
compacted, tidied; the same test for a local folder and S3 (a moto server)."""

from __future__ import annotations

import polars as pl
import pytest

from amp_braze.storage import Storage, non_null_counts, parts

HEAD = "tables/sources/crm.parquet"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(tmp_path / "root")
    return Storage(f"s3://{request.getfixturevalue('s3_bucket')}/amp/parts")


def _rows(start: int, n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "k": [f"c{i:04d}" for i in range(start, start + n)],
            "v": [None if i % 7 == 0 else f"{tag}{i}" for i in range(start, start + n)],
        }
    )


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.sort("k", "v", nulls_last=True).equals(b.sort("k", "v", nulls_last=True))


def _change(storage: Storage, table: pl.DataFrame, new: pl.DataFrame, gone: list[str]):
    """Replace the rows of ``new``'s keys and remove ``gone``, as a feed's incremental read does;
    returns the table expected and how the change was written."""
    dropped = pl.concat([new.get_column("k"), pl.Series("k", gone)])
    expected = pl.concat([table.filter(~pl.col("k").is_in(dropped.implode())), new])
    snap = storage.table_snapshot("sources/crm")
    _, written = parts.write_changes(
        storage,
        HEAD,
        snap,
        "k",
        new,
        dropped,
        expected.height,
        non_null_counts(expected),
        {"round": 1},
    )
    return expected, written


def test_a_table_written_in_parts_reads_as_one(storage, monkeypatch):
    monkeypatch.setattr(parts, "PART_ROWS", 40)
    batches = [_rows(i, 25, "a") for i in range(0, 200, 25)]
    uri, rows = parts.write_stream(
        storage, HEAD, batches[0].schema, iter(batches), lambda: {"cursor": "x"}
    )
    whole = pl.concat(batches)
    assert uri == storage.uri(HEAD) and rows == 200
    layout = storage.footer(HEAD)[parts.PARTS_KEY]
    assert len(layout["files"]) == 4  # 50 rows a part (two batches reach 40), the last of 50
    assert storage.read_table("sources/crm").equals(whole)  # in order
    assert storage.scan_table("sources/crm").collect().equals(whole)
    snap = storage.table_snapshot("sources/crm")
    assert snap.frame.collect().equals(whole)
    assert (snap.footer["rows"], snap.footer["cursor"]) == (200, "x")
    assert snap.footer["non_null"] == non_null_counts(whole)
    assert parts.describe(snap.footer) == {
        "base_parts": 4,
        "rows_changed_since_base": 0,
        "keys_replaced_since_base": 0,
    }


def test_changes_are_written_beside_the_base_until_it_is_compacted(storage, monkeypatch):
    table = _rows(0, 200, "a")
    parts.write_stream(storage, HEAD, table.schema, [table], dict)
    base = storage.footer(HEAD)[parts.PARTS_KEY]["files"]

    # 5 rows changed, 2 keys gone, 1 new: 8 of 200, inside 10%
    table, written = _change(
        storage, table, _rows(10, 5, "b").vstack(_rows(500, 1, "n")), ["c0100", "c0101"]
    )
    assert written == "changes" and _same(storage.read_table("sources/crm"), table)
    layout = storage.footer(HEAD)[parts.PARTS_KEY]
    assert layout["files"] == base and (layout["delta_rows"], layout["dropped_keys"]) == (6, 8)

    # a key changed again: its earlier change leaves the delta
    table, written = _change(storage, table, _rows(12, 1, "c"), [])
    assert written == "changes" and _same(storage.read_table("sources/crm"), table)
    assert storage.table_snapshot("sources/crm").frame.filter(pl.col("k") == "c0012").collect()[
        "v"
    ].to_list() == ["c12"]
    footer = storage.footer(HEAD)
    assert (footer["rows"], footer["non_null"]) == (table.height, non_null_counts(table))

    # past 10% of the rows: the table is written again as one base
    table, written = _change(storage, table, _rows(20, 30, "d"), [])
    assert written == "compacted" and _same(storage.read_table("sources/crm"), table)
    layout = storage.footer(HEAD)[parts.PARTS_KEY]
    assert len(layout["files"]) == 1 and layout["files"] != base and layout["delta"] is None


def test_parts_stay_while_a_head_names_them(storage, monkeypatch):
    monkeypatch.setattr(parts, "KEEP_SECONDS", 0.0)  # nothing is young enough to be spared
    monkeypatch.setattr(parts, "COMPACT_AT", 0.0)  # every change writes a new base
    table = _rows(0, 50, "a")
    parts.write_stream(storage, HEAD, table.schema, [table], dict)
    old = storage.table_snapshot("sources/crm")  # a reader that took its snapshot first
    first = parts.named(old.footer[parts.PARTS_KEY])
    table, _ = _change(storage, table, _rows(0, 3, "b"), [])
    assert first <= set(storage.list(parts.folder(HEAD)))  # the head before names them
    assert _same(old.frame.collect(), _rows(0, 50, "a"))
    second = parts.named(storage.footer(HEAD)[parts.PARTS_KEY])
    table, _ = _change(storage, table, _rows(3, 3, "c"), [])
    third = parts.named(storage.footer(HEAD)[parts.PARTS_KEY])
    assert set(storage.list(parts.folder(HEAD))) == second | third  # the first base is gone
    assert _same(storage.read_table("sources/crm"), table)


def test_a_plain_table_becomes_parts_on_its_first_change(storage):
    table = _rows(0, 100, "a")
    storage.write_table("sources/crm", table)
    table, written = _change(storage, table, _rows(5, 2, "b"), [])
    assert written == "compacted" and _same(storage.read_table("sources/crm"), table)
    assert parts.PARTS_KEY in storage.footer(HEAD)
