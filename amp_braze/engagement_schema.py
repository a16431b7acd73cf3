"""The columns of engagement_summary, known before any Currents data exists: the contract between
the Currents area, which writes the table, and the profile SQL and segments, which can refer to
them from day one (the table is empty until Currents files arrive)."""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

ENGAGEMENT_SUMMARY_SCHEMA = pl.Schema(
    {
        "external_user_id": pl.String,  # Braze external_user_id, else null
        "user_id": pl.String,  # Braze's own user id (always there)
        "email_sends_30d": pl.Int64,
        "email_sends_90d": pl.Int64,
        "email_deliveries_30d": pl.Int64,
        "email_deliveries_90d": pl.Int64,
        "email_opens_30d": pl.Int64,
        "email_opens_90d": pl.Int64,
        "email_clicks_30d": pl.Int64,
        "email_clicks_90d": pl.Int64,
        "email_bounces_30d": pl.Int64,
        "email_bounces_90d": pl.Int64,
        "email_unsubscribes_30d": pl.Int64,
        "email_unsubscribes_90d": pl.Int64,
        "last_email_open_at": UTC_TS,
        "last_email_click_at": UTC_TS,
        "push_opens_30d": pl.Int64,
        "push_opens_90d": pl.Int64,
        "purchases_90d": pl.Int64,
        "revenue_90d": pl.Float64,
        "last_purchase_at": UTC_TS,
        "last_session_at": UTC_TS,
    }
)


def _window(what: str, col: str) -> str:
    days = col.rsplit("_", 1)[1][:-1]
    return f"{what} in the {days} days before the summary's as_of (each Currents event once)."


SUMMARY_DESCRIPTIONS = {
    "external_user_id": "Braze's external_user_id of the events' user (null for anonymous users).",
    "user_id": "Braze's own user id.",
    **{c: _window("Emails sent", c) for c in ("email_sends_30d", "email_sends_90d")},
    **{c: _window("Emails delivered", c) for c in ("email_deliveries_30d", "email_deliveries_90d")},
    **{c: _window("Email opens", c) for c in ("email_opens_30d", "email_opens_90d")},
    **{c: _window("Email clicks", c) for c in ("email_clicks_30d", "email_clicks_90d")},
    **{
        c: _window("Email bounces (hard and soft)", c)
        for c in ("email_bounces_30d", "email_bounces_90d")
    },
    **{c: _window("Unsubscribes", c) for c in ("email_unsubscribes_30d", "email_unsubscribes_90d")},
    **{c: _window("Push opens", c) for c in ("push_opens_30d", "push_opens_90d")},
    "purchases_90d": _window("Purchases", "purchases_90d"),
    "revenue_90d": _window("Revenue (sum of prices, summed in whole millionths)", "revenue_90d"),
    "last_email_open_at": "The user's latest email open, over all loaded hours.",
    "last_email_click_at": "The user's latest email click, over all loaded hours.",
    "last_purchase_at": "The user's latest purchase, over all loaded hours.",
    "last_session_at": "The user's latest session start, over all loaded hours.",
}


def empty_engagement_summary() -> pl.DataFrame:
    return pl.DataFrame(schema=ENGAGEMENT_SUMMARY_SCHEMA)
