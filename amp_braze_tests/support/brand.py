"""A small brand set up against a running emulator, and a check that Braze holds what we want."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import Config, load_config
from amp_braze.definitions import build_defs
from amp_braze.demo.run import QUIET
from amp_braze.storage import Storage
from amp_braze.sync.verify import compare, flatten_braze_profile
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import materialized

# The brand's one feed and profile SQL (a template: braces doubled for str.format).
FEED_SECTION = """
storage: ./store
sources:
  crm:
    path: crm.csv
    customer_key: id
    updated_at: updated_at
    types: {{phone: string, dob: date}}
profile_sql: profile.sql
"""
# Two segments the sync tests use: a SQL one and a rule one.
SEGMENTS_SECTION = """segments:
  big:
    sql: SELECT external_id FROM braze_customer_attributes WHERE ltv > 500
    allow_large_change: true
  gold:
    rules: {{attribute: tier, op: "=", value: gold}}
    allow_large_change: true
"""
CONFIG = (
    FEED_SECTION
    + """braze:
  rest_endpoint: {url}
  rate_limit: {{requests: {rate}, per_seconds: 1}}
  concurrency: {concurrency}
  max_retries: 8
  timeout_seconds: 5
  on_removed_user: {on_removed}
"""
    + SEGMENTS_SECTION
    + """sync:
  checkpoint_rows: {checkpoint_rows}
"""
)
SQL = """
SELECT id AS external_id, email, first_name, phone, dob, tier, ltv, visits, vip_since, tags
FROM (SELECT *, CASE WHEN visits > 5 THEN ['frequent'] ELSE ['occasional'] END AS tags FROM customer_profiles)
"""


def make_feed(n: int) -> pl.DataFrame:
    i = pl.col("i")
    return pl.select(i=pl.int_range(n)).select(
        pl.format("user-{}", i).alias("id"),
        pl.format("user{}@example.com", i).alias("email"),
        pl.when(i % 10 == 0).then(None).otherwise(pl.format("Name{}", i % 97)).alias("first_name"),
        # A number with 555 as its area code is not valid (libphonenumber); 415 555 xxxx is.
        pl.format("415555{}", (i * 7919 % 10_000).cast(pl.String).str.zfill(4)).alias("phone"),
        (pl.date(1950, 1, 1) + pl.duration(days=(i * 37) % 18000)).alias("dob"),
        pl.when(i % 3 == 0)
        .then(pl.lit("bronze"))
        .when(i % 3 == 1)
        .then(pl.lit("silver"))
        .otherwise(pl.lit("gold"))
        .alias("tier"),
        (i * 13 % 1000).cast(pl.Float64).alias("ltv"),
        (i % 11).alias("visits"),
        (pl.lit(dt.datetime(2024, 1, 1, 12, 30)) + pl.duration(hours=i)).alias("vip_since"),
        pl.lit(dt.datetime(2026, 1, 1)).alias("updated_at"),
    )


@dataclass
class Brand:
    folder: Path
    config: Config
    storage: Storage

    def write_feed(self, df: pl.DataFrame) -> None:
        df.write_csv(self.folder / "crm.csv")

    def defs(self) -> dg.Definitions:
        return build_defs(self.config)

    def sync(self, raise_on_error: bool = True, run_config: dict | None = None):
        defs = self.defs()
        result = dg.materialize(
            list(defs.assets),
            resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=raise_on_error,
            run_config={**QUIET, **(run_config or {})},
        )
        return result, materialized(result)


def make_brand(folder: Path, url: str, n: int = 1500, rate: int = 5000, concurrency: int = 4,
               checkpoint_rows: int = 300, on_removed: str = "ignore", extra: str = "") -> Brand:  # fmt: skip
    """``extra``: more of the configuration (YAML, appended as written)."""
    body = CONFIG.format(
        url=url,
        rate=rate,
        concurrency=concurrency,
        checkpoint_rows=checkpoint_rows,
        on_removed=on_removed,
    )
    path = write_config(folder, body + extra, SQL)
    cfg = load_config(path)
    brand = Brand(folder, cfg, Storage(cfg.storage))
    brand.write_feed(make_feed(n))
    return brand


def day_two_feed() -> pl.DataFrame:
    """Every 50th customer's ltv moves, 20 customers leave and 30 arrive, 5 of them with an email
    Braze's field rules set aside (so they never reach Braze)."""
    df = make_feed(1530).slice(20)
    row = pl.int_range(pl.len())
    return df.with_columns(
        pl.when(row % 50 == 0).then(pl.col("ltv") + 1).otherwise("ltv"),
        pl.when((row >= 1480) & (row % 6 == 0)).then(pl.lit("not an email")).otherwise("email").alias("email"),
    )  # fmt: skip


def day_two(brand: Brand) -> None:
    brand.write_feed(day_two_feed())


def braze_profiles(emulator) -> dict[str, dict]:
    """What the emulator holds, flattened as the comparison sees it (false segment flags dropped)."""
    return {
        ext: flatten_braze_profile(u, {"amp_big", "amp_gold"})
        for ext, u in emulator.users().items()
    }


def assert_braze_matches(brand: Brand, emulator) -> None:
    users = list(emulator.users().values())
    result = compare(brand.config, brand.storage, users, list(brand.config.syncs.values()))
    assert not result.missing and not result.unexpected, (result.missing[:3], result.unexpected[:3])
    assert not result.different, (
        f"{len(result.different)} profiles differ, e.g. {result.different[:2]}"
    )
    assert result.wanted_users == result.braze_users
