"""A database feed that cannot be read says what is wrong, names the key, and never the password."""

from __future__ import annotations

import time

import pytest

from amp_braze.config.database import DatabaseUri
from amp_braze.profiles.database_feed import read_database_feed
from amp_braze.profiles.databases import DatabaseError, _bigquery_kwargs
from amp_braze.profiles.feeds import FeedError
from amp_braze.storage import Storage
from amp_braze_tests.support.databases import FileDatabase, database_source
from amp_braze_tests.support.servers import free_port

SECRET = "hunter2-do-not-print"


def test_a_server_that_does_not_answer_is_named_without_the_password(tmp_path):
    port = free_port()
    src = database_source(f"postgresql://reader:{SECRET}@127.0.0.1:{port}/crm")
    store = Storage(tmp_path / "feed")
    started = time.monotonic()
    with pytest.raises(DatabaseError) as e:
        read_database_feed(src, store, "sources/crm")
    assert time.monotonic() - started < 15  # the connect timeout bounds it
    text = str(e.value)
    assert text.startswith(f"sources.crm.database: cannot connect to postgres at 127.0.0.1:{port}")
    assert SECRET not in text
    assert not (tmp_path / "feed").exists()  # nothing written


def test_a_missing_table_lists_the_tables(tmp_path):
    db = FileDatabase("sqlite", tmp_path / "crm.db")
    db.create_customers(3, "2026-12-01 10:00:00")
    db.execute("CREATE TABLE orders (id TEXT)")
    src = database_source(db.uri, table="customer")
    with pytest.raises(DatabaseError, match=r"sources\.crm\.table: 'customer' is not a table") as e:
        read_database_feed(src, Storage(tmp_path / "feed"), "sources/crm")
    assert "it has customers, orders" in str(e.value)


def test_a_missing_column_lists_the_columns(tmp_path):
    db = FileDatabase("duckdb", tmp_path / "crm.duckdb")
    db.create_customers(3, "2026-12-01 10:00:00")
    src = database_source(db.uri, updated_at="modified_at")
    with pytest.raises(FeedError) as e:
        read_database_feed(src, Storage(tmp_path / "feed"), "sources/crm")
    assert str(e.value) == (
        "sources.crm.updated_at: column 'modified_at' is not in the feed; it has customer_id, "
        "email, city, spend, updated_at, deleted_at"
    )


def test_a_type_the_feed_cannot_hold_names_the_column_and_the_cast(tmp_path):
    db = FileDatabase("duckdb", tmp_path / "crm.duckdb")
    db.create_customers(3, "2026-12-01 10:00:00")
    db.execute("ALTER TABLE customers ADD COLUMN tags VARCHAR[]")
    src = database_source(db.uri)
    with pytest.raises(FeedError) as e:
        read_database_feed(src, Storage(tmp_path / "feed"), "sources/crm")
    assert "column 'tags' is List(String)" in str(e.value)
    assert 'CAST("tags" AS TEXT) AS "tags"' in str(e.value)


def test_a_missing_database_file_is_named(tmp_path):
    src = database_source(f"sqlite:///{tmp_path}/nothing.db")
    with pytest.raises(DatabaseError, match="no sqlite database file at .*nothing.db"):
        read_database_feed(src, Storage(tmp_path / "feed"), "sources/crm")


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        (f"snowflake://reader:{SECRET}@acme-xy12345/crm/public?warehouse=wh", "snowflake"),
        ("bigquery://acme-project/crm", "bigquery"),
    ],
)
def test_a_driver_not_installed_names_its_extra(tmp_path, uri, extra):
    src = database_source(uri)
    with pytest.raises(DatabaseError) as e:
        read_database_feed(src, Storage(tmp_path / "feed"), "sources/crm")
    assert f"pip install 'amp_braze[{extra}]'" in str(e.value)
    assert SECRET not in str(e.value)


def test_uris_are_masked_wherever_they_are_shown():
    uri = DatabaseUri.parse(f"postgresql://reader:{SECRET}@db.example.com:5432/crm?sslmode=require")
    assert str(uri) == "postgresql://reader:***@db.example.com:5432/crm?sslmode=require"
    assert SECRET not in repr(uri) and uri.secret().count(SECRET) == 1
    assert (uri.kind, uri.address) == ("postgres", "db.example.com:5432")
    assert uri.scrub(f"auth failed for {SECRET}") == "auth failed for ***"
    token = DatabaseUri.parse(f"snowflake://reader@acme/crm?password={SECRET}&warehouse=wh")
    assert str(token) == "snowflake://reader@acme/crm?password=***&warehouse=wh"
    assert DatabaseUri.parse("redshift://u:p@cluster:5439/dev").kind == "redshift"
    bq = DatabaseUri.parse("bigquery://acme-project/crm")
    assert _bigquery_kwargs(bq) == {
        "adbc.bigquery.sql.project_id": "acme-project",
        "adbc.bigquery.sql.dataset_id": "crm",
    }
    with pytest.raises(ValueError, match="mysql://u:\\*\\*\\*@h/d is not a database URI"):
        DatabaseUri.parse("mysql://u:pw@h/d")
