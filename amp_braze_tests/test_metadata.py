"""What the UI shows of each table: every column amp_braze adds carries a description."""

from __future__ import annotations

import dagster as dg

from amp_braze_tests.support.brand import make_brand


def test_every_column_amp_braze_adds_is_described(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300)
    emulator.faults(blocklisted_external_ids=["user-3"])  # one row in braze_sync_rejections
    _, meta = brand.sync()
    described: dict[str, dict[str, str | None]] = {}
    for asset, m in meta.items():
        schema = m.get("dagster/column_schema")
        if isinstance(schema, dg.TableSchema):
            described[asset] = {c.name: c.description for c in schema.columns}
    added = {
        "customer_profiles": ["profile_updated_at", "source_feeds"],
        "braze_customer_attributes": ["__id", "__row_hash"],
        "braze_customer_attributes_rejections": ["__id", "identifier", "column", "value", "rule"],
        "segment_memberships": ["__id", "big", "gold"],
        "braze_sync_plan": ["__id", "__new", "__c_ltv", "__c_amp_big"],
        "braze_sync_rejections": ["__id", "reason", "run_id", "rejected_at"],
    }
    for asset, cols in added.items():
        for col in cols:
            assert described[asset].get(col), (asset, col)
    assert described["braze_sync_plan"]["__c_ltv"].startswith("Send ltv:")
    assert described["segment_memberships"]["gold"].startswith("Member of segment gold")
    # The user's own columns keep no invented description.
    assert described["braze_customer_attributes"]["ltv"] is None


def test_engagement_summary_columns_are_all_described():
    from amp_braze.engagement_schema import ENGAGEMENT_SUMMARY_SCHEMA, SUMMARY_DESCRIPTIONS

    assert set(SUMMARY_DESCRIPTIONS) == set(ENGAGEMENT_SUMMARY_SCHEMA.names())
    assert SUMMARY_DESCRIPTIONS["email_opens_30d"].startswith("Email opens in the 30 days")


def test_seconds_per_stage_show_in_the_order_the_stages_ran(tmp_path, emulator, monkeypatch):
    """The UI sorts a JSON object's keys, which put "commit state" before "read state"; the
    stages are a table in run order instead, with a total that adds up."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300)
    _, meta = brand.sync()
    rows = meta["braze_sync"]["seconds"]  # Dagster's table metadata: its rows, in order
    assert [list(r) for r in rows] == [["stage", "seconds", "share"]] * len(rows)
    stages = [r["stage"] for r in rows]
    assert stages == ["read state", "send", "commit state", "rejections", "total"]
    seconds = [r["seconds"] for r in rows]
    assert abs(sum(seconds[:-1]) - seconds[-1]) < 0.002 and seconds[-1] > 0
    profiles = [r["stage"] for r in meta["braze_customer_attributes"]["seconds"]]
    assert profiles.index("profile sql") < profiles.index("write")
