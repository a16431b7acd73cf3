"""engagement_summary: per user, what Currents says they did, over all loaded hours.

An event delivered twice (Currents is at-least-once, and a duplicate may land in another queue hour)
counts once: events are unique on ``id`` across every hour. The user is the ``external_user_id``,
else Braze's ``user_id``. Windows (30 and 90 days) end at ``as_of`` (now, unless given).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from amp_braze.currents.summary_schema import ENGAGEMENT_SUMMARY_SCHEMA

EMAIL = "users.messages.email."
COUNTS = {
    "email_sends": [EMAIL + "Send"],
    "email_deliveries": [EMAIL + "Delivery"],
    "email_opens": [EMAIL + "Open"],
    "email_clicks": [EMAIL + "Click"],
    "email_bounces": [EMAIL + "Bounce", EMAIL + "SoftBounce"],
    "email_unsubscribes": [EMAIL + "Unsubscribe"],
    "push_opens": ["users.messages.pushnotification.Open"],
}
PURCHASE = "users.behaviors.Purchase"
SESSION = "users.behaviors.app.SessionStart"


def summarize(events: pl.LazyFrame, as_of: dt.datetime) -> pl.DataFrame:
    """One row per user, with the columns of ENGAGEMENT_SUMMARY_SCHEMA."""
    as_of = as_of.astimezone(dt.UTC)
    d30, d90 = as_of - dt.timedelta(days=30), as_of - dt.timedelta(days=90)
    ev = (
        events.unique("id", keep="first")
        .filter(pl.col("time") <= as_of)
        .with_columns(pl.coalesce("external_user_id", "user_id").alias("__user"))
    )
    t, et = pl.col("time"), pl.col("event_type")
    aggs = [pl.col("external_user_id").drop_nulls().first(), pl.col("user_id").drop_nulls().first()]
    for name, types in COUNTS.items():
        is_type = et.is_in(types)
        aggs += [
            (is_type & (t > d30)).sum().cast(pl.Int64).alias(f"{name}_30d"),
            (is_type & (t > d90)).sum().cast(pl.Int64).alias(f"{name}_90d"),
        ]
    purchase90 = (et == PURCHASE) & (t > d90)
    aggs += [
        t.filter(et == EMAIL + "Open").max().alias("last_email_open_at"),
        t.filter(et == EMAIL + "Click").max().alias("last_email_click_at"),
        purchase90.sum().cast(pl.Int64).alias("purchases_90d"),
        pl.col("price").filter(purchase90).sum().cast(pl.Float64).alias("revenue_90d"),
        t.filter(et == PURCHASE).max().alias("last_purchase_at"),
        t.filter(et == SESSION).max().alias("last_session_at"),
    ]
    out = ev.group_by("__user").agg(aggs).drop("__user").collect()
    return out.select(
        [pl.col(c).cast(dtype) for c, dtype in ENGAGEMENT_SUMMARY_SCHEMA.items()]
    ).sort("external_user_id", "user_id", nulls_last=True)
