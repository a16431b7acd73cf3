"""The PostgreSQL server the tests start: password authentication over TCP, a bulk load that keeps
its types, and a stop that leaves nothing listening, even when a test fails."""

from __future__ import annotations

import datetime as dt
import os
import socket
from decimal import Decimal

import polars as pl
import pytest
from adbc_driver_manager import Error as AdbcError

from amp_braze_tests.support.postgres import PostgresServer


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _connect(uri: str):
    from adbc_driver_postgresql import dbapi

    return dbapi.connect(uri)


def test_the_right_password_works_over_tcp(postgres: PostgresServer) -> None:
    assert postgres.uri == (
        f"postgresql://amp:{postgres.password}@127.0.0.1:{postgres.port}/{postgres.database}"
    )
    with _connect(postgres.uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_addr()::text, current_setting('fsync')")
        assert cur.fetchone() == ("amp", "127.0.0.1/32", "off")
    out = postgres.psql("-At", "-c", "SELECT 1").stdout
    assert out.strip() == "1"


@pytest.mark.parametrize("password", ["wrong", ""])
def test_a_wrong_or_missing_password_is_refused(postgres: PostgresServer, password: str) -> None:
    uri = postgres.uri.replace(f":{postgres.password}@", f":{password}@" if password else "@")
    with pytest.raises(AdbcError, match="password authentication failed|no password supplied"):
        _connect(uri)
    env = {**postgres.env(), "PGPASSWORD": password}
    done = postgres.psql("-c", "SELECT 1", check=False, env=env)
    assert done.returncode != 0
    assert "password authentication failed" in done.stderr or "no password" in done.stderr


def test_the_server_scram_hashes_passwords(postgres: PostgresServer) -> None:
    rows = postgres.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'amp'")
    assert rows[0][0].startswith("SCRAM-SHA-256$")
    hba = (postgres.data_dir / "pg_hba.conf").read_text()
    assert [ln.split()[-1] for ln in hba.splitlines() if ln.startswith("host")] == [
        "scram-sha-256",
        "scram-sha-256",
    ]


def test_a_frame_loads_and_reads_back(postgres: PostgresServer) -> None:
    postgres.execute(
        "CREATE TABLE load_check (id text PRIMARY KEY, value numeric(12,2), born date,"
        " updated_at timestamptz, n bigint)"
    )
    frame = pl.DataFrame(
        {
            "id": ["a", "b"],
            "value": pl.Series([Decimal("1.50"), None], dtype=pl.Decimal(12, 2)),
            "born": [dt.date(1990, 1, 2), None],
            "updated_at": pl.Series(
                [dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)] * 2, dtype=pl.Datetime("us", "UTC")
            ),
            "n": [1, 2],
        }
    )
    assert postgres.load("load_check", frame, mode="append") == 2
    back = pl.read_database_uri("SELECT * FROM load_check ORDER BY id", postgres.uri, engine="adbc")
    # ADBC reads numeric as text in an Arrow extension type ("arrow.opaque", type_name numeric).
    assert '"numeric"' in str(back.schema["value"])
    back = back.with_columns(pl.col("value").ext.storage().cast(pl.Decimal(12, 2)))
    assert back.to_dicts() == frame.to_dicts()


def test_as_root_the_server_runs_as_an_unprivileged_user(postgres: PostgresServer) -> None:
    pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    status = dict(
        ln.split(":", 1) for ln in open(f"/proc/{pid}/status").read().splitlines() if ":" in ln
    )
    uid, gid = int(status["Uid"].split()[1]), int(status["Gid"].split()[1])
    assert uid != 0 and gid != 0 and not status["Groups"].strip()
    assert os.geteuid() != 0 or oct(postgres.folder.stat().st_mode)[-3:] == "700"


def test_two_servers_run_at_once_and_nothing_listens_after_stop() -> None:
    with PostgresServer() as a, PostgresServer() as b:
        assert a.port != b.port and a.password != b.password
        a.execute("CREATE TABLE only_in_a (x int)")
        assert b.execute("SELECT to_regclass('only_in_a') IS NULL") == [(True,)]
        with pytest.raises(AdbcError, match="password authentication failed"):
            _connect(b.uri.replace(f":{b.port}/", f":{a.port}/"))
        ports, folders = (a.port, b.port), (a.folder, b.folder)
        assert all(_listening("127.0.0.1", p) for p in ports)
    assert not any(_listening("127.0.0.1", p) for p in ports)
    assert not any(f.exists() for f in folders)
    assert not a.running and not b.running
    a.stop()  # twice is fine


def test_a_failing_test_still_stops_its_server() -> None:
    server = PostgresServer()
    with pytest.raises(ZeroDivisionError), server:
        port = server.port
        assert _listening("127.0.0.1", port)
        1 / 0  # noqa: B018
    assert not _listening("127.0.0.1", port)
    assert not server.folder.exists()
