"""Folding the sync journal into a state table: what Braze holds after a run's entries.

An **intent** (written before a window of plan rows is sent) says which attributes of which users
went out; until a **checkpoint** (written after Braze accepted rows) confirms them, those values
are *uncertain*: Braze may hold the old value or the new one. Per user and attribute the last
entry that sent it decides. When an attribute changed type (``comparable_types``: text where
it was numbers, a datetime where it was a date), old values of the other type are dropped and
marked uncertain (``__u_<attribute>``) rather than silently cast, so the next plan sends the
wanted value whatever it is.
How entries are stored, numbered and committed is ``amp_braze.sync.state``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.braze.payload import comparable_types
from amp_braze.braze.plan_columns import FLAG, flag
from amp_braze.sorted_rows import positions, put_columns
from amp_braze.sync.plan import uncertain

INTENT, CHECKPOINT = "intent", "checkpoint"
_KNOWN = "__k_"  # per attribute in a journal entry: the flagged value is what Braze holds
_SEQ = "__seq"


def state_attributes(columns: list[str]) -> list[str]:
    """The attribute columns of a state table (not the id, not the uncertainty marks)."""
    return [c for c in columns if not c.startswith("__")]


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str  # INTENT or CHECKPOINT
    frame: pl.DataFrame  # __id + flags (+ values for a checkpoint)


def _target_dtypes(base: pl.DataFrame, entries: list[Entry]) -> dict[str, pl.DataType]:
    """Per attribute, the type the folded column takes: the newest checkpoint's (what the SQL
    returns now); numbers of different widths take their common supertype."""
    out: dict[str, pl.DataType] = {a: base.schema[a] for a in state_attributes(base.columns)}
    for e in entries:  # oldest first: newer types overrule older ones
        if e.kind != CHECKPOINT:
            continue
        for a in state_attributes(e.frame.columns):
            new, old = e.frame.schema[a], out.get(a)
            if new == pl.Null:
                out.setdefault(a, new)
            elif old is None or old == pl.Null or not comparable_types(old, new):
                out[a] = new
            elif old != new:
                out[a] = _supertype(old, new)
    return out


def _supertype(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    """The type both widen to (Int32 and Float64: Float64). Series cannot be concatenated
    relaxed, frames can."""
    frames = [pl.DataFrame(schema={"v": t}) for t in (a, b)]
    return pl.concat(frames, how="vertical_relaxed").schema["v"]


def _entry_rows(e: Entry, attrs: list[str], target: dict[str, pl.DataType]) -> pl.DataFrame:
    """One entry as rows of the fold: per attribute its value, whether it was sent (flag) and
    whether the value is known to be what Braze holds (a checkpoint's value of a compatible type)."""
    cols: list[pl.Expr] = [pl.col(ID)]
    for a in attrs:
        dtype = target[a]
        sent = pl.col(flag(a)).fill_null(False) if flag(a) in e.frame.columns else pl.lit(False)
        has = e.kind == CHECKPOINT and a in e.frame.columns
        known = has and comparable_types(e.frame.schema[a], dtype)
        value = pl.col(a).cast(dtype) if known else pl.lit(None, dtype)
        cols += [value.alias(a), sent.alias(flag(a)), pl.lit(known).alias(f"{_KNOWN}{a}")]
    return e.frame.select(cols).with_columns(pl.lit(e.seq, pl.Int64).alias(_SEQ))


def fold_journal(state: pl.DataFrame | None, entries: list[Entry]) -> pl.DataFrame:
    """Apply journal entries, in order, to a state table.

    Per user and attribute, the last entry that sent it decides: a checkpoint sets the value it
    recorded and clears any uncertainty; an intent (sent, outcome unknown) leaves the last known
    value and marks it uncertain. When an attribute's type changed (the SQL now returns text where
    it returned numbers), old values of the other type are dropped and marked uncertain, so the next
    plan sends the new ones. Uncertainty columns are kept only where some user has one."""
    base = state if state is not None else pl.DataFrame({ID: pl.Series([], dtype=pl.String)})
    entries = sorted(entries, key=lambda e: e.seq)
    if not entries:
        return base
    target = _target_dtypes(base, entries)
    attrs = list(
        dict.fromkeys(
            state_attributes(base.columns)
            + [c[len(FLAG) :] for e in entries for c in e.frame.columns if c.startswith(FLAG)]
        )
    )
    for a in attrs:
        target.setdefault(a, pl.Null())
    touched = [a for a in attrs if any(flag(a) in e.frame.columns for e in entries)]
    sent = pl.concat([_entry_rows(e, touched, target) for e in entries]).sort(_SEQ)
    latest = sent.group_by(ID, maintain_order=True).agg(
        [
            pl.col(a).filter(pl.col(flag(a)) & pl.col(f"{_KNOWN}{a}")).last().alias(a)
            for a in touched
        ]
        + [
            pl.col(f"{_KNOWN}{a}").filter(pl.col(flag(a))).last().alias(f"{_KNOWN}{a}")
            for a in touched
        ]
        + [(pl.col(flag(a)) & pl.col(f"{_KNOWN}{a}")).any().alias(f"__set_{a}") for a in touched]
    )
    # The base is sorted by id and large, the entries small: the users it already has are found
    # by binary search and their values written in place (only the columns entries touch are
    # copied); users new to it are merged in. No join or sort of the large table.
    if not base.get_column(ID).is_sorted():
        base = base.sort(ID)
    latest = latest.sort(ID)
    found, at = positions(base.get_column(ID), latest.get_column(ID))
    hit = latest.filter(found)
    fresh = latest.filter(~found)
    olds = [_old_value(base.schema, a, target[a]) for a in attrs]
    folded = base.select(
        pl.col(ID),
        *(old.alias(a) for a, (old, _) in zip(attrs, olds, strict=True)),
        *(mark.alias(uncertain(a)) for a, (_, mark) in zip(attrs, olds, strict=True)),
    )
    edits = {}
    for a in touched:
        # Per user, the last checkpoint that sent a value sets it; the last entry that sent the
        # attribute at all says whether Braze surely holds it (else it stays uncertain).
        was_set = hit.get_column(f"__set_{a}").fill_null(False)
        last_known = hit.get_column(f"{_KNOWN}{a}")
        told = last_known.is_not_null()
        edits[a] = (at.filter(was_set), hit.get_column(a).filter(was_set))
        doubts = ~last_known.filter(told)
        if doubts.any() or folded.get_column(uncertain(a)).any():  # else certain before and after
            edits[uncertain(a)] = (at.filter(told), doubts)
    folded = put_columns(folded, edits)
    # Users no version has had: nothing old to keep.
    new_rows = fresh.select(
        pl.col(ID),
        *(pl.col(a).alias(a) if a in touched else pl.lit(None, target[a]).alias(a) for a in attrs),
        *(
            (~pl.col(f"{_KNOWN}{a}")).fill_null(False).alias(uncertain(a))
            if a in touched
            else pl.lit(False).alias(uncertain(a))
            for a in attrs
        ),
    )
    # Uncertainty columns are kept only where some user has one (dropped before the merge).
    marks = [f.select(pl.col(uncertain(a)).any() for a in attrs).row(0) for f in (folded, new_rows)]
    folded = folded.drop(uncertain(a) for a, *m in zip(attrs, *marks, strict=True) if not any(m))
    if fresh.height:
        new_rows = new_rows.select(folded.columns).cast(dict(folded.schema))
        folded = folded.lazy().merge_sorted(new_rows.lazy(), key=ID).collect()
    return folded


def _old_value(schema: pl.Schema, a: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """An attribute's value in the base, in the folded type, and whether it is uncertain. When its
    type changed, old values of the other type are dropped and marked uncertain: Braze holds
    them, the state can't."""
    if a not in schema:
        return pl.lit(None, dtype), pl.lit(False)
    compatible = comparable_types(schema[a], dtype)
    old = pl.col(a).cast(dtype) if compatible else pl.lit(None, dtype)
    lost = pl.lit(False) if compatible else pl.col(a).is_not_null()
    mark = pl.col(uncertain(a)).cast(pl.Boolean) if uncertain(a) in schema else pl.lit(False)
    return old, (mark.fill_null(False) | lost).fill_null(False)
