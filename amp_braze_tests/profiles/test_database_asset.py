"""The ``sources/<name>`` asset of a database feed, as Dagster runs it: its kind, table and
upstream in the asset graph, and the read it did in its metadata."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze_tests.support.assets import assets_named
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.databases import FileDatabase

CONFIG = """
storage: ./store
sources:
  crm:
    database: sqlite:///crm.db
    table: customers
    customer_key: customer_id
    updated_at: updated_at
    deleted_at: deleted_at
    lookback: 30m
    delete_scan_every: 1
    upstream: [analytics/customers]
profile_sql: profile.sql
braze:
  rest_endpoint: http://127.0.0.1:9
"""


def _materialize(defs: dg.Definitions) -> dict:
    result = dg.materialize(assets_named(defs, "sources/crm"), resources=defs.resources)
    (event,) = result.get_asset_materialization_events()
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_the_feed_asset_reads_the_table_and_says_how(tmp_path):
    db = FileDatabase("sqlite", tmp_path / "crm.db")
    db.create_customers(50, "2026-11-01 10:00:00")
    db.execute(
        f"UPDATE customers SET updated_at = {db.ts('2026-12-01 10:00:00')} WHERE customer_id = 'c0040'"
    )
    defs = build_defs(load_config(write_config(tmp_path, CONFIG)))
    spec = defs.resolve_assets_def(dg.AssetKey(["sources", "crm"])).specs_by_key[
        dg.AssetKey(["sources", "crm"])
    ]
    assert "sqlite" in spec.kinds
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey(["analytics", "customers"])]
    assert spec.metadata["table"].value == "customers"
    assert "table customers" in spec.description

    first = _materialize(defs)
    assert (first["read"], first["rows_read"], first["dagster/row_count"]) == ("full", 50, 50)
    assert first["cursor"] == "2026-12-01T10:00:00+00:00"
    assert first["distinct_customers"] == 50
    assert (first["written"], first["base_parts"], first["rows_changed_since_base"]) == (
        "parts",
        1,
        0,
    )

    db.execute(
        f"UPDATE customers SET city = 'x', updated_at = {db.ts('2026-12-01 12:00:00')} "
        "WHERE customer_id IN ('c0001', 'c0002')",
        "DELETE FROM customers WHERE customer_id = 'c0003'",
    )
    second = _materialize(defs)
    assert second["read"] == "incremental"
    # c0040 again (inside the lookback of the newest row read), c0001 and c0002
    assert (second["rows_read"], second["rows_changed"], second["rows_deleted"]) == (3, 2, 1)
    assert second["dagster/row_count"] == 49 and second["key_scan"] is True
    assert second["cursor"] == "2026-12-01T12:00:00+00:00"
    # 3 of 49 rows changed: past 10% of the table, it is written again as one base
    assert (second["written"], second["base_parts"]) == ("compacted", 1)
