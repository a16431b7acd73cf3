"""A PostgreSQL table as a feed, on a real server over TCP with a password: its types as the feed
holds them, the ones it cannot hold named with their cast, and a password no run ever writes."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.profiles.database_feed import read_database_feed
from amp_braze.profiles.databases import DatabaseError
from amp_braze.storage import Storage
from amp_braze_tests.support.assets import assets_named
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.databases import PostgresDatabase, database_source

_NAMES = itertools.count()
TABLE = "sources/crm"


@pytest.fixture
def crm(postgres) -> PostgresDatabase:
    return PostgresDatabase(postgres, f"pgcrm_{next(_NAMES)}")


def test_postgres_types_come_as_the_feed_holds_them(crm, tmp_path):
    crm.execute(
        """CREATE TABLE customers (
            customer_id varchar(10), spend numeric(12,2), score numeric, prefs jsonb,
            token uuid, tier char(4), birthdate date, vip boolean, visits int2,
            updated_at timestamptz, seen_local timestamp)""",
        """INSERT INTO customers VALUES
            ('c1', 1234.50, 0.125, '{"news": true}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
             'gold', '1990-02-03', true, 7, '2026-12-01 10:00:00+00', '2026-12-01 10:00:00'),
            ('c2', NULL, 1e20, NULL, NULL, NULL, NULL, NULL, NULL,
             '2026-12-01 12:30:00+02', NULL)""",
    )
    store = Storage(tmp_path / "feed")
    read = read_database_feed(database_source(crm.uri, deleted_at=None), store, TABLE)
    assert (read.read, read.rows, read.cursor) == ("full", 2, "2026-12-01T10:30:00+00:00")
    df = store.read_table(TABLE).sort("customer_id")
    assert df.schema["spend"] == pl.Decimal(12, 2)
    assert df.schema["score"] == pl.Float64  # an unbounded numeric
    assert df.schema["updated_at"] == pl.Datetime("us", "UTC")
    assert df.row(0, named=True) == {
        "customer_id": "c1",
        "spend": Decimal("1234.50"),
        "score": 0.125,
        "prefs": '{"news": true}',
        "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "tier": "gold",
        "birthdate": dt.date(1990, 2, 3),
        "vip": True,
        "visits": 7,
        "updated_at": dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
        "seen_local": dt.datetime(2026, 12, 1, 10, 0),
    }
    assert df["score"][1] == 1e20 and df["spend"][1] is None


@pytest.mark.parametrize(
    ("column", "cast"),
    [("wait interval", 'CAST("wait" AS TEXT)'), ("balance money", 'CAST("balance" AS numeric)')],
)
def test_a_type_the_feed_cannot_hold_is_named_with_its_cast(crm, tmp_path, column, cast):
    name, db_type = column.split()
    crm.execute(
        f"CREATE TABLE customers (customer_id text, {column}, updated_at timestamptz)",
        "INSERT INTO customers VALUES ('c1', NULL, now())",
    )
    with pytest.raises(DatabaseError) as e:
        read_database_feed(
            database_source(crm.uri, deleted_at=None), Storage(tmp_path / "feed"), TABLE
        )
    assert str(e.value) == (
        f"sources.crm: column '{name}' is {db_type}, which a feed cannot hold; read it with a "
        f'`query:` that selects {cast} AS "{name}"'
    )


CONFIG = """
storage: ./store
sources:
  crm:
    database: ${CRM_DATABASE_URL}
    table: customers
    customer_key: customer_id
    updated_at: updated_at
profile_sql: profile.sql
braze:
  rest_endpoint: http://127.0.0.1:9
"""


def _written(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_no_run_writes_the_password(crm, postgres, tmp_path, monkeypatch, capfd):
    crm.create_customers(20, "2026-12-01 10:00:00")
    wrong = "wrong-" + postgres.password[::-1]
    runs = []
    (tmp_path / "dagster").mkdir()
    for password in (postgres.password, wrong):
        monkeypatch.setenv("CRM_DATABASE_URL", crm.uri.replace(postgres.password, password))
        defs = build_defs(load_config(write_config(tmp_path / "project", CONFIG)))
        instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
        result = dg.materialize(
            assets_named(defs, "sources/crm"),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
        runs.append((result, instance))
    (ok, ok_instance), (failed, failed_instance) = runs
    assert ok.success and not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "cannot connect to postgres at 127.0.0.1" in message
    assert "password authentication failed" in message

    spec = defs.resolve_assets_def(dg.AssetKey(["sources", "crm"])).specs_by_key[
        dg.AssetKey(["sources", "crm"])
    ]
    shown = [spec.description, repr(spec.metadata), repr(defs.resources)]
    for instance in (ok_instance, failed_instance):
        for run in instance.get_runs():
            shown += [repr(run.run_config), *map(repr, instance.all_logs(run.run_id))]
    printed = capfd.readouterr()
    shown += [printed.out, printed.err]
    assert "STEP_FAILURE" in printed.err  # the run's log lines are among what is searched
    assert any("password authentication failed" in text for text in shown)
    for secret in (postgres.password, wrong):
        assert not any(secret in text for text in shown)
        assert secret.encode() not in _written(tmp_path / "dagster")
        assert secret.encode() not in _written(tmp_path / "project" / "store")
    assert "postgresql://amp:***@127.0.0.1" in spec.description
