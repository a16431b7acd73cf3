"""The benchmarks drive the pipeline's own API, so they run here at a tiny size: a refactor that
breaks them fails a test instead of the next person who measures."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECOMPUTED = "same change, everything recomputed"


def _bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--no-record"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _row(table: str, figure: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == figure:
            return cells[1:]
    raise AssertionError(f"no row {figure!r} in:\n{table}")


def test_delta_benchmark_plans_the_changed_users():
    out = _bench("delta", "--profiles", "20000", "--runs", "1")
    assert _row(out, "users changed / attributes changed")[0] == "200 / 200"
    assert _row(out, "data points planned")[:2] == ["200", "460,000"]


def test_identity_chunks_benchmark_compares_the_links():
    out = _bench("identity-chunks", "--people", "3000", "--chunks", "2", "--steps")
    for what in ("pieces", "piece steps"):
        row = _row(out, f"links at or above the threshold (one predict / {what})")
        one, pieces = row[0].split(" / ")
        assert one == pieces and int(one.replace(",", "")) > 1_000
        assert _row(out, f"largest difference of a link's match probability ({what})")[0] == (
            "0.0e+00"
        )
    heaviest = "each piece a step in its own process: heaviest step's peak"
    (peak,) = [ln for ln in out.splitlines() if ln.strip("| ").startswith(heaviest)]
    assert int(peak.split("|")[2].strip().replace(",", "")) > 100  # MB


@pytest.mark.slow
def test_shards_benchmark_compares_braze():
    out = _bench("shards", "--profiles", "1500", "--shards", "1,3")
    one = _row(out, "1 shard(s): Braze profiles / digest, as 1 shard(s) leave it")
    three = _row(out, "3 shard(s): Braze profiles / digest, as 1 shard(s) leave it")
    assert one[0] == three[0] and three[-1] == "equal"
    assert int(one[0].split(" / ")[0].replace(",", "")) > 1_400
    points = _row(out, "3 shard(s), 1% changed: data points / rejected by Braze")
    assert points[0] == points[1] and 0 < int(points[0].split(" / ")[0]) < 1_000


def test_database_benchmark_reads_the_changes():
    out = _bench("database", "--rows", "20000", "--runs", "2")
    made = re.search(
        r"Changes: (\d+) updated, (\d+) soft-deleted, (\d+) hard-deleted, (\d+) inserted, "
        r"(\d+) committed late",
        out,
    )
    updated, soft, hard, inserted, late = map(int, made.groups())
    without, with_scan = (
        [int(v.replace(",", "")) for v in cells[0].split(" / ")]
        for cells in _rows(out, "rows read / rows changed / rows deleted")
    )
    # every change arrives by its timestamp; only the key scan sees the hard deletes
    assert without[1:] == [updated + inserted + late, soft]
    assert with_scan[1:] == [updated + inserted + late, soft + hard]


def test_events_benchmark_sends_every_event_and_checks_the_ledger():
    out = _bench(
        "events", "--rate", "200", "--seconds", "1", "--sent", "20000", "--new", "300",
        "--subscription-users", "2000",
    )  # fmt: skip
    sent = _rows(out, "R=200: events/s sent (accepted)")[0]
    assert int(sent[0].replace(",", "")) > 0 and sent[1] == "15,000"
    check = _rows(out, "ledger of 20,000, 300 new: check against the ledger")[0]
    assert float(check[0]) > 0 and check[-1] == "<= 2 s"
    subs = _rows(out, "subscription states: 2,000 users, requests/s at 50 ms a request")[0]
    assert float(subs[0]) > 0 and subs[1] == "83.3"


def _rows(table: str, figure: str) -> list[list[str]]:
    return [
        cells[1:]
        for line in table.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] == figure
    ]


@pytest.mark.slow
def test_end_to_end_benchmark_sends_the_change():
    out = _bench("e2e", "--profiles", "20000")
    full = _row(out, "first full sync: users / data points / requests")[0]
    incremental = _row(out, "incremental, 1% changed: users / data points / requests")[0]
    recomputed = _row(out, f"{RECOMPUTED}: users / data points / requests")[0]
    users, points, requests = (int(v.replace(",", "")) for v in incremental.split(" / "))
    assert 0 < users < int(full.split(" / ")[0].replace(",", "")) / 50
    assert points >= users and requests >= 1
    assert recomputed == incremental  # the shortcut sends what recomputing everything sends
    # The changed feed as a PostgreSQL table read by what changed sends exactly the same.
    from_table = _bench("e2e", "--profiles", "20000", "--pos-in-postgres")
    for label in ("first full sync", "incremental, 1% changed", RECOMPUTED):
        figure = f"{label}: users / data points / requests"
        assert _row(from_table, figure) == _row(out, figure)


def test_pg_source_table_changes_and_anchor(postgres):
    from benchmarks import pg_source

    uri = postgres.create_database("pg_source_bench")
    loaded = pg_source.create_customers(uri, 20_000, chunk=7_000)
    assert loaded.rows == 20_000
    with postgres.connect("pg_source_bench") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT customer_id), count(deleted_at), max(updated_at) < now()"
            " FROM customers"
        )
        assert cur.fetchone() == (20_000, 20_000, 0, True)
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'customers' ORDER BY 1")
        assert sorted(r[0].split(" USING ")[1] for r in cur.fetchall()) == [
            "btree (customer_id)",
            "btree (deleted_at)",
            "btree (updated_at)",
        ]
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
            " 'customers'::regclass AND attname IN ('lifetime_value', 'birthdate', 'deleted_at')"
            " ORDER BY attnum"
        )
        assert [r[0] for r in cur.fetchall()] == [
            "numeric(12,2)",
            "date",
            "timestamp with time zone",
        ]
    changes = pg_source.change_customers(uri, updated=0.05, late=0.01)
    assert 800 < changes.updated < 1200 and changes.inserted == 20  # shares of 20,000 rows
    assert min(changes.soft_deleted, changes.hard_deleted, changes.late) > 0
    recent = changes.updated + changes.soft_deleted + changes.inserted
    since = pg_source.changed_query(changes.since, lookback="0 seconds")
    assert pg_source.psql_copy(uri, since, psql=postgres.psql_path).rows == recent
    anchor = pg_source.psql_copy(uri, pg_source.full_query(), psql=postgres.psql_path, runs=2)
    assert anchor.rows == 20_000 - changes.hard_deleted + changes.inserted
    assert len(anchor.runs) == 2 and anchor.rows_per_s > 0
