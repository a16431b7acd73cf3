"""The web shop's orders for the sample data: a table the demo's order stream reads (one row per
order, its products as a list), written beside the shop's accounts."""

from __future__ import annotations

from pathlib import Path

import polars as pl

ORDERS_FILE = "web_orders.parquet"
CURRENCY = {"GB": "GBP", "DE": "EUR", "FR": "EUR", "IE": "EUR", "ES": "EUR", "IT": "EUR"}
PRODUCTS = [  # (product_id, name)
    ("tee-01", "Organic tee"), ("hood-02", "Zip hoodie"), ("jean-03", "Slim jeans"),
    ("sock-04", "Wool socks"), ("cap-05", "Canvas cap"), ("bag-06", "Tote bag"),
]  # fmt: skip
MAX_ORDERS = 3  # per account: its most recent orders only


def orders_of(accounts: pl.DataFrame, key: str, start: int = 0) -> pl.DataFrame:
    """Up to three recent orders per account (``orders_count`` of them, the last at
    ``last_order_at``, each 17 days before the next), their total split evenly."""
    acc = accounts.unique(key, keep="first", maintain_order=True).filter(pl.col("orders_count") > 0)
    acc = acc.with_columns(
        pl.min_horizontal("orders_count", pl.lit(MAX_ORDERS)).alias("__n"),
        pl.coalesce(
            *(pl.col(c).dt.convert_time_zone("UTC") for c in ("last_order_at", "updated_at"))
        ).alias("__last"),
    ).with_columns(pl.int_ranges(0, pl.col("__n")).alias("__k"))
    rows = acc.explode("__k").with_row_index("__i", offset=start)
    pick = (pl.col("__i") % len(PRODUCTS)).cast(pl.Int64)
    price = (pl.col("online_revenue") / pl.col("orders_count")).round(2)
    return rows.select(
        pl.format("WO{}", pl.col("__i").cast(pl.String).str.zfill(8)).alias("order_id"),
        pl.col(key).cast(pl.String).alias("account_id"),
        (pl.col("__last") - pl.duration(days=17) * pl.col("__k")).alias("placed_at"),
        price.alias("total"),
        pl.col("country").replace_strict(CURRENCY, default="USD").alias("currency"),
        pl.concat_list(
            pl.struct(
                pick.replace_strict(dict(enumerate(p for p, _ in PRODUCTS))).alias("product_id"),
                pick.replace_strict(dict(enumerate(n for _, n in PRODUCTS))).alias("product_name"),
                (pick.replace_strict(dict(enumerate(p for p, _ in PRODUCTS))) + "-m").alias(
                    "variant_id"
                ),
                pl.lit(1).alias("quantity"),
                price.alias("price"),
            )
        ).alias("products"),
        pl.lit("web").alias("channel"),
    )


def write_orders(out: Path, accounts: pl.DataFrame, key: str) -> Path:
    path = out / ORDERS_FILE
    orders_of(accounts, key).write_parquet(path)
    return path


def add_orders(path: Path, accounts: pl.DataFrame, key: str, at) -> int:
    """Day two: one new order for each of these accounts, placed ``at``; returns how many."""
    old = pl.read_parquet(path)
    fresh = orders_of(
        accounts.with_columns(
            pl.lit(1).alias("orders_count"),
            pl.lit(at).cast(old.schema["placed_at"]).alias("last_order_at"),
            pl.lit(80.0).alias("online_revenue"),
        ),
        key,
        start=old.height,
    )
    pl.concat([old, fresh.cast(old.schema)]).write_parquet(path)
    return fresh.height
