"""Delta planning: the wanted state (attributes + segment attributes) against the sync state.

Per user, only the attributes whose value changed are flagged; new users get every non-null
attribute; a segment boolean that is false for a user Braze never had true for is not sent (false
and absent mean the same to a segment filter, and each would cost a data point); an attribute
dropped from the SQL is unset only if ``braze.unset_removed_attributes``; a user who disappeared is
ignored or unset per ``braze.on_removed_user``. Users set aside by field rules are never treated as
disappeared. All polars joins and expressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from amp_braze.braze import rules
from amp_braze.braze.identifiers import ALIAS_SEPARATOR, ID, identifier_columns
from amp_braze.braze.payload import ADD, NEW, REMOVE, AttrSpec, data_points, flag
from amp_braze.config import BrazeConfig

OLD = "__old"
IN_STATE = "__in_state"


@dataclass
class Plan:
    table: pl.DataFrame  # only rows with something to send
    attrs: list[AttrSpec]
    wanted_users: int
    state_fingerprint: str = ""
    stats: dict = field(default_factory=dict)


def _old(a: str) -> str:
    return f"{a}{OLD}"


def _ids_from_key(kind: str) -> list[pl.Expr]:
    """Identifier columns rebuilt from __id (for users who are only in the state)."""
    if kind == "user_alias":
        parts = pl.col(ID).str.split_exact(ALIAS_SEPARATOR, 1)
        return [
            parts.struct.field("field_1").alias("alias_name"),
            parts.struct.field("field_0").alias("alias_label"),
        ]
    return [pl.col(ID).alias(kind)]


def plan_delta(
    wanted: pl.DataFrame,
    state: pl.DataFrame,
    braze: BrazeConfig,
    segment_booleans: list[str],
    segment_array: str | None = None,
    protected_ids: pl.Series | None = None,
) -> Plan:
    """The delta. ``wanted``: identifier columns, ``__id`` and one column per managed attribute."""
    kind = braze.identifier
    id_cols = identifier_columns(kind)
    managed = [c for c in wanted.columns if c not in id_cols and c != ID]
    removed_attrs = [c for c in state.columns if c != ID and c not in managed]
    unset_attrs = removed_attrs if braze.unset_removed_attributes else []
    in_state = [a for a in managed + unset_attrs if a in state.columns]

    old = state.select(
        [pl.col(ID), pl.lit(True).alias(IN_STATE)] + [pl.col(a).alias(_old(a)) for a in in_state]
    )
    rows = align(wanted, old).with_columns(pl.col(IN_STATE).is_null().alias(NEW))
    rows = rows.with_columns([pl.lit(None).alias(a) for a in unset_attrs])

    # Users in the state but no longer wanted.
    if braze.on_removed_user == "unset" and state.height:
        gone = state.join(wanted.select(ID), on=ID, how="anti")
        if protected_ids is not None and protected_ids.len():
            gone = gone.filter(~pl.col(ID).is_in(protected_ids.implode()))
        if gone.height:
            gone_rows = gone.select(
                _ids_from_key(kind)
                + [pl.col(ID), pl.lit(False).alias(NEW)]
                + [pl.col(a).alias(_old(a)) for a in in_state]
            ).with_columns([pl.lit(None).alias(a) for a in managed + unset_attrs])
            rows = pl.concat([rows.drop(IN_STATE), gone_rows], how="diagonal_relaxed")
    rows = rows.drop(IN_STATE, strict=False)

    attrs: list[AttrSpec] = []
    exprs: list[pl.Expr] = []
    is_new = pl.col(NEW)
    for a in managed + unset_attrs:
        cur = pl.col(a)
        prev = (
            pl.col(_old(a)) if a in in_state else pl.lit(None, dtype=wanted.schema.get(a, pl.Null))
        )
        if a == segment_array:
            empty = pl.lit([], dtype=pl.List(pl.String))
            add = cur.fill_null(empty).list.set_difference(prev.fill_null(empty))
            remove = prev.fill_null(empty).list.set_difference(cur.fill_null(empty))
            exprs += [add.alias(a + ADD), remove.alias(a + REMOVE)]
            changed = (
                pl.when(is_new)
                .then(cur.list.len() > 0)
                .otherwise((add.list.len() > 0) | (remove.list.len() > 0))
            )
            attrs.append(AttrSpec(a, array_ops=True))
        elif a in segment_booleans:
            # Absent and false are the same to a segment filter: only a real change is sent.
            changed = cur.fill_null(False) != prev.fill_null(False)
            attrs.append(AttrSpec(a))
        else:
            changed = pl.when(is_new).then(cur.is_not_null()).otherwise(cur.ne_missing(prev))
            attrs.append(AttrSpec(a))
        exprs.append(changed.fill_null(False).alias(flag(a)))
    rows = rows.with_columns(exprs)
    flags = [flag(a.name) for a in attrs]
    any_change = pl.any_horizontal(flags) if flags else pl.lit(False)
    keep = id_cols + [ID, NEW] + [c for a in attrs for c in _plan_cols(a)]
    table = rows.filter(any_change).select(keep)
    plan = Plan(table=table, attrs=attrs, wanted_users=wanted.height)
    plan.stats = plan_stats(plan, wanted, braze, segment_booleans, segment_array)
    return plan


def align(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``left`` with ``right``'s columns for the same ``__id`` (null where right has none).

    Both tables are kept sorted by ``__id`` (the attributes table and every state version are
    written that way), so on most runs the ids line up row for row and the columns are simply put
    side by side: no join. Otherwise the join is on a 64-bit hash of the id (several times faster
    than on the string), checked against the strings, with a string join if the check fails."""
    extra = right.drop(ID)
    if left.height == right.height and left.get_column(ID).equals(right.get_column(ID)):
        return pl.concat([left, extra], how="horizontal")
    h = "__id_hash"
    keyed = right.select(pl.col(ID).hash().alias(h), pl.col(ID).alias("__id_right"), *extra.columns)
    joined = left.with_columns(pl.col(ID).hash().alias(h)).join(keyed, on=h, how="left")
    bad = joined.select(
        (pl.col("__id_right").is_not_null() & (pl.col("__id_right") != pl.col(ID))).any()
    ).item()
    if joined.height != left.height or bad:  # a hash collision: fall back to the exact join
        return left.join(right, on=ID, how="left")
    return joined.drop(h, "__id_right")


def _plan_cols(a: AttrSpec) -> list[str]:
    cols = [a.name, flag(a.name)]
    if a.array_ops:
        cols += [a.name + ADD, a.name + REMOVE]
    return cols


def plan_stats(
    plan: Plan,
    wanted: pl.DataFrame,
    braze: BrazeConfig,
    segment_booleans: list[str],
    segment_array: str | None,
) -> dict:
    t = plan.table
    per_attr = (
        {a.name: int(t.get_column(flag(a.name)).sum()) for a in plan.attrs} if t.height else {}
    )
    points = int(data_points(t, plan.attrs).sum()) if t.height else 0
    # What a full (non-delta) sync would send: every non-null attribute of every wanted user.
    billable = [
        c
        for c in wanted.columns
        if c not in identifier_columns(braze.identifier)
        and c != ID
        and c not in rules.NON_BILLABLE_FIELDS
    ]
    full_points = (
        int(
            wanted.select(
                pl.sum_horizontal([pl.col(c).is_not_null() for c in billable]).sum()
            ).item()
        )
        if billable
        else 0
    )
    per = braze.objects_per_request
    return {
        "users_changed": t.height,
        "new_users": int(t.get_column(NEW).sum()) if t.height else 0,
        "attributes_changed": sum(per_attr.values()),
        "attributes_changed_by_column": per_attr,
        "data_points": points,
        "requests": math.ceil(t.height / per),
        "full_sync_users": wanted.height,
        "full_sync_data_points": full_points,
        "full_sync_requests": math.ceil(wanted.height / per),
    }
