"""Database feeds: a PostgreSQL customer table (10M rows) read whole against ``psql \\copy`` of the
same rows, then a day's changes (1% updated, soft and hard deletes, inserts, late commits) read by
what changed, with and without the key scan, against a full read of the changed table. The
incremental table is checked equal to the full read's before any figure is reported."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from amp_braze.config import SourceConfig
from amp_braze.config.database import DatabaseUri
from amp_braze.profiles.database_feed import read_database_feed
from amp_braze.storage import Storage
from amp_braze_tests.support.postgres import PostgresServer
from benchmarks import pg_source
from benchmarks.harness import Row, peak_rss_mb, report

TABLE = "sources/crm"


def source(uri: str, delete_scan_every: int, phone_rule: bool = True) -> SourceConfig:
    """The feed of the benchmark's table; without ``phone_rule`` its phone column is renamed, so
    the Braze phone rule (E.164 by libphonenumber's metadata) does not run on it."""
    return SourceConfig(
        columns={} if phone_rule else {"phone": "phone_text"},
        name="crm",
        database=DatabaseUri.parse(uri),
        table=pg_source.TABLE,
        customer_key="customer_id",
        updated_at="updated_at",
        deleted_at="deleted_at",
        lookback="1h",
        delete_scan_every=delete_scan_every,
    )


def _full(src: SourceConfig, folder: Path) -> tuple[float, Storage, object]:
    store = Storage(folder)
    t = time.perf_counter()
    done = read_database_feed(src, store, TABLE)
    assert done.read == "full", done.reason
    return time.perf_counter() - t, store, done


def _sorted(store: Storage) -> pl.DataFrame:
    return store.read_table(TABLE).sort("customer_id")


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks database")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=3, help="full reads and psql copies (median)")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)

    with (
        PostgresServer(settings=pg_source.SERVER_SETTINGS) as pg,
        tempfile.TemporaryDirectory(prefix="amp-db-bench-") as tmp,
    ):
        root = Path(tmp)
        loaded = pg_source.create_customers(pg.uri, a.rows)
        print(f"table: {loaded.rows:,} rows in {loaded.seconds:.1f} s ({loaded.megabytes} MB)")
        no_scan, scan = source(pg.uri, 1_000_000), source(pg.uri, 1)

        anchor = pg_source.psql_copy(
            pg.uri, pg_source.full_query(), psql=pg.psql_path, runs=a.runs, rows=a.rows
        )
        fulls = [_full(no_scan, root / f"full{i}") for i in range(a.runs)]
        full_s = statistics.median(f[0] for f in fulls)
        plain = [
            _full(source(pg.uri, 1, phone_rule=False), root / f"plain{i}")[0] for i in range(a.runs)
        ]
        plain_s = statistics.median(plain)
        print(f"full read {[round(f[0], 2) for f in fulls]} s; psql {anchor.runs}")

        # Two feed tables read whole before the changes: one read on without a key scan, one
        # with; a full read of the changed table is what both must equal.
        base_a, base_b = fulls[0][1], fulls[1 % a.runs][1]
        changes = pg_source.change_customers(pg.uri, late=0.0005)
        print(f"changes: {changes}")
        t = time.perf_counter()
        inc = read_database_feed(no_scan, base_a, TABLE)
        inc_s = time.perf_counter() - t
        t = time.perf_counter()
        inc_scan = read_database_feed(scan, base_b, TABLE) if base_b is not base_a else None
        scan_s = time.perf_counter() - t
        after_s, after, after_read = _full(no_scan, root / "after")
        expected = _sorted(after)
        assert inc.read == "incremental" and not inc.key_scan, inc.reason
        # Without a key scan, hard-deleted rows stay until the next scan: all else must agree.
        gone = changes.hard_deleted
        got = _sorted(base_a)
        assert got.height == expected.height + gone, (got.height, expected.height, gone)
        assert got.join(expected, on="customer_id", how="semi").equals(expected)
        if inc_scan is not None:
            assert inc_scan.key_scan and _sorted(base_b).equals(expected)

    rows = [
        Row("PostgreSQL table", a.rows, "", "rows"),
        Row(
            "full read, rows/s (psql \\copy: baseline)",
            a.rows / full_s,
            anchor.rows_per_s,
            "rows/s",
            ">= 0.50x",
        ),  # fmt: skip
        Row("full read", full_s, anchor.seconds, "s"),
        Row(
            "full read without the phone rule, rows/s (psql: baseline)",
            a.rows / plain_s,
            anchor.rows_per_s,
            "rows/s",
            ">= 0.50x",
        ),  # fmt: skip
        Row(
            "changed rows (updated, soft-deleted, inserted, late)",
            changes.updated + changes.soft_deleted + changes.inserted + changes.late,
            "",
            "rows",
        ),  # fmt: skip
        Row(
            "incremental read, no key scan (full read of the changed table: baseline)",
            inc_s,
            after_s,
            "s",
            "<= 0.10x",
        ),  # fmt: skip
        Row(
            "  rows read / rows changed / rows deleted",
            f"{inc.rows_read:,} / {inc.rows_changed:,} / {inc.rows_deleted:,}",
        ),  # fmt: skip
    ]
    if inc_scan is not None:
        rows += [
            Row("incremental read with key scan (full read: baseline)", scan_s, after_s, "s"),
            Row(
                "  rows read / rows changed / rows deleted",
                f"{inc_scan.rows_read:,} / {inc_scan.rows_changed:,} / {inc_scan.rows_deleted:,}",
            ),  # fmt: skip
        ]
    rows.append(Row("peak RSS", peak_rss_mb(), "", "MB"))
    stages = "; ".join(f"{k} {v:.2f} s" for k, v in inc.seconds.items())
    scan_stages = "; ".join(
        f"{k} {v:.2f} s" for k, v in (inc_scan.seconds if inc_scan else {}).items()
    )
    notes = (
        f"Full reads {', '.join(f'{f[0]:.2f}' for f in fulls)} s; psql \\copy "
        f"{', '.join(f'{x:.2f}' for x in anchor.runs)} s; without the phone rule "
        f"{', '.join(f'{x:.2f}' for x in plain)} s. Incremental stages: {stages}. "
        f"With key scan: {scan_stages}. After the changes the full read took {after_s:.2f} s "
        f"({after_read.rows:,} rows). Changes: {changes.updated:,} updated, "
        f"{changes.soft_deleted:,} soft-deleted, {changes.hard_deleted:,} hard-deleted, "
        f"{changes.inserted:,} inserted, {changes.late:,} committed late by 30 minutes."
    )
    args = " ".join(argv)
    report("Database feed (PostgreSQL)", f"database {args}".strip(), rows, notes, not a.no_record)
