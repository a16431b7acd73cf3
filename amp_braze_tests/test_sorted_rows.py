"""Replacing a few rows of a large sorted table in place equals filtering them out and merging."""

from __future__ import annotations

import random

import polars as pl
import pytest

from amp_braze import sorted_rows
from amp_braze.sorted_rows import replace_rows


def _rows(keys: list[str], seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "k": keys,
            "name": [rng.choice(["a", "b", None]) for _ in keys],
            "n": [rng.randrange(100) for _ in keys],
            "tags": [[rng.choice("xyz")] if rng.random() < 0.8 else None for _ in keys],
            "when": [rng.choice([None, 1, 2]) for _ in keys],
        },
        schema_overrides={
            "when": pl.Datetime("us", "UTC"),
            "tags": pl.List(pl.String),
            "name": pl.String,
        },
    )


@pytest.mark.parametrize("stored", [False, True])
def test_replace_rows_equals_filter_and_merge(stored, monkeypatch):
    """In memory, and as a stored table read in slices (of 97 rows here)."""
    monkeypatch.setattr(sorted_rows, "SLICE_ROWS", 97)
    rng = random.Random(3)
    table = _rows(sorted(f"u{i:05d}" for i in range(0, 5000, 2)), 1)
    for case in range(12):
        # Updates of existing users, arrivals (odd keys, before the first and after the last),
        # and users who leave; sometimes only one kind.
        updates = rng.sample(table["k"].to_list(), rng.choice([0, 1, 300]))
        arrivals = rng.sample([f"u{i:05d}" for i in range(1, 5000, 2)], rng.choice([0, 1, 200]))
        arrivals += ["a", "z"] if case % 3 == 0 else []
        gone = rng.sample(table["k"].to_list(), rng.choice([0, 1, 150])) + ["nobody"]
        new = _rows(updates + arrivals, case).sample(fraction=1.0, shuffle=True, seed=case)
        out, taken = replace_rows(table.lazy() if stored else table, "k", new, pl.Series(gone))
        expected = (
            table.filter(~pl.col("k").is_in(gone + updates + arrivals))
            .vstack(new.sort("k"))
            .sort("k")
        )
        assert out.equals(expected), case
        assert taken.equals(table.filter(pl.col("k").is_in(gone + updates + arrivals))), case
        assert out["k"].is_sorted() and out.height == expected.height
    assert table.equals(_rows(sorted(f"u{i:05d}" for i in range(0, 5000, 2)), 1))  # untouched


def test_replace_rows_of_an_empty_table():
    empty = _rows(["x"], 0).head(0)
    new = _rows(["b", "a"], 1)
    assert replace_rows(empty.lazy(), "k", new)[0].equals(new.sort("k"))
    assert replace_rows(empty, "k", new.head(0), pl.Series(["x"]))[0].equals(empty)
