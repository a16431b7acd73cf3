"""Every table a SQL file reads is an upstream edge of the asset that runs it, and no other."""

from __future__ import annotations

import dagster as dg
import pytest

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.sql_reads import output_columns, tables_read
from amp_braze_tests.support.configs import MINIMAL, write_config


def test_tables_read_sees_joins_subqueries_and_leaves_out_ctes():
    sql = """
    WITH recent AS (SELECT * FROM sources_pos WHERE updated_at > '2026-01-01')
    SELECT p.customer_id AS external_id, r.total
    FROM customer_profiles AS p
    LEFT JOIN recent AS r ON r.customer_id = p.customer_id
    WHERE p.customer_id IN (SELECT external_user_id FROM engagement_summary)
    """
    assert tables_read(sql) == {"sources_pos", "customer_profiles", "engagement_summary"}
    assert tables_read("SELECT 1") == set()
    assert tables_read("SELEC nonsense FROM (") is None  # unparseable: polars says what's wrong


def test_output_columns_are_known_unless_the_query_says_star():
    sql = (
        "SELECT p.customer_id AS external_id, p.email, ROUND(x, 2) AS ltv FROM customer_profiles p"
    )
    assert output_columns(sql) == ["external_id", "email", "ltv"]
    assert output_columns("SELECT * FROM customer_profiles") is None
    assert output_columns("SELECT p.*, 1 AS one FROM customer_profiles p") is None


CONFIG = """
storage: ./store
sources:
  pos: {path: pos.csv, customer_key: id}
  web: {path: web.csv, customer_key: id}
profile_sql: profile.sql
braze: {rest_endpoint: "http://127.0.0.1:9"}
segments:
  buyers:
    sql: SELECT b.external_id FROM braze_customer_attributes b JOIN sources_web w ON w.id = b.external_id
  gold:
    rules: {attribute: tier, op: "=", value: gold}
"""


def _parents(defs: dg.Definitions, key: str) -> set[str]:
    node = defs.resolve_asset_graph().get(dg.AssetKey(key))
    return {k.to_user_string() for k in node.parent_keys}


def test_the_graph_follows_what_the_sql_reads(tmp_path):
    path = write_config(
        tmp_path,
        CONFIG,
        "SELECT id AS external_id, tier FROM sources_pos JOIN customer_profiles USING (id)",
    )
    defs = build_defs(load_config(path))
    assert _parents(defs, "braze_customer_attributes") == {"sources/pos", "customer_profiles"}
    assert _parents(defs, "segment_memberships") == {"braze_customer_attributes", "sources/web"}
    (tmp_path / "profile.sql").write_text(
        "SELECT customer_id AS external_id FROM customer_profiles"
    )
    defs = build_defs(load_config(path))
    assert _parents(defs, "braze_customer_attributes") == {"customer_profiles"}


def test_only_the_tables_a_query_reads_are_opened(tmp_path):
    """Opening a table pins its version (on S3: downloads it); tables no query reads stay shut
    but keep their names in the list polars' errors give."""
    import polars as pl

    from amp_braze.profiles.sql import base_tables, run_sql
    from amp_braze.storage import Storage

    cfg = load_config(write_config(tmp_path, MINIMAL))
    store = Storage(cfg.storage)
    store.write_table("customer_profiles", pl.DataFrame({"customer_id": ["b", "a"]}))
    # sources/pos was never materialized: opening it would fail
    sql = "SELECT customer_id AS external_id FROM customer_profiles ORDER BY 1"
    tables = base_tables(cfg, store, [sql])
    assert run_sql(sql, tables, "profile_sql")["external_id"].to_list() == ["a", "b"]
    assert set(tables) == {"customer_profiles", "engagement_summary", "sources_pos"}
    unparsable = "SELEC nonsense FROM ("
    with pytest.raises(FileNotFoundError, match="sources/pos"):
        base_tables(cfg, store, [sql, unparsable])  # unknown reads: every table is opened


SPLIT = {"customer_profiles", "braze_customer_attributes"}
KEYS = {"customer_id", "external_id"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT customer_id AS external_id, email FROM customer_profiles WHERE ltv > 5",
        "SELECT p.customer_id AS external_id, e.email_opens_30d FROM customer_profiles AS p "
        "LEFT JOIN engagement_summary AS e ON e.external_user_id = p.customer_id",
        "SELECT customer_id AS external_id, t FROM (SELECT *, visits > 5 AS t FROM customer_profiles)",
        "WITH x AS (SELECT customer_id FROM customer_profiles) SELECT customer_id FROM x",
        "SELECT p.customer_id, o.n FROM customer_profiles p LEFT JOIN (SELECT cust, count(*) AS n "
        "FROM sources_orders GROUP BY cust) o ON o.cust = p.customer_id",
        "SELECT customer_id, count(*) FROM customer_profiles GROUP BY customer_id",
        "SELECT customer_id, sum(ltv) OVER (PARTITION BY customer_id) FROM customer_profiles",
        "SELECT a.customer_id FROM customer_profiles a JOIN customer_profiles b "
        "ON a.customer_id = b.customer_id",
        "SELECT external_id FROM braze_customer_attributes WHERE ltv > 500 ORDER BY ltv",
        "SELECT external_id FROM braze_customer_attributes UNION ALL "
        "SELECT customer_id FROM customer_profiles",
    ],
)
def test_queries_that_keep_customers_apart_pass(sql):
    from amp_braze.sql_reads import cross_customer

    assert cross_customer(sql, SPLIT, KEYS) is None


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT customer_id FROM customer_profiles ORDER BY ltv DESC LIMIT 100", "LIMIT"),
        ("SELECT country, count(*) FROM customer_profiles GROUP BY country", "COUNT"),
        ("SELECT customer_id, rank() OVER (ORDER BY ltv) FROM customer_profiles", "window"),
        (
            "SELECT external_id FROM braze_customer_attributes "
            "WHERE ltv > (SELECT avg(ltv) FROM braze_customer_attributes)",
            "subquery",
        ),
        ("SELECT c.id AS external_id FROM sources_crm c", "sources_crm"),
        (
            "SELECT p.customer_id FROM customer_profiles p RIGHT JOIN sources_crm c "
            "ON c.id = p.customer_id",
            "RIGHT JOIN",
        ),
        (
            "SELECT a.customer_id FROM customer_profiles a JOIN customer_profiles b "
            "ON a.referrer = b.customer_id",
            "join",
        ),
        ("SELECT DISTINCT country FROM customer_profiles", "DISTINCT"),
        (
            "SELECT customer_id FROM customer_profiles UNION ALL SELECT id FROM sources_crm",
            "sources_crm",
        ),
        ("SELEC nonsense FROM (", "cannot be parsed"),
    ],
)
def test_queries_that_look_across_customers_are_named(sql, why):
    from amp_braze.sql_reads import cross_customer

    found = cross_customer(sql, SPLIT, KEYS)
    assert found is not None and why in found, found
