"""A PostgreSQL customer table for the database-feed benchmark (issue 24), and its anchor.

``create_customers`` writes N rows shaped like the demo's CRM feed into a running server: generated
from a seed with numpy and polars expressions (no row-by-row Python) in chunks on a thread while
ADBC's ingest (binary COPY) loads the previous chunk, the keys and the index added after the load.
``change_customers`` updates a share of rows (``updated_at = now()`` and a changed tier and
value), soft-deletes some (``deleted_at``), hard-deletes some, inserts some, and commits some
late (an update whose ``updated_at`` is older than the commit). ``psql_copy`` times the anchor:
``psql -c "\\copy (SELECT ...) TO STDOUT"`` of the same rows to /dev/null.

Not a scenario of its own: the database-feed benchmark starts a server
(``amp_braze_tests.support.postgres.PostgresServer(settings=SERVER_SETTINGS)``) and calls these.
"""

from __future__ import annotations

import datetime as dt
import queue
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import polars as pl

from amp_braze.profiles.sample_data import CITIES, COUNTRY_OF_CITY, DOMAINS, FIRST, LAST, TIERS

TABLE = "customers"
COLUMNS = ["customer_id", "email", "first_name", "last_name", "phone", "city", "country",
           "loyalty_tier", "lifetime_value", "birthdate", "updated_at", "deleted_at"]  # fmt: skip
DDL = """CREATE TABLE {table} (
    customer_id text NOT NULL,
    email text,
    first_name text,
    last_name text,
    phone text,
    city text,
    country text,
    loyalty_tier text,
    lifetime_value numeric(12,2),
    birthdate date,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
)"""
# Server settings for the benchmark's server, on top of PostgresServer's (fsync off, ...): with
# wal_level=minimal a table created and loaded in one transaction writes no WAL.
SERVER_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": 0,
    "max_wal_size": "4GB",
    "shared_buffers": "512MB",
}
CHUNK = 1_000_000
UTC = dt.UTC


@dataclass
class Loaded:
    rows: int
    seconds: float  # all of it: generation, load, keys and index, vacuum
    load_seconds: float  # generation and COPY (overlapped)
    index_seconds: float  # primary key and the updated_at and deleted_at indexes
    vacuum_seconds: float  # VACUUM (ANALYZE): hint bits and statistics, so reads are steady
    megabytes: float  # the table with its indexes


@dataclass
class Changes:
    since: (
        dt.datetime
    )  # the server's clock at the changes: all but the late ones have updated_at >= it
    updated: int
    soft_deleted: int
    hard_deleted: int
    inserted: int
    late: int  # updated with updated_at = since - late_by: only a lookback catches them
    seconds: float


@dataclass
class Anchor:
    query: str
    rows: int
    seconds: float  # median of the runs
    runs: list[float]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


# --- (a) the table -------------------------------------------------------------------------------


def customers(
    n: int, *, start: int = 0, seed: int = 7, as_of: dt.datetime | None = None
) -> pl.DataFrame:
    """Rows ``start .. start+n-1`` of the table, the same for the same seed: ``customer_id``
    ``C000000042``, an email from the name and the row, a US phone in E.164, a city and its
    country, a tier, a value, a birthdate, ``updated_at`` within two years before ``as_of``
    (default: yesterday, midnight UTC) and ``deleted_at`` null."""
    rng = np.random.default_rng([seed, start])
    as_of = as_of or _yesterday()

    def pick(values: list[str], p: list[float] | None = None) -> pl.Series:
        idx = rng.choice(len(values), n, p=p) if p else rng.integers(0, len(values), n)
        return pl.Series(values, dtype=pl.String).gather(pl.Series(idx, dtype=pl.UInt32))

    city = rng.integers(0, len(CITIES), n)
    as_of_us = int(as_of.timestamp() * 1_000_000)
    ago_us = rng.integers(0, 730 * 86_400, n) * 1_000_000
    frame = pl.DataFrame(
        {
            "i": np.arange(start, start + n, dtype=np.int64),
            "first_name": pick(FIRST),
            "last_name": pick(LAST),
            "domain": pick(DOMAINS),
            "area": rng.integers(201, 990, n),
            "exchange": rng.integers(200, 1000, n),
            "line": rng.integers(0, 10_000, n),
            "city": pl.Series(CITIES).gather(pl.Series(city, dtype=pl.UInt32)),
            "country": pl.Series(COUNTRY_OF_CITY).gather(pl.Series(city, dtype=pl.UInt32)),
            "loyalty_tier": pick(TIERS, [0.55, 0.3, 0.12, 0.03]),
            "lifetime_value": np.round(rng.gamma(2.0, 150.0, n), 2),
            "birthdate": pl.Series(rng.integers(-15_000, 11_000, n), dtype=pl.Int32),
            "updated_at": pl.Series(as_of_us - ago_us, dtype=pl.Int64),
        }
    )
    return frame.select(
        pl.format("C{}", pl.col("i").cast(pl.String).str.zfill(9)).alias("customer_id"),
        pl.format(
            "{}.{}{}@{}",
            pl.col("first_name").str.to_lowercase(),
            pl.col("last_name").str.to_lowercase(),
            pl.col("i"),
            pl.col("domain"),
        ).alias("email"),
        "first_name",
        "last_name",
        pl.format(
            "+1{}{}{}",
            pl.col("area"),
            pl.col("exchange"),
            pl.col("line").cast(pl.String).str.zfill(4),
        ).alias("phone"),
        "city",
        "country",
        "loyalty_tier",
        pl.col("lifetime_value").cast(pl.Decimal(12, 2)),
        pl.col("birthdate").cast(pl.Date),
        pl.col("updated_at").cast(pl.Datetime("us", "UTC")),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("deleted_at"),
    )


def create_customers(
    uri: str, n: int = 10_000_000, *, table: str = TABLE, seed: int = 7, chunk: int = CHUNK
) -> Loaded:
    """Create ``table`` (replacing one of that name) with ``n`` rows from ``seed``: one
    transaction of CREATE TABLE, one COPY of every chunk, the primary key on customer_id and an
    index on updated_at and on deleted_at (what a read by what changed looks rows up by); then VACUUM (ANALYZE)."""
    import pyarrow as pa
    from adbc_driver_postgresql import dbapi

    as_of = _yesterday()
    schema = customers(1, seed=seed, as_of=as_of).to_arrow().schema
    t0 = time.perf_counter()
    with dbapi.connect(uri, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(DDL.format(table=table))
        batches = _generated(n, chunk, seed, as_of)
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        schema_name, _, name = table.rpartition(".")
        rows = cur.adbc_ingest(name, reader, mode="append", db_schema_name=schema_name or None)
        t1 = time.perf_counter()
        base = table.rpartition(".")[2]
        cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {base}_pkey PRIMARY KEY (customer_id)")
        cur.execute(f"CREATE INDEX {base}_updated_at ON {table} (updated_at)")
        cur.execute(f"CREATE INDEX {base}_deleted_at ON {table} (deleted_at)")
        conn.commit()
        t2 = time.perf_counter()
    with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {table}")
        t3 = time.perf_counter()
        cur.execute(f"SELECT pg_total_relation_size('{table}')")
        size = cur.fetchone()[0] / 1e6
    assert rows in (n, -1), (rows, n)
    return Loaded(n, t3 - t0, t1 - t0, t2 - t1, t3 - t2, round(size, 1))


def _generated(n: int, chunk: int, seed: int, as_of: dt.datetime) -> Iterator:
    """Record batches of ``customers``, made on a thread one chunk ahead of the COPY."""
    done = object()
    ahead: queue.Queue = queue.Queue(maxsize=2)

    def produce() -> None:
        try:
            for start in range(0, n, chunk):
                frame = customers(min(chunk, n - start), start=start, seed=seed, as_of=as_of)
                ahead.put(frame.to_arrow())
            ahead.put(done)
        except BaseException as e:  # handed to the reader's thread
            ahead.put(e)

    threading.Thread(target=produce, daemon=True, name="pg-source-generate").start()
    while (item := ahead.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield from item.to_batches()


# --- (b) what changes between two reads ----------------------------------------------------------

_ROW = "substr(customer_id, 2)::bigint"
_BUCKETS = 1_000_003  # a prime: (row * odd constant + seed) mod it spreads rows evenly


def change_customers(
    uri: str,
    *,
    table: str = TABLE,
    updated: float = 0.01,
    soft_deleted: float = 0.001,
    hard_deleted: float = 0.001,
    inserted: float = 0.001,
    late: float = 0.0,
    late_by: str = "30 minutes",
    seed: int = 11,
) -> Changes:
    """Change the table as a day of a CRM would, in one transaction; shares are of the rows the
    table has. Disjoint rows (a hash of the row number and ``seed``) are updated (tier moves on,
    value + 1, ``updated_at = now()``), soft-deleted (``deleted_at = updated_at = now()``),
    hard-deleted, or updated late (``updated_at = now() - late_by``); new rows get the next row
    numbers and ``updated_at = now()``. Rows already soft-deleted are left alone."""
    from adbc_driver_postgresql import dbapi

    t0 = time.perf_counter()
    with dbapi.connect(uri, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT now(), count(*), max(customer_id) FROM {table}")
        since, total, last_id = cur.fetchone()
        bucket = f"mod({_ROW} * 2654435761 + {int(seed) * 40503}, {_BUCKETS})"
        edges = np.cumsum([0, updated, soft_deleted, hard_deleted, late]) * _BUCKETS
        lo, up, soft, hard, lt = (int(round(e)) for e in edges)
        # One scan picks every row to change; each change then finds its rows by key.
        cur.execute(
            f"CREATE TEMP TABLE picked ON COMMIT DROP AS SELECT customer_id, {bucket} AS bucket"
            f" FROM {table} WHERE {bucket} < {lt}"
        )
        tier = "CASE loyalty_tier " + " ".join(
            f"WHEN '{a}' THEN '{b}'" for a, b in zip(TIERS, TIERS[1:] + TIERS[:1], strict=True)
        ) + " END"  # fmt: skip
        change = f"loyalty_tier = {tier}, lifetime_value = lifetime_value + 1"

        def rows(a: int, b: int) -> str:
            return f"customer_id IN (SELECT customer_id FROM picked WHERE bucket >= {a} AND bucket < {b})"

        def update(assign: str, a: int, b: int) -> int:
            if a == b:
                return 0
            cur.execute(f"UPDATE {table} SET {assign} WHERE deleted_at IS NULL AND {rows(a, b)}")
            return cur.rowcount

        n_up = update(f"{change}, updated_at = now()", lo, up)
        n_soft = update("deleted_at = now(), updated_at = now()", up, soft)
        n_hard = 0
        if hard > soft:
            cur.execute(f"DELETE FROM {table} WHERE {rows(soft, hard)}")
            n_hard = cur.rowcount
        n_late = update(f"{change}, updated_at = now() - interval '{late_by}'", hard, lt)
        k = int(round(inserted * total))
        n_new = 0
        if k:
            start = int(last_id[1:]) + 1 if last_id else 0
            cur.execute("SELECT now()")
            (now,) = cur.fetchone()
            fresh = customers(k, start=start, seed=seed, as_of=now).with_columns(
                pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("updated_at")
            )
            schema_name, _, name = table.rpartition(".")
            n_new = cur.adbc_ingest(
                name, fresh.to_arrow(), mode="append", db_schema_name=schema_name or None
            )
        conn.commit()
    return Changes(since, n_up, n_soft, n_hard, n_new, n_late, time.perf_counter() - t0)


# --- (c) the anchor ------------------------------------------------------------------------------


def full_query(table: str = TABLE) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM {table}"


def changed_query(since: dt.datetime, table: str = TABLE, lookback: str = "1 hour") -> str:
    """The rows an incremental read wants: updated since ``since`` minus the lookback."""
    return f"{full_query(table)} WHERE updated_at >= '{since.isoformat()}'::timestamptz - interval '{lookback}'"


def psql_copy(
    uri: str,
    query: str,
    *,
    psql: str | Path = "psql",
    runs: int = 1,
    rows: int | None = None,
) -> Anchor:
    """Time ``psql -c "\\copy (query) TO STDOUT"`` (text format) with its output to /dev/null:
    what a shell user would call the fastest way to get the rows out. The password goes in
    PGPASSWORD, not on the command line. ``rows`` (counted by the server if not given) is not
    timed."""
    target, env = _psql_target(uri)
    one_line = " ".join(query.split())
    cmd = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [*cmd, "-c", f"\\copy ({one_line}) TO STDOUT"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=True,
        )
        times.append(time.perf_counter() - t)
    if rows is None:
        out = subprocess.run(
            [*cmd, "-At", "-c", f"SELECT count(*) FROM ({one_line}) q"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        rows = int(out.stdout.strip())
    return Anchor(query, rows, statistics.median(times), times)


def _psql_target(uri: str) -> tuple[str, dict[str, str]]:
    import os

    parts = urlsplit(uri)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.hostname or ""
        netloc = (parts.username or "") + "@" + (f"[{host}]" if ":" in host else host)
        if parts.port:
            netloc += f":{parts.port}"
        uri = urlunsplit(parts._replace(netloc=netloc))
    return uri, env


def _yesterday() -> dt.datetime:
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=1)


def as_dict(x: Loaded | Changes | Anchor) -> dict:
    d = asdict(x)
    if isinstance(x, Anchor):
        d["rows_per_s"] = x.rows_per_s
    return d
