"""Real database files (SQLite, DuckDB) a test changes with plain SQL, as the brand's own systems
would, and the feed configuration that reads them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from amp_braze.config import SourceConfig
from amp_braze.config.database import DatabaseUri

CUSTOMERS = """CREATE TABLE customers (
    customer_id TEXT, email TEXT, city TEXT, spend {real},
    updated_at {ts}, deleted_at {ts})"""


class FileDatabase:
    """A SQLite or DuckDB file and a way to run statements on it."""

    def __init__(self, kind: str, path: Path):
        self.kind, self.path = kind, path
        self.uri = f"{kind}:///{path}"

    def execute(self, *statements: str) -> None:
        if self.kind == "sqlite":
            con = sqlite3.connect(self.path)
            try:
                for s in statements:
                    con.execute(s)
                con.commit()
            finally:
                con.close()
        else:
            import duckdb

            with duckdb.connect(str(self.path)) as con:
                for s in statements:
                    con.execute(s)

    def ts(self, text: str) -> str:
        """A timestamp literal for ``YYYY-MM-DD HH:MM:SS`` in UTC, as this database stores one."""
        if self.kind == "sqlite":
            return f"'{text}+00:00'"
        return f"TIMESTAMPTZ '{text}+00'"

    def create_customers(self, n: int, at: str) -> None:
        real, ts = {
            "sqlite": ("REAL", "TEXT"),
            "duckdb": ("DOUBLE", "TIMESTAMPTZ"),
            "postgres": ("DOUBLE PRECISION", "TIMESTAMPTZ"),
        }[self.kind]
        rows = ", ".join(
            f"('c{i:04d}', 'c{i}@example.com', 'city{i % 7}', {i * 1.5}, {self.ts(at)}, NULL)"
            for i in range(n)
        )
        self.execute(CUSTOMERS.format(real=real, ts=ts), f"INSERT INTO customers VALUES {rows}")


class PostgresDatabase(FileDatabase):
    """A database of its own on a running PostgreSQL server (support/postgres.py), reached as a
    feed reaches it: over TCP with the server's password."""

    def __init__(self, server, name: str):
        self.server, self.kind, self.path = server, "postgres", None
        self.uri = server.create_database(name)

    def execute(self, *statements: str) -> None:
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri) as con, con.cursor() as cur:
            for s in statements:
                cur.execute(s)
            con.commit()


def database_source(uri: str, **settings: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "name": "crm",
        "database": DatabaseUri.parse(uri),
        "table": "customers",
        "customer_key": "customer_id",
        "updated_at": "updated_at",
        "deleted_at": "deleted_at",
    }
    return SourceConfig(**(values | settings))
