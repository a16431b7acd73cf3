"""A stream's query result to what goes out: the rows that pass their type's rules as
/users/track objects, each under the id the ledger records, and the rest with the rule they
broke; then, against the ledger, which of them Braze has never been sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.identifiers import ID
from amp_braze.config import BrazeConfig
from amp_braze.config.events import EventStream
from amp_braze.events import ledger as lg
from amp_braze.events import shape, types
from amp_braze.events.shape import EVENT_ID, RULE, TS
from amp_braze.events.types import POINTS, SENT_ID

HASH = "__hash"
REJECTION_SCHEMA = {EVENT_ID: pl.String, "identifier": pl.String, "rule": pl.String}


@dataclass
class Prepared:
    ready: pl.DataFrame  # event_id, __sent_id, __hash, __obj, __points, __id, __time
    rejected: pl.DataFrame  # event_id, identifier, rule
    rows: int  # the query's rows
    array: str  # the /users/track array they go in


def prepare(df: pl.DataFrame, stream: EventStream, dest: BrazeConfig, now: datetime) -> Prepared:
    """Validate a stream's rows by its type (``types``) and encode those that pass."""
    identifier = dest.identifier
    shape.required_columns(df, identifier, stream.stream, [])
    rows = df.height
    df = shape.prepared(df, identifier)
    t = types.rules_for(df, stream.type, identifier, stream.name, stream.stream)
    df = df.with_columns(shape.first_rule(shape.common_rules(df, identifier, now) + t.rules))
    rejected = df.filter(pl.col(RULE).is_not_null()).select(
        EVENT_ID, pl.col(ID).alias("identifier"), pl.col(RULE).alias("rule")
    )
    ok = df.filter(pl.col(RULE).is_null())
    if stream.type == er.PURCHASE:
        ok = types.split_quantities(ok)
    else:
        ok = ok.with_columns(pl.col(EVENT_ID).alias(SENT_ID), pl.lit(1).alias("__quantity"))
    ready = ok.select(
        EVENT_ID,
        SENT_ID,
        HASH,
        types.object_expr(t, identifier, dest.update_existing_only),
        t.points.alias(POINTS),
        ID,
        TS,
    )
    return Prepared(ready, rejected, rows, t.array)


@dataclass
class Checked:
    to_send: pl.DataFrame
    new: int  # ids never sent
    already_sent: int
    changed_after_send: int  # rows (by event_id) whose content changed since they were sent
    uncertain: (
        pl.DataFrame
    )  # ready rows whose id a crash left in doubt (event_id, __sent_id, __id, __time)


def check(ready: pl.DataFrame, view: lg.LedgerView, resend_uncertain: bool) -> Checked:
    """Which ready rows go out: ids the ledger does not hold (and, with ``resend_uncertain``,
    those it holds as uncertain); the rest are counted."""
    held = view.frame.select(lg.EID, lg.STATUS, pl.col(lg.HASH).alias("__held_hash"))
    j = ready.lazy().join(held, left_on=SENT_ID, right_on=lg.EID, how="left").collect()
    status = pl.col(lg.STATUS)
    sent = j.filter(status == lg.SENT)
    changed = 0
    if view.hash_basis == lg.HASH_BASIS and sent.height:
        moved = sent.filter(pl.col("__held_hash") != pl.col(HASH))
        changed = moved.get_column(EVENT_ID).n_unique()
    uncertain = j.filter(status == lg.UNCERTAIN)
    go = status.is_null() | (status == lg.UNCERTAIN) if resend_uncertain else status.is_null()
    return Checked(
        to_send=j.filter(go).drop(lg.STATUS, "__held_hash"),
        new=int(j.get_column(lg.STATUS).is_null().sum()),
        already_sent=sent.get_column(EVENT_ID).n_unique(),
        changed_after_send=changed,
        uncertain=uncertain.select(EVENT_ID, SENT_ID, ID, TS),
    )


def rejections(rejected: pl.DataFrame, braze: list[tuple[str, str]], ready: pl.DataFrame,
               run_id: str, at: str) -> pl.DataFrame:  # fmt: skip
    """The run's rejection table: rows our rules set aside and objects Braze refused (its reason
    prefixed ``braze:``), one row per event_id and rule."""
    refused = pl.DataFrame(
        {SENT_ID: [b[0] for b in braze], "rule": [f"braze: {b[1]}" for b in braze]},
        schema={SENT_ID: pl.String, "rule": pl.String},
    )
    by_braze = refused.join(ready.select(EVENT_ID, SENT_ID, ID), on=SENT_ID, how="left").select(
        EVENT_ID, pl.col(ID).alias("identifier"), "rule"
    )
    both = pl.concat([rejected.cast(REJECTION_SCHEMA), by_braze.cast(REJECTION_SCHEMA)])
    return both.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(at).alias("rejected_at"))
