"""An attribute whose type changes: the planner and the sync state apply one rule
(``comparable_types``), so what the plan resends and what the fold keeps agree."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from amp_braze.braze.identifiers import ID
from amp_braze.braze.plan_columns import flag
from amp_braze.config import BrazeConfig
from amp_braze.sync.journal_fold import CHECKPOINT, Entry, fold_journal
from amp_braze.sync.plan import plan_delta, uncertain

DAYS = [dt.date(2026, 1, 2), dt.date(2026, 3, 4)]
MIDNIGHTS = [dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) for d in DAYS]
CASES = [  # (old type's values, new type's values, comparable)
    (pl.Series(DAYS, dtype=pl.Date), pl.Series(MIDNIGHTS, dtype=pl.Datetime("us", "UTC")), False),
    (pl.Series(MIDNIGHTS, dtype=pl.Datetime("us", "UTC")), pl.Series(DAYS, dtype=pl.Date), False),
    (pl.Series([1, 2], dtype=pl.Int64), pl.Series(["1", "2"], dtype=pl.String), False),
    (pl.Series([1, 2], dtype=pl.Int32), pl.Series([1.0, 2.0], dtype=pl.Float64), True),
    (
        pl.Series(MIDNIGHTS, dtype=pl.Datetime("us", "UTC")),
        pl.Series(MIDNIGHTS, dtype=pl.Datetime("ms", "UTC")),
        True,
    ),
]
IDS = ["a", "b"]


@pytest.mark.parametrize(("old", "new", "comparable"), CASES)
def test_the_plan_resends_every_value_when_the_type_is_not_comparable(old, new, comparable):
    state = pl.DataFrame({ID: IDS, "when": old})
    wanted = pl.DataFrame({"external_id": IDS, ID: IDS, "when": new})
    plan = plan_delta(wanted, state, BrazeConfig(instance="US-03"), [])
    # The same instants or numbers: nothing to send when the types compare, everyone otherwise.
    assert plan.table.filter(pl.col(flag("when"))).get_column(ID).to_list() == (
        [] if comparable else IDS
    )


@pytest.mark.parametrize(("old", "new", "comparable"), CASES)
def test_the_fold_keeps_old_values_only_when_the_type_is_comparable(old, new, comparable):
    """A run that sent only user a's new-typed value: user b still holds the old one in Braze.
    Of a comparable type it is kept, as the new type; else it is dropped and marked uncertain,
    so the next plan sends it (a Date is not silently cast to midnight, nor a time to its day).
    Before: the fold kept dates and times as one kind, and raised on numbers of another width."""
    state = pl.DataFrame({ID: IDS, "when": old})
    accepted = pl.DataFrame({ID: ["a"], "when": new.head(1), flag("when"): [True]})
    out = fold_journal(state, [Entry(1, CHECKPOINT, accepted)])
    b = out.filter(pl.col(ID) == "b").row(0, named=True)
    if comparable:
        assert b["when"] == new[1] and uncertain("when") not in out.columns
    else:
        assert out.schema["when"] == new.dtype
        assert b["when"] is None and b[uncertain("when")] is True
    assert out.filter(pl.col(ID) == "a").get_column("when").to_list() == [new[0]]
