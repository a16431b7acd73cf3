"""A stream's query result to what goes out. Every row is keyed and checked against the ledger
first (cheap: hashes of the ids); only rows Braze has never been sent (and, with
``resend_uncertain``, those in doubt) pass their type's rules and become /users/track objects,
each under the id the ledger records; the rest are counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.identifiers import ID
from amp_braze.config import BrazeConfig
from amp_braze.config.events import EventStream
from amp_braze.events import ledger as lg
from amp_braze.events import shape, types
from amp_braze.events.shape import EVENT_ID, HASH, RULE, STATE, TS
from amp_braze.events.types import POINTS, SENT_ID

REJECTION_SCHEMA = {EVENT_ID: pl.String, "identifier": pl.String, "rule": pl.String}
NEW, UNSURE, SPLIT = "new", "uncertain", "split"
SENT = "__sent"


@dataclass
class Prepared:
    ready: pl.DataFrame  # to send: event_id, __sent_id, __hash, __obj, __points, __id, __time
    rejected: pl.DataFrame  # event_id, identifier, rule
    rows: int  # the query's rows
    array: str  # the /users/track array they go in
    new: int = 0  # ready rows never sent
    already_sent: int = 0  # rows (by event_id) Braze has
    changed_after_send: int = 0  # ... whose row changed since
    uncertain: pl.DataFrame = field(default_factory=pl.DataFrame)  # event_id, __id, __time


class LedgerIndex:
    """The ledger's ids as two independent 64-bit hashes: a join on one, checked by the other,
    finds a row's status at the cost of integers, not strings (two ids would have to agree on
    128 bits to be taken for one another)."""

    def __init__(self, view: lg.LedgerView):
        self.basis_ok = view.hash_basis == lg.HASH_BASIS
        self.frame = view.frame.select(
            pl.col(lg.EID).hash(1).alias("__h1"),
            pl.col(lg.EID).hash(2).alias("__h2_held"),
            (pl.col(lg.STATUS) == lg.SENT).alias("__sent"),
            pl.col(lg.HASH).alias("__held_hash"),
        ).collect()

    def statuses(self, ids: pl.Series) -> pl.DataFrame:
        """Per id, in order: ``__sent`` (true: Braze has it; false: in doubt; null: not in the
        ledger) and the row hash it was sent with."""
        keys = pl.DataFrame({"__i": ids}).select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("__row"),
            pl.col("__i").hash(1).alias("__h1"),
            pl.col("__i").hash(2).alias("__h2"),
        )
        same = pl.col("__h2") == pl.col("__h2_held")
        j = (
            keys.lazy()
            .join(self.frame.lazy(), on="__h1", how="left")
            .select(
                "__row",
                pl.when(same).then(pl.col("__sent")).alias(SENT),
                pl.when(same).then(pl.col("__held_hash")).alias("__held_hash"),
            )
            .collect()
        )
        if j.height != keys.height:  # an id matched on __h1 alone, besides its own: drop it
            j = j.sort(pl.col(SENT).is_null()).unique("__row", keep="first")
        return j.sort("__row").select(SENT, "__held_hash")


def _precheck(keyed: pl.DataFrame, index: LedgerIndex, stream: EventStream):
    """(rows to validate with their __state, rows sent, rows changed since, rows in doubt).

    A purchase of over 100 units went out as parts (``<id>:part-1``, ...): its row is held once
    its first part is, whatever its quantity now (a row that changed is never sent again)."""
    st = index.statuses(keyed.get_column(EVENT_ID))
    if stream.type == er.PURCHASE:
        first = index.statuses(keyed.get_column(EVENT_ID) + f"{types.PART_SEPARATOR}1")
        parts = first.get_column(SENT).is_not_null()
        st = pl.DataFrame(
            {
                SENT: st.get_column(SENT).zip_with(~parts, first.get_column(SENT)),
                "__held_hash": st.get_column("__held_hash").zip_with(
                    ~parts, first.get_column("__held_hash")
                ),
                "__parts": parts,
            }
        )
    else:
        st = st.with_columns(pl.lit(False).alias("__parts"))
    keyed = keyed.with_columns(st)
    held = pl.col(SENT)
    keyed = keyed.with_columns(
        pl.when(held.is_null())
        .then(pl.lit(NEW))
        .when(pl.col("__parts"))
        .then(pl.lit(SPLIT))
        .when(~held)
        .then(pl.lit(UNSURE))
        .alias(STATE)
    )
    sent = keyed.filter(held)  # a split row: by its first part
    changed = sent.filter(pl.col("__held_hash") != pl.col(HASH)).height if index.basis_ok else 0
    doubt = keyed.filter(pl.col(STATE) == UNSURE)
    go = pl.col(STATE) == NEW
    if stream.resend_uncertain:  # with the parts of split rows, checked one by one (_parts)
        go = go | pl.col(STATE).is_in([UNSURE, SPLIT])
    return keyed.filter(go).drop(SENT, "__held_hash", "__parts"), sent.height, changed, doubt


def prepare(
    df: pl.DataFrame,
    stream: EventStream,
    dest: BrazeConfig,
    now: datetime,
    view: lg.LedgerView | None = None,
) -> Prepared:
    """The rows of a stream's query Braze has never been sent (all rows without a ``view``),
    validated by the stream's type (``types``) and encoded."""
    identifier = dest.identifier
    shape.required_columns(df, identifier, stream.stream)
    rows = df.height
    keyed = shape.keyed(df)
    index = LedgerIndex(view) if view is not None else None
    sent = changed = 0
    doubt = keyed.clear()
    if index is not None:
        keyed, sent, changed, doubt = _precheck(keyed, index, stream)
    else:
        keyed = keyed.with_columns(pl.lit(NEW).alias(STATE))
    df = shape.prepared(keyed, identifier)
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
        STATE,
        types.object_expr(t, identifier, dest.update_existing_only),
        t.points.alias(POINTS),
        ID,
        TS,
    )
    if index is not None and (ready.get_column(STATE) == SPLIT).any():
        ready = _parts(ready, index)
    doubt_rows = shape.prepared(doubt, identifier).select(EVENT_ID, ID, TS) if doubt.height else (
        pl.DataFrame(schema={EVENT_ID: pl.String, ID: pl.String, TS: pl.Datetime("us", "UTC")})
    )  # fmt: skip
    return Prepared(
        ready=ready,
        rejected=rejected,
        rows=rows,
        array=t.array,
        new=int((ready.get_column(STATE) == NEW).sum()),
        already_sent=sent,
        changed_after_send=changed,
        uncertain=doubt_rows,
    )


def _parts(ready: pl.DataFrame, index: LedgerIndex) -> pl.DataFrame:
    """The parts of split purchases sent before, resent only where in doubt: a part Braze has,
    or one the ledger never held (the row's quantity grew since), is left out."""
    st = index.statuses(ready.get_column(SENT_ID))
    keep = (pl.col(STATE) != SPLIT) | (pl.col(SENT) == False)  # noqa: E712 (null: not held)
    return ready.with_columns(st).filter(keep).drop(SENT, "__held_hash")


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
