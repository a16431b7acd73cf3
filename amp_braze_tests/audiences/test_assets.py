"""braze_customer_attributes and segment_memberships run through dagster.materialize, with their
blocking checks stopping what comes after them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.storage import Storage
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import materialized

CONFIG = """
storage: ./store
sources:
  crm:
    path: crm.csv
    customer_key: id
    updated_at: ts
    types: {ltv: float}
profile_sql: profile.sql
braze:
  rest_endpoint: http://127.0.0.1:9
  max_rejected_share: 0.25
segments:
  big:
    sql: SELECT external_id FROM braze_customer_attributes WHERE ltv > 100
  gold:
    rules: {attribute: tier, op: "=", value: gold}
    exclude: [big]
"""
SQL = "SELECT id AS external_id, email, tier, ltv, profile_updated_at AS _updated FROM customer_profiles"


def _write_feed(folder: Path, rows: list[tuple]) -> None:
    df = pl.DataFrame(rows, schema=["id", "email", "tier", "ltv", "ts"], orient="row")
    df.write_csv(folder / "crm.csv")


def _run(folder: Path, run_config: dict | None = None, extra: list | None = None):
    cfg = load_config(folder / "amp_braze.yaml")
    defs = build_defs(cfg)
    # Up to the audiences: the sync has its own tests against the emulator.
    assets = [
        a
        for a in defs.assets
        if not any(k.to_user_string().startswith("braze_sync") for k in a.keys)
    ] + (extra or [])
    result = dg.materialize(
        assets,
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )
    done = materialized(result)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return result, done, checks, Storage(cfg.storage)


@dg.asset(deps=["segment_memberships"])
def downstream_of_segments() -> None:
    """Stands in for braze_sync_plan: must not run when a blocking check fails."""


def _users(n: int, bad_every: int = 0) -> list[tuple]:
    rows = []
    for i in range(n):
        email = "broken" if bad_every and i % bad_every == 0 else f"u{i}@x.io"
        rows.append((f"u{i}", email, "gold" if i % 2 else "silver", float(i * 10), "2026-01-01"))
    return rows


def test_attributes_and_memberships_materialize_with_metadata(tmp_path):
    write_config(tmp_path, CONFIG, SQL)
    _write_feed(tmp_path, _users(20, bad_every=10))  # u0 and u10 have broken emails
    result, done, checks, storage = _run(tmp_path, extra=[downstream_of_segments])
    assert result.success
    attrs = done["braze_customer_attributes"]
    assert attrs["dagster/row_count"] == 18
    assert (attrs["rejected_rows"], attrs["rejected_share"]) == (2, 0.1)
    assert {"rule": "email_format", "rows": 2} in attrs["rejections_by_rule"]
    assert checks["rejected_share"].passed
    rej = storage.read_table("braze_customer_attributes_rejections")
    assert sorted(rej["identifier"].to_list()) == ["u0", "u10"]
    mem = done["segment_memberships"]
    # big: ltv > 100 -> u11..u19 (u10 rejected) = 9; gold: odd ids not big -> u1,u3,u5,u7,u9 = 5
    assert (mem["size_big"], mem["size_gold"]) == (9, 5)
    assert (mem["joiners_big"], mem["leavers_big"]) == (9, 0)
    assert "downstream_of_segments" in done
    stored = storage.read_table("segment_memberships")
    assert stored.columns == ["external_id", "__id", "big", "gold"]
    assert stored.filter("gold")["external_id"].to_list() == ["u1", "u3", "u5", "u7", "u9"]

    # Second run: u19 drops to ltv 0 (leaves big, joins gold); u2 becomes gold.
    rows = _users(20, bad_every=10)
    rows[19] = ("u19", "u19@x.io", "gold", 0.0, "2026-01-02")
    rows[13] = ("u13", "u13@x.io", "gold", 130.0, "2026-01-02")
    rows[2] = ("u2", "u2@x.io", "gold", 20.0, "2026-01-02")
    _write_feed(tmp_path, rows)
    result, done, checks, _ = _run(tmp_path)
    mem = done["segment_memberships"]
    assert (mem["size_big"], mem["joiners_big"], mem["leavers_big"]) == (8, 0, 1)
    assert (mem["size_gold"], mem["joiners_gold"], mem["leavers_gold"]) == (
        7,
        2,
        0,
    )


def test_rejected_share_check_blocks_downstream(tmp_path):
    write_config(tmp_path, CONFIG, SQL)
    _write_feed(tmp_path, _users(20, bad_every=2))  # half the emails broken
    result, done, checks, _ = _run(tmp_path, extra=[downstream_of_segments])
    assert not checks["rejected_share"].passed
    assert "10 of 20 rows (50.00%) broke a field rule" in checks["rejected_share"].description
    assert "braze_customer_attributes" in done
    assert "segment_memberships" not in done and "downstream_of_segments" not in done
    assert not result.success


def test_segment_size_guard_blocks_until_accepted(tmp_path):
    write_config(tmp_path, CONFIG, SQL)
    _write_feed(tmp_path, _users(40))
    result, done, checks, storage = _run(tmp_path, extra=[downstream_of_segments])
    assert result.success and checks["segment_size_guard"].passed
    assert done["segment_memberships"]["size_big"] == 29  # u11..u39
    # Everyone's ltv collapses: big goes from 29 to 0 members.
    _write_feed(tmp_path, [(i, e, t, 0.0, "2026-02-01") for i, e, t, _, _ in _users(40)])
    result, done, checks, storage = _run(tmp_path, extra=[downstream_of_segments])
    assert not checks["segment_size_guard"].passed
    assert (
        "segment 'big' changed from 29 to 0 members (100% > max_change 50%)"
        in checks["segment_size_guard"].description
    )
    assert "downstream_of_segments" not in done
    # Still blocked on the next run: the accepted sizes did not move.
    _, done, checks, _ = _run(tmp_path, extra=[downstream_of_segments])
    assert not checks["segment_size_guard"].passed and "downstream_of_segments" not in done
    # The operator accepts the change for one run; afterwards the new size is the baseline.
    run_config = {"ops": {"segment_memberships": {"config": {"accept_segment_changes": True}}}}
    result, done, checks, _ = _run(tmp_path, run_config=run_config, extra=[downstream_of_segments])
    assert checks["segment_size_guard"].passed and "downstream_of_segments" in done
    _, done, checks, _ = _run(tmp_path, extra=[downstream_of_segments])
    assert checks["segment_size_guard"].passed and "downstream_of_segments" in done


def test_unknown_rule_attribute_fails_before_memberships_are_written(tmp_path):
    write_config(tmp_path, CONFIG.replace("attribute: tier", "attribute: tire"), SQL)
    _write_feed(tmp_path, _users(4))
    result, done, _, storage = _run(tmp_path)
    assert "segment_memberships" not in done and not result.success
    assert not storage.table_exists("segment_memberships")
    failure = [e for e in result.all_events if e.is_step_failure][0]
    error = failure.step_failure_data.error
    assert error.cause.cls_name == "ConfigError"
    assert "segments.gold.rules.attribute: unknown attribute 'tire'" in error.cause.message
