"""The agreement patterns of a training block's pairs, counted: what EM is trained on.

Each pair's level per comparison is decided by Splink's own SQL condition for it, on DuckDB;
pairs that agree on the block's columns are formed there and counted by pattern, records sampled
first so that about ``MAX_EM_PAIRS`` pairs are compared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from amp_braze.identity.linkage import SPLINK_ROW_ID
from amp_braze.identity.records import SOURCE

MAX_EM_PAIRS = 2_000_000  # blocked pairs per EM session (records are sampled down to this)


def blocked_pairs(records: pl.DataFrame, rule: tuple[str, ...]) -> int:
    """Pairs an equality rule makes: records that agree on every column, none of them null."""
    sizes = records.drop_nulls(list(rule)).group_by(list(rule)).len().get_column("len")
    return int((sizes.cast(pl.Int64) * (sizes.cast(pl.Int64) - 1) // 2).sum())


def agreement_patterns(
    records: pl.DataFrame,
    model: dict[str, Any],
    rule: tuple[str, ...],
    seed: int,
    one_per_person: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray, int]:
    """The agreement patterns (gamma per comparison, in the model's order) of the pairs ``rule``
    makes, with their counts; records are sampled so that about ``MAX_EM_PAIRS`` pairs are
    compared. Each level is decided by Splink's own SQL condition for it, on DuckDB. Two records
    of a feed with one record per person are never the same person: such pairs could teach m
    only what non-matches look like, so they are left out."""
    import duckdb

    pairs = blocked_pairs(records, rule)
    if pairs > MAX_EM_PAIRS:
        records = records.sample(fraction=math.sqrt(MAX_EM_PAIRS / pairs), seed=seed, shuffle=False)
    width = len(model["comparisons"])
    if blocked_pairs(records, rule) == 0:
        return np.zeros((0, width), np.int64), np.zeros(0), 0
    cols = [c for c in records.columns if c != SPLINK_ROW_ID]
    both = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in cols)
    on = " AND ".join(f'l."{c}" = r."{c}"' for c in rule)
    if one_per_person:
        feeds = ", ".join("'" + f.replace("'", "''") + "'" for f in one_per_person)
        on += f' AND NOT (l."{SOURCE}" = r."{SOURCE}" AND l."{SOURCE}" IN ({feeds}))'
    cases = []
    for i, comp in enumerate(model["comparisons"]):
        levels = comp["comparison_levels"]
        nonnull = [lv for lv in levels if not lv.get("is_null_level")]
        whens = [f"WHEN {lv['sql_condition']} THEN -1" for lv in levels if lv.get("is_null_level")]
        for g, lv in zip(range(len(nonnull) - 1, -1, -1), nonnull, strict=True):
            if lv["sql_condition"].strip().upper() != "ELSE":
                whens.append(f"WHEN {lv['sql_condition']} THEN {g}")
        cases.append(f"CASE {' '.join(whens)} ELSE 0 END AS g{i}")
    sql = (
        f"WITH pairs AS (SELECT {both} FROM records AS l JOIN records AS r "
        f'ON {on} AND l."{SPLINK_ROW_ID}" < r."{SPLINK_ROW_ID}") '
        f"SELECT {', '.join(cases)}, count(*) AS n FROM pairs GROUP BY ALL"
    )
    con = duckdb.connect()
    try:
        con.register("records", records.to_arrow())
        table = pl.from_arrow(con.sql(sql).to_arrow_table())
    finally:
        con.close()
    assert isinstance(table, pl.DataFrame)
    gammas = table.select([f"g{i}" for i in range(width)]).to_numpy().astype(np.int64)
    counts = table.get_column("n").to_numpy().astype(float)
    return gammas.reshape(-1, width), counts, int(counts.sum())
