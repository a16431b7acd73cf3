"""What a plan would cost and save, as the plan asset reports it: users and attributes changed,
data points and requests, and the same figures for a full (non-delta) sync."""

from __future__ import annotations

import math

import polars as pl

from amp_braze.braze import field_rules
from amp_braze.braze.identifiers import ID, identifier_columns
from amp_braze.braze.payload import data_points
from amp_braze.braze.plan_columns import NEW, AttrSpec, flag, is_subscription
from amp_braze.config import BrazeConfig


def plan_stats(
    t: pl.DataFrame,
    attrs: list[AttrSpec],
    wanted_users: int,
    wanted: pl.LazyFrame,
    braze: BrazeConfig,
    wanted_non_null: dict[str, int] | None = None,
) -> dict:
    per_attr = {a.name: int(t.get_column(flag(a.name)).sum()) for a in attrs} if t.height else {}
    points = int(data_points(t, attrs).sum()) if t.height else 0
    # What a full (non-delta) sync would send: every non-null attribute of every wanted user.
    billable = [
        c
        for c in wanted.collect_schema().names()
        if c not in identifier_columns(braze.identifier)
        and c != ID
        and c not in field_rules.NON_BILLABLE_FIELDS
        and not field_rules.is_held_column(c)
        and not is_subscription(c)  # subscription states cost no data points
    ]
    known = wanted_non_null or {}
    missing = [c for c in billable if c not in known]
    if missing:
        counts = wanted.select([pl.col(c).is_not_null().sum() for c in missing]).collect(
            engine="streaming"
        )
        known = known | counts.row(0, named=True)
    full_points = sum(int(known[c]) for c in billable)
    per = braze.objects_per_request
    return {
        "users_changed": t.height,
        "new_users": int(t.get_column(NEW).sum()) if t.height else 0,
        "attributes_changed": sum(per_attr.values()),
        "attributes_changed_by_column": per_attr,
        "data_points": points,
        "requests": math.ceil(t.height / per),
        "full_sync_users": wanted_users,
        "full_sync_data_points": full_points,
        "full_sync_requests": math.ceil(wanted_users / per),
    }
