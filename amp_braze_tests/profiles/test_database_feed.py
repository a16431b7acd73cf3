"""A database table as a feed: the read by what changed gives exactly what a full read gives, on
real SQLite and DuckDB files and a real PostgreSQL server."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from amp_braze.profiles.database_feed import read_database_feed
from amp_braze.storage import Storage, parts
from amp_braze_tests.support.databases import FileDatabase, PostgresDatabase, database_source

TABLE = "sources/crm"
_NAMES = itertools.count()


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def crm(request, tmp_path) -> FileDatabase:
    if request.param == "postgres":
        server = request.getfixturevalue("postgres")
        db: FileDatabase = PostgresDatabase(server, f"crm_{next(_NAMES)}")
    else:
        db = FileDatabase(request.param, tmp_path / f"crm.{request.param}")
    db.create_customers(200, "2026-12-01 10:00:00")
    return db


def _rows(store: Storage) -> pl.DataFrame:
    df = store.read_table(TABLE)
    return df.sort(df.columns, nulls_last=True)


def _full(src, tmp_path, n: int) -> tuple[pl.DataFrame, object]:
    fresh = Storage(tmp_path / f"full{n}")
    done = read_database_feed(src, fresh, TABLE)
    assert done.read == "full"
    return _rows(fresh), done


def _same_counts(incremental, full, store: Storage, full_root) -> None:
    """The counts a merge derives (summary, footer rows and non-null counts) are a full read's."""
    assert incremental.summary == full.summary
    footer, whole = store.table_snapshot(TABLE).footer, Storage(full_root).table_snapshot(TABLE)
    assert (footer["rows"], footer["non_null"]) == (whole.footer["rows"], whole.footer["non_null"])


@pytest.mark.parametrize("compact_at", [1e9, 0.0], ids=["changes", "compacted"])
def test_reading_what_changed_gives_what_a_full_read_gives(crm, tmp_path, monkeypatch, compact_at):
    """Both ways a change is written: the changed rows beside the base, and the table again."""
    monkeypatch.setattr(parts, "COMPACT_AT", compact_at)
    written = "changes" if compact_at else "compacted"
    src = database_source(crm.uri, delete_scan_every=1)
    store = Storage(tmp_path / "feed")
    first = read_database_feed(src, store, TABLE)
    assert (first.read, first.rows, first.cursor) == ("full", 200, "2026-12-01T10:00:00+00:00")

    ts = crm.ts
    crm.execute(
        # updated, and one of them updated twice
        f"UPDATE customers SET city = 'moved', updated_at = {ts('2026-12-01 11:00:00')} "
        "WHERE customer_id IN ('c0001', 'c0002', 'c0003')",
        f"UPDATE customers SET city = 'moved again', updated_at = {ts('2026-12-01 11:30:00')} "
        "WHERE customer_id = 'c0002'",
        # soft-deleted and hard-deleted
        f"UPDATE customers SET deleted_at = {ts('2026-12-01 11:00:00')} WHERE customer_id = 'c0010'",
        "DELETE FROM customers WHERE customer_id IN ('c0011', 'c0012')",
        # new, committed late within the lookback, committed late outside it
        f"INSERT INTO customers VALUES ('n1', 'n1@x.com', 'new', 1, {ts('2026-12-01 11:00:00')}, NULL)",
        f"INSERT INTO customers VALUES ('late1', 'l1@x.com', 'late', 1, {ts('2026-12-01 09:30:00')}, NULL)",
        f"INSERT INTO customers VALUES ('late2', 'l2@x.com', 'old', 1, {ts('2026-11-20 00:00:00')}, NULL)",
        # a second row for a key the feed holds, with an old timestamp
        f"INSERT INTO customers VALUES ('c0020', 'dup@x.com', 'dup', 2, {ts('2026-11-01 00:00:00')}, NULL)",
    )
    second = read_database_feed(src, store, TABLE)
    full, whole = _full(src, tmp_path, 2)
    _same_counts(second, whole, store, tmp_path / "full2")
    # A full read counts keys from their hashes while the rows stream by, and counts the keys
    # themselves once two hashes are equal (here: c0020 twice).
    assert (first.summary["distinct_customers"], first.summary["duplicate_key_rows"]) == (200, 0)
    assert whole.summary["duplicate_key_rows"] == 1
    assert whole.summary["distinct_customers"] == full.height - 1 == 200
    assert second.read == "incremental" and second.key_scan and second.written == written
    assert second.cursor == "2026-12-01T11:30:00+00:00"
    assert _rows(store).equals(full)
    assert full.height == 200 - 3 + 4
    # c0001-3, n1, late1 arrive by timestamp; late2 and c0020's second row by the key scan
    assert second.rows_changed == 7
    assert second.rows_deleted == 3  # c0010 (soft), c0011, c0012
    moved = _rows(store).filter(pl.col("customer_id") == "c0002")
    assert moved.get_column("city").to_list() == ["moved again"]

    # The table has a key on two rows now: every read scans the keys.
    crm.execute(
        "ALTER TABLE customers ADD COLUMN tier TEXT",
        f"UPDATE customers SET tier = 'gold', updated_at = {ts('2026-12-01 12:00:00')} "
        "WHERE customer_id = 'c0030'",
    )
    third = read_database_feed(src, store, TABLE)
    assert third.read == "full" and "columns" in third.reason
    assert _rows(store).equals(_full(src, tmp_path, 3)[0])
    assert "tier" in _rows(store).columns

    crm.execute(
        "DELETE FROM customers WHERE customer_id = 'c0020' AND city = 'dup'",
        f"UPDATE customers SET spend = 99, updated_at = {ts('2026-12-01 12:10:00')} "
        "WHERE customer_id = 'c0040'",
    )
    fourth = read_database_feed(src, store, TABLE)
    assert fourth.read == "incremental" and fourth.key_scan and fourth.written == written
    full, whole = _full(src, tmp_path, 4)
    assert _rows(store).equals(full)
    _same_counts(fourth, whole, store, tmp_path / "full4")
    assert fourth.rows_changed == 1 and fourth.rows_deleted == 0

    nothing = read_database_feed(src, store, TABLE)
    assert (nothing.read, nothing.rows_changed, nothing.rows_deleted) == ("incremental", 0, 0)
    assert nothing.rows_read == 3  # only the rows inside the lookback come again (since 11:10)


def test_a_hard_delete_waits_for_the_key_scan(crm, tmp_path):
    src = database_source(crm.uri, delete_scan_every=3)
    store = Storage(tmp_path / "feed")
    read_database_feed(src, store, TABLE)
    crm.execute("DELETE FROM customers WHERE customer_id = 'c0005'")
    held = []
    for _ in range(3):
        done = read_database_feed(src, store, TABLE)
        held.append(("c0005" in _rows(store).get_column("customer_id"), done.key_scan))
    assert held == [(True, False), (True, False), (False, True)]


def test_without_updated_at_the_table_is_read_whole(crm, tmp_path):
    src = database_source(crm.uri, updated_at=None)
    store = Storage(tmp_path / "feed")
    read_database_feed(src, store, TABLE)
    crm.execute("UPDATE customers SET city = 'x' WHERE customer_id = 'c0001'")
    again = read_database_feed(src, store, TABLE)
    assert (again.read, again.rows_read, again.rows_changed) == ("full", 200, 1)
    assert "no updated_at" in again.reason


def test_a_query_is_a_feed_too(crm, tmp_path):
    src = database_source(
        crm.uri,
        table=None,
        query="SELECT customer_id, email, updated_at, deleted_at FROM customers WHERE spend > 100",
    )
    store = Storage(tmp_path / "feed")
    done = read_database_feed(src, store, TABLE)
    assert done.rows == len([i for i in range(200) if i * 1.5 > 100])
    assert _rows(store).columns == ["customer_id", "email", "updated_at", "deleted_at"]


def test_a_key_on_several_rows_comes_whole_without_a_key_scan(crm, tmp_path):
    src = database_source(crm.uri, delete_scan_every=100)
    store = Storage(tmp_path / "feed")
    crm.execute(  # every row long unchanged but c0199; c0007 on two rows
        f"UPDATE customers SET updated_at = {crm.ts('2026-11-01 00:00:00')} "
        "WHERE customer_id <> 'c0199'",
        f"INSERT INTO customers VALUES ('c0007', 'b@x.com', 'second', 3, {crm.ts('2026-11-01 00:00:00')}, NULL)",
    )
    read_database_feed(src, store, TABLE)
    # one of c0007's two rows changes; a second row comes for c0009
    crm.execute(
        f"UPDATE customers SET city = 'moved', updated_at = {crm.ts('2026-12-01 12:00:00')} "
        "WHERE customer_id = 'c0007' AND city <> 'second'",
        f"INSERT INTO customers VALUES ('c0009', 'c@x.com', 'extra', 4, {crm.ts('2026-12-01 12:00:00')}, NULL)",
    )
    done = read_database_feed(src, store, TABLE)
    assert done.read == "incremental" and not done.key_scan
    # c0199 (inside the lookback), and both rows of c0007 and c0009: their old rows are not
    assert done.rows_read == 5
    full, whole = _full(src, tmp_path, 1)
    assert _rows(store).equals(full)
    assert _rows(store).filter(pl.col("customer_id") == "c0007").height == 2
    _same_counts(done, whole, store, tmp_path / "full1")
