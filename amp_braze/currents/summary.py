"""engagement_summary: per user, what Currents says they did.

An event delivered twice (Currents is at-least-once, and a duplicate may land in another queue hour)
counts once: events are unique on ``id``. The user is the ``external_user_id``, else Braze's
``user_id``. Windows (30 and 90 days) end at ``as_of`` (now, unless given).

The summary is two halves so that it does not reread all history every time: the windowed counts,
which only need the queue hours that can hold events of the last 90 days, and the all-time fields
(the ``last_*_at`` times and the user's ids), kept in a roll-up that new or reloaded hours are folded
into. Folding takes maxima, so an hour folded twice, or hours folded in any order, give the same
roll-up as reading everything at once.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from amp_braze.engagement_schema import ENGAGEMENT_SUMMARY_SCHEMA

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
LAST = {  # all-time fields: the newest event of a type
    "last_email_open_at": EMAIL + "Open",
    "last_email_click_at": EMAIL + "Click",
    "last_purchase_at": PURCHASE,
    "last_session_at": SESSION,
}
WINDOW = dt.timedelta(days=90)
# Queue hours read before the 90-day window: an event can carry a time later than the hour it was
# queued in (a device clock running ahead), so a few days more are read and filtered on ``time``.
WINDOW_MARGIN = dt.timedelta(days=7)
USER = "__user"
MICROS = 1_000_000
IDS = ["external_user_id", "user_id"]


def _with_user(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.with_columns(pl.coalesce("external_user_id", "user_id").alias(USER))


def alltime(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per user: their ids and the all-time fields. Duplicates need no removal here (a maximum
    does not change when an event is counted twice)."""
    t, et = pl.col("time"), pl.col("event_type")
    return (
        _with_user(events)
        .group_by(USER)
        .agg(
            [pl.col(c).drop_nulls().first() for c in IDS]
            + [t.filter(et == kind).max().alias(name) for name, kind in LAST.items()]
        )
    )


def add_to_rollup(rollup: pl.DataFrame | None, new: pl.DataFrame) -> pl.DataFrame:
    """The roll-up with ``new`` (the alltime() of newly loaded hours) folded in."""
    if rollup is None or not rollup.height:
        return new.sort(USER)
    both = pl.concat([rollup, new], how="vertical_relaxed")
    return (
        both.group_by(USER, maintain_order=True)
        .agg([pl.col(c).drop_nulls().first() for c in IDS] + [pl.col(c).max() for c in LAST])
        .sort(USER)
    )


def windowed(events: pl.LazyFrame, as_of: dt.datetime) -> pl.LazyFrame:
    """Per user, the 30- and 90-day counts ending at ``as_of``, each event once."""
    d30, d90 = as_of - dt.timedelta(days=30), as_of - WINDOW
    t, et = pl.col("time"), pl.col("event_type")
    ev = _with_user(events.filter((t > d90) & (t <= as_of)).unique("id", keep="first"))
    aggs = []
    for name, types in COUNTS.items():
        is_type = et.is_in(types)
        aggs += [
            (is_type & (t > d30)).sum().cast(pl.Int64).alias(f"{name}_30d"),
            is_type.sum().cast(pl.Int64).alias(f"{name}_90d"),
        ]
    purchase = et == PURCHASE
    aggs += [
        purchase.sum().cast(pl.Int64).alias("purchases_90d"),
        # Summed in whole millionths: an integer sum is the same in any order, so the figure does
        # not move in its last bit from run to run (which would resend it to Braze every sync).
        ((pl.col("price").filter(purchase) * MICROS).round().cast(pl.Int64).sum() / MICROS)
        .cast(pl.Float64)
        .alias("revenue_90d"),
    ]
    return ev.group_by(USER).agg(aggs)


def combine(counts: pl.DataFrame, users: pl.DataFrame) -> pl.DataFrame:
    """One row per user in ``users`` (the all-time roll-up: everyone ever seen), with their
    windowed counts (zero when they did nothing in the window)."""
    out = users.join(counts, on=USER, how="left")
    zero = [
        pl.col(c).fill_null(0.0 if dtype == pl.Float64 else 0)
        for c, dtype in ENGAGEMENT_SUMMARY_SCHEMA.items()
        if c in counts.columns
    ]
    return (
        out.with_columns(zero)
        .select([pl.col(c).cast(dtype) for c, dtype in ENGAGEMENT_SUMMARY_SCHEMA.items()])
        .sort("external_user_id", "user_id", nulls_last=True)
    )


def summarize(events: pl.LazyFrame, as_of: dt.datetime) -> pl.DataFrame:
    """The whole summary from every event at once (what the roll-up must always equal)."""
    as_of = as_of.astimezone(dt.UTC)
    upto = events.filter(pl.col("time") <= as_of)
    counts, users = pl.collect_all([windowed(events, as_of), alltime(upto)])
    return combine(counts, users)


def window_start_hour(as_of: dt.datetime) -> dt.datetime:
    """The oldest queue hour that can hold an event of the 90-day window ending at ``as_of``."""
    return as_of.astimezone(dt.UTC) - WINDOW - WINDOW_MARGIN
