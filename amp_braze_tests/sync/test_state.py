"""The sync state: folding journal entries, versions written once."""

from __future__ import annotations

import random

import polars as pl

from amp_braze.braze.plan_columns import flag
from amp_braze.storage import Storage
from amp_braze.sync.journal_fold import CHECKPOINT, INTENT, Entry, fold_journal
from amp_braze.sync.plan import uncertain
from amp_braze.sync.state import SyncState


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


def _fold_row_by_row(state: pl.DataFrame, entries: list[Entry], attrs: list[str]) -> list[dict]:
    """The rule, one user and attribute at a time: in journal order, a checkpoint that sent an
    attribute sets its value and makes it certain; an intent that sent it makes it uncertain."""
    users = {r["__id"]: dict(r) for r in state.to_dicts()}
    for e in sorted(entries, key=lambda e: e.seq):
        for r in e.frame.to_dicts():
            user = users.setdefault(r["__id"], {"__id": r["__id"]})
            for a in attrs:
                if r.get(flag(a)):
                    if e.kind == CHECKPOINT:
                        user[a], user[uncertain(a)] = r[a], False
                    else:
                        user[uncertain(a)] = True
    marked = [a for a in attrs if any(u.get(uncertain(a)) for u in users.values())]
    cols = ["__id", *attrs, *(uncertain(a) for a in marked)]
    return [{c: users[i].get(c, False if c.startswith("__") else None) for c in cols}
            for i in sorted(users)]  # fmt: skip


def test_fold_equals_the_rule_applied_row_by_row():
    """Many users, text/number/list attributes, intents and checkpoints over random users (some
    new), some attributes not sent: the fold (binary search and writes in place) gives what the
    rule gives one user at a time. Before: a join of the entries onto the whole state."""
    rng = random.Random(5)
    attrs = ["tier", "ltv", "segments"]

    def value(a: str, i: int):
        return {"tier": f"t{i % 7}", "ltv": float(i % 11), "segments": [f"s{i % 3}"]}[a]

    ids = sorted(f"u{i:04d}" for i in range(0, 3000, 3))
    state = pl.DataFrame(
        {"__id": ids, **{a: [value(a, i) for i in range(len(ids))] for a in attrs}}
    ).with_columns(pl.Series(uncertain("ltv"), [i % 50 == 0 for i in range(len(ids))]))
    entries = []
    for seq in range(1, 9):
        some = sorted(rng.sample([f"u{i:04d}" for i in range(3000)], 400))
        frame = {"__id": some}
        for a in attrs:
            if rng.random() < 0.8:
                frame[flag(a)] = [rng.random() < 0.7 for _ in some]
                if seq % 2 == 0:
                    frame[a] = [value(a, rng.randrange(1000)) if rng.random() < 0.9 else None
                                for _ in some]  # fmt: skip
        df = pl.DataFrame(frame, schema_overrides={"segments": pl.List(pl.String)})
        entries.append(Entry(seq, CHECKPOINT if seq % 2 == 0 else INTENT, df))
    out = fold_journal(state, entries)
    expected = _fold_row_by_row(state, entries, attrs)
    assert out.columns == list(expected[0])
    assert out.to_dicts() == expected
    assert out.height == len(expected) > state.height


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


def test_a_state_stored_by_earlier_releases_still_loads(tmp_path):
    """The layout is part of the contract: a version written by hand the way earlier releases
    wrote it (these names, a compact manifest) is read, folded and committed past."""
    import re

    import orjson

    storage = Storage(tmp_path)
    vdir = "sync/dest/state/v000001"
    storage.write_parquet(f"{vdir}/part-00000.parquet", pl.DataFrame({"__id": ["u1"], "t": [1]}))
    manifest = {"version": 1, "parts": ["part-00000.parquet"], "shards": 1, "rows": 1,
                "columns": ["t"], "folded_through": 0, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    storage.write_bytes(f"{vdir}/manifest.json", orjson.dumps(manifest))
    state = SyncState(storage, "dest")
    assert state.versions() == [1] and state.manifest(1) == manifest
    assert state.current().table.rows() == [("u1", 1)]
    state.write_checkpoint(pl.DataFrame({"__id": ["u2"], "t": [2], flag("t"): [True]}))
    assert state.commit().version == 2
    names = storage.list("sync/dest")
    assert names[:3] == [
        "sync/dest/journal/e000000000001.parquet",
        f"{vdir}/manifest.json",
        f"{vdir}/part-00000.parquet",
    ]
    assert names[3] == "sync/dest/state/v000002/manifest.json"
    assert re.fullmatch(r"sync/dest/state/v000002/part-00000-[0-9a-f]{16}\.parquet", names[4])
    assert state.current().table.rows() == [("u1", 1), ("u2", 2)]
