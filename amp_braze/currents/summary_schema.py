"""The columns of engagement_summary, known before any Currents data exists (the profile SQL and
segments can refer to them from day one; the table is empty until Currents files arrive)."""

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


def empty_engagement_summary() -> pl.DataFrame:
    return pl.DataFrame(schema=ENGAGEMENT_SUMMARY_SCHEMA)
