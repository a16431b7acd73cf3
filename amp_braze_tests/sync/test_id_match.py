"""The sorted-id matcher: exactly the rows without a partner on the other side, whether merged in
one piece or in ranges on threads."""

from __future__ import annotations

import random

import polars as pl
import pytest

from amp_braze.sync import id_match
from amp_braze.sync.id_match import match_sorted_ids


def _ids(rng: random.Random, n: int) -> list[str]:
    return sorted({f"u{rng.randrange(10 * n):08d}" for _ in range(n)})


@pytest.mark.parametrize("piece_rows", [1_000_000, 37])  # one merge; many ranges on threads
def test_match_sorted_ids_finds_exactly_the_unpartnered_rows(monkeypatch, piece_rows):
    monkeypatch.setattr(id_match, "MERGE_PIECE_ROWS", piece_rows)
    rng = random.Random(5)
    cases = [(0, 0), (0, 5), (5, 0), (200, 200), (1000, 300), (300, 1000), (2000, 2000)]
    for n_left, n_right in cases:
        pool = _ids(rng, max(n_left, n_right) * 2 + 1)
        left = sorted(rng.sample(pool, min(n_left, len(pool))))
        right = sorted(rng.sample(pool, min(n_right, len(pool))))
        m = match_sorted_ids(pl.Series(left, dtype=pl.String), pl.Series(right, dtype=pl.String))
        in_left, in_right = set(left), set(right)
        assert m.new_rows.to_list() == [i for i, x in enumerate(left) if x not in in_right]
        assert m.gone_rows.to_list() == [i for i, x in enumerate(right) if x not in in_left]
    same = pl.Series(["a", "b", "c"])
    assert match_sorted_ids(same, same).aligned
