"""Identity merges reaching Braze: when two people's amp_ids became one, the absorbed profile is
merged into the surviving one (``/users/merge``) instead of lingering as a second profile.

A merge is due for a sync when the absorbed id is still in its state (Braze has that profile) and
no longer in what it wants (the attributes were rebuilt from the merged identity). When the
surviving id is not in Braze yet, the absorbed profile is renamed to it instead
(``/users/external_ids/rename``), keeping its history. Merges are idempotent here: an absorbed
profile that no longer exists is skipped by Braze, so a crash between sending and recording only
sends them again. The state then follows Braze's merge rules: the kept user keeps the values it
has, takes the absorbed user's where it has none (uncertain where several absorbed users differ).
"""

from __future__ import annotations

import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.sync.plan import UNCERTAIN, uncertain

ABSORBED, KEPT = "absorbed", "kept"


def due(
    merges: pl.DataFrame, state_ids: pl.Series, wanted_ids: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(merges, renames) this sync must send, each as absorbed -> kept. ``wanted_ids``: every
    id of the attributes table the sync reads (before any audience filter)."""
    live = merges.filter(
        pl.col(ABSORBED).is_in(state_ids.implode()) & ~pl.col(ABSORBED).is_in(wanted_ids.implode())
    )
    kept_known = pl.col(KEPT).is_in(state_ids.implode())
    renames = live.filter(~kept_known).sort(ABSORBED).unique(KEPT, keep="first").sort(ABSORBED)
    to_merge = live.join(renames, on=ABSORBED, how="anti").sort(ABSORBED)
    return to_merge, renames


def apply_merges(state: pl.DataFrame, merges: pl.DataFrame, renames: pl.DataFrame) -> pl.DataFrame:
    """The state after Braze applied the renames, then the merges."""
    if renames.height:
        new_id = dict(zip(renames[ABSORBED], renames[KEPT], strict=True))
        state = state.with_columns(pl.col(ID).replace(new_id)).sort(ID)
    if merges.height == 0:
        return state
    attrs = [c for c in state.columns if c != ID and not c.startswith(UNCERTAIN)]
    absorbed = (
        state.join(merges, left_on=ID, right_on=ABSORBED)
        .sort(ID)
        .group_by(KEPT, maintain_order=True)
        .agg(
            [pl.col(a).drop_nulls().first().alias(a) for a in attrs]
            + [pl.col(a).drop_nulls().n_unique().alias(f"__n_{a}") for a in attrs]
        )
        .rename({KEPT: ID})
    )
    rest = state.join(merges, left_on=ID, right_on=ABSORBED, how="anti").join(
        absorbed.select(ID), on=ID, how="anti"
    )
    joined = state.join(absorbed, on=ID, how="inner", suffix="__absorbed")  # the kept users
    exprs = []
    for a in attrs:
        mine, theirs = pl.col(a), pl.col(f"{a}__absorbed")
        exprs.append(pl.coalesce(mine, theirs).alias(a))
        doubt = mine.is_null() & (pl.col(f"__n_{a}") > 1)
        was = pl.col(uncertain(a)) if uncertain(a) in state.columns else pl.lit(False)
        exprs.append((was.fill_null(False) | doubt).alias(uncertain(a)))
    merged = joined.select([pl.col(ID), *exprs])
    out = pl.concat([rest, merged], how="diagonal_relaxed")
    marks = [uncertain(a) for a in attrs]
    out = out.with_columns(pl.col(m).fill_null(False) for m in marks)
    unused = [m for m in marks if m not in state.columns and not out.get_column(m).any()]
    return out.drop(unused).sort(ID)
