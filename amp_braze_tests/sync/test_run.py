"""Sending a plan (amp_braze.sync.run): requests sized by the sync's own destination."""

from __future__ import annotations

import math

import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.braze.plan_columns import AttrSpec, flag
from amp_braze.config import load_config
from amp_braze.sync.plan import Plan
from amp_braze.sync.run import iter_requests, window_rows
from amp_braze_tests.support.configs import write_config

TWO_SIZES = """
storage: ./store
sources:
  pos: {path: pos.csv, customer_key: customer_id}
profile_sql: profile.sql
destinations:
  us: {rest_endpoint: "http://127.0.0.1:9", api_key_env: KEY_US}
  eu: {rest_endpoint: "http://127.0.0.1:8", api_key_env: KEY_EU, objects_per_request: 50}
syncs:
  profiles_us: {destination: us}
  profiles_eu: {destination: eu, sql: profile.sql}
sync:
  checkpoint_rows: 750
"""


def _plan(n: int) -> Plan:
    ids = [f"u{i:05d}" for i in range(n)]
    table = pl.DataFrame({ID: ids, "external_id": ids, "tier": ["gold"] * n})
    table = table.with_columns(pl.lit(True).alias(flag("tier")), pl.lit(False).alias("__new"))
    return Plan(table=table, attrs=[AttrSpec("tier")], wanted_users=n)


def test_each_sync_fills_requests_of_its_own_destination_s_size(tmp_path):
    cfg = load_config(write_config(tmp_path, TWO_SIZES))
    us, eu = cfg.syncs["profiles_us"], cfg.syncs["profiles_eu"]
    # Half a checkpoint is 375 rows: whole requests of 75 for us, of 50 for eu.
    assert window_rows(cfg, cfg.destination_of(us)) == 375
    assert window_rows(cfg, cfg.destination_of(eu)) == 350
    plan = _plan(1000)
    for spec, per in ((us, 75), (eu, 50)):
        sizes = [len(r.objects) for r in iter_requests(plan, cfg, spec)]
        assert sum(sizes) == 1000
        # Every request full but the very last: no half-empty request at a window's end.
        assert len(sizes) == math.ceil(1000 / per)
        assert set(sizes[:-1]) == {per}
