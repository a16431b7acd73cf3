"""A small brand with an orders table and event streams, against a running emulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.demo.run import QUIET
from amp_braze.storage import Storage
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import materialized

CONFIG = """
storage: ./store
sources:
  crm:
    path: crm.csv
    customer_key: id
  orders:
    path: orders.parquet
    customer_key: customer_id
    profile: false
profile_sql: profile.sql
braze:
  rest_endpoint: {url}
  rate_limit: {{requests: 5000, per_seconds: 1}}
  concurrency: 2
  max_retries: 2
  timeout_seconds: 5
events:
  orders:
    sql: orders.sql
    type: ecommerce.order_placed
  purchases:
    sql: purchases.sql
    type: purchase
  visits:
    sql: visits.sql
    type: custom
    name: store_visit
{extra}
"""
ORDERS_SQL = """
SELECT customer_id AS external_id, order_id AS event_id, placed_at AS time, order_id,
       total AS total_value, currency, products, 'web' AS source, channel
FROM sources_orders
"""
PURCHASES_SQL = """
SELECT customer_id AS external_id, order_id AS event_id, placed_at AS time, sku AS product_id,
       currency, unit_price AS price, units AS quantity, channel
FROM sources_orders
"""
VISITS_SQL = """
SELECT customer_id AS external_id, 'visit-' || order_id AS event_id, placed_at AS time,
       channel AS store
FROM sources_orders
"""
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def orders(n: int, start: int = 0, users: int = 50) -> pl.DataFrame:
    """``n`` orders, ids ``o-<i>``, of ``users`` customers; one product each."""
    i = pl.int_range(start, start + n, eager=True)
    return pl.DataFrame(
        {
            "order_id": "o-" + i.cast(pl.String),
            "customer_id": "user-" + (i % users).cast(pl.String),
            "placed_at": [T0 + dt.timedelta(minutes=int(k)) for k in i],
            "total": (i % 7 + 1).cast(pl.Float64) * 10,
            "currency": ["USD"] * n,
            "sku": "sku-" + (i % 5).cast(pl.String),
            "unit_price": (i % 7 + 1).cast(pl.Float64) * 10,
            "units": pl.Series([1] * n, dtype=pl.Int64),
            "channel": ["web"] * n,
        }
    ).with_columns(
        pl.concat_list(
            pl.struct(
                pl.col("sku").alias("product_id"),
                pl.lit("Shirt").alias("product_name"),
                (pl.col("sku") + "-m").alias("variant_id"),
                pl.lit(1).alias("quantity"),
                pl.col("unit_price").alias("price"),
            )
        ).alias("products")
    )


class EventBrand:
    def __init__(self, folder: Path, url: str, extra: str = ""):
        self.folder = folder
        self.path = write_config(folder, CONFIG.format(url=url, extra=extra),
                                 "SELECT id AS external_id FROM customer_profiles")  # fmt: skip
        for name, sql in (("orders", ORDERS_SQL), ("purchases", PURCHASES_SQL),
                          ("visits", VISITS_SQL)):  # fmt: skip
            (folder / f"{name}.sql").write_text(sql)
        pl.DataFrame({"id": [f"user-{i}" for i in range(50)]}).write_csv(folder / "crm.csv")
        self.config = load_config(self.path)
        self.storage = Storage(self.config.storage)

    @classmethod
    def reload(cls, brand: EventBrand) -> EventBrand:
        """The same brand, its configuration read again (after a test edited it)."""
        brand.config = load_config(brand.path)
        brand.storage = Storage(brand.config.storage)
        return brand

    def write_orders(self, df: pl.DataFrame) -> None:
        df.write_parquet(self.folder / "orders.parquet")

    def run(self, stream: str = "orders") -> dict[str, dict]:
        """Run a stream's job (its feed is read first): the metadata of what it materialized."""
        result = (
            build_defs(self.config)
            .resolve_job_def(f"{stream}_job")
            .execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), run_config=QUIET, raise_on_error=False
            )
        )
        return materialized(result) | {"__success": result.success}
