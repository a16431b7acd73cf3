"""The sync state: folding journal entries, versions written once."""

from __future__ import annotations

import polars as pl

from amp_braze.plan_format import flag
from amp_braze.storage import Storage
from amp_braze.sync.state import CHECKPOINT, Entry, SyncState, fold_journal


def test_fold_takes_the_latest_flagged_value():
    state = pl.DataFrame({"__id": ["a", "b"], "tier": ["gold", "silver"], "ltv": [1.0, 2.0]})
    ck1 = pl.DataFrame(
        {
            "__id": ["a", "c"],
            "tier": ["bronze", "gold"],
            flag("tier"): [True, True],
            "ltv": [None, 5.0],
            flag("ltv"): [True, True],
        }
    )
    ck2 = pl.DataFrame(
        {
            "__id": ["a"],
            "tier": ["x"],
            flag("tier"): [False],
            "email": ["a@x.io"],
            flag("email"): [True],
        }
    )
    out = fold_journal(state, [Entry(1, CHECKPOINT, ck1), Entry(2, CHECKPOINT, ck2)])
    assert out.to_dicts() == [
        {"__id": "a", "tier": "bronze", "ltv": None, "email": "a@x.io"},
        {"__id": "b", "tier": "silver", "ltv": 2.0, "email": None},
        {"__id": "c", "tier": "gold", "ltv": 5.0, "email": None},
    ]


def test_state_versions_are_never_rewritten_and_racing_commits_both_land(tmp_path):
    storage = Storage(tmp_path)
    a, b = SyncState(storage, "dest"), SyncState(storage, "dest")
    a.write_checkpoint(pl.DataFrame({"__id": ["u1"], "t": [1], flag("t"): [True]}))
    assert a.commit().version == 1
    (first,) = (tmp_path / "sync/dest/state/v000001").glob("part-*.parquet")
    first_bytes = first.read_bytes()
    a.write_checkpoint(pl.DataFrame({"__id": ["u2"], "t": [2], flag("t"): [True]}))
    b.write_checkpoint(pl.DataFrame({"__id": ["u1"], "t": [3], flag("t"): [True]}))
    # b's manifest for v2 appears first (a racing commit); a must notice and land as v3.
    assert b.commit().version == 2
    assert a.commit().version == 2  # nothing pending any more: a sees b's version holds both
    view = a.current()
    assert view.pending == [] and dict(view.table.select("__id", "t").iter_rows()) == {
        "u1": 3,
        "u2": 2,
    }
    assert first.read_bytes() == first_bytes
    storage.write_bytes("sync/dest/state/v000003/part-00000.parquet", b"half-written, no manifest")
    assert a.current().version == 2  # a version without a manifest does not exist
