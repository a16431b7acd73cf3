"""Matching two sorted, unique id columns: which rows of each side have no partner on the other.

The planner keeps every table and state version sorted by ``__id``, so the users only one side
has are found by merging the two columns (no hashing, no join); large inputs are merged a range
of ids at a time on several threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from amp_braze.braze.identifiers import ID

ROW = "__row"
MERGE_PIECE_ROWS = 1_000_000  # below this, one merge on one thread


@dataclass(frozen=True)
class Match:
    """Positions (row numbers) of the ids only one side has."""

    new_rows: pl.Series  # in the wanted table: users Braze has not had from us
    gone_rows: pl.Series  # in the state: users no longer wanted

    @property
    def aligned(self) -> bool:
        return not self.new_rows.len() and not self.gone_rows.len()


def row_numbers(n: int = 0) -> pl.Series:
    """Row numbers 0..n-1 (none by default)."""
    return pl.int_range(n, dtype=pl.UInt32, eager=True).alias(ROW)


def match_sorted_ids(left: pl.Series, right: pl.Series) -> Match:
    """Match two sorted, unique id columns by merging them (no hashing, no join).

    On most days the columns are equal and this is one comparison. Large inputs are cut into
    ranges of ids (cut points from ``left``, found in ``right`` by binary search) merged on
    separate threads: each range's ids can only pair with ids in the same range."""
    if left.len() == right.len() and left.equals(right):
        return Match(row_numbers(), row_numbers())
    if not right.len() or not left.len():
        return Match(row_numbers(left.len()), row_numbers(right.len()))
    threads = max(2, pl.thread_pool_size())  # smaller merges are faster even on one core
    pieces = max(1, min(threads, (left.len() + right.len()) // MERGE_PIECE_ROWS))
    if pieces == 1:
        return _merge_match(left, right)
    cuts = [left.len() * i // pieces for i in range(1, pieces)]
    l_bounds = [0, *cuts, left.len()]
    r_bounds = [0, *right.search_sorted(left.gather(cuts)).to_list(), right.len()]
    ranges = [(l_bounds[i], l_bounds[i + 1], r_bounds[i], r_bounds[i + 1]) for i in range(pieces)]

    def one(r: tuple[int, int, int, int]) -> Match:
        m = _merge_match(left.slice(r[0], r[1] - r[0]), right.slice(r[2], r[3] - r[2]))
        return Match(m.new_rows + r[0], m.gone_rows + r[2])

    with ThreadPoolExecutor(pieces) as pool:  # polars releases the GIL while it merges
        parts = list(pool.map(one, ranges))
    return Match(pl.concat([p.new_rows for p in parts]), pl.concat([p.gone_rows for p in parts]))


def _merge_match(left: pl.Series, right: pl.Series) -> Match:
    side = "__right"
    merged = pl.DataFrame({ID: left, side: False}).merge_sorted(
        pl.DataFrame({ID: right, side: True}), key=ID
    )
    pair_next = (pl.col(ID) == pl.col(ID).shift(-1)) & (pl.col(side) != pl.col(side).shift(-1))
    hit = merged.select(
        pl.col(side), (pair_next | pair_next.shift(1)).fill_null(False).alias("hit")
    )
    r = hit.get_column(side)
    unmatched = ~hit.get_column("hit")
    return Match(
        unmatched.filter(~r).arg_true().cast(pl.UInt32).alias(ROW),
        unmatched.filter(r).arg_true().cast(pl.UInt32).alias(ROW),
    )
