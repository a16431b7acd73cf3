"""plan_delta against a plain-Python oracle, on every shape the id columns can take: equal, new
users, users gone, both, unsorted, empty sides; read from Parquet (streamed) and from memory."""

from __future__ import annotations

import functools
import random

import polars as pl
import pytest

from amp_braze.braze.identifiers import ID, id_footer
from amp_braze.braze.plan_columns import ADD, NEW, REMOVE, flag
from amp_braze.config import BrazeConfig
from amp_braze.storage import Storage
from amp_braze.sync import plan as plan_module
from amp_braze.sync.plan import Side, plan_delta

SEGS = ["amp_vip", "amp_lapsed"]
ARRAY = "amp_segments"


def _ids(rng: random.Random, n: int) -> list[str]:
    return sorted({f"u{rng.randrange(10 * n):08d}" for _ in range(n)})


@functools.cache
def _tables(seed: int, n: int, new_share: float, gone_share: float):
    """(wanted, state): the state lacks some wanted users and holds some no longer wanted."""
    rng = random.Random(seed)
    ids = _ids(rng, n)
    wanted_ids = [i for i in ids if rng.random() >= gone_share]
    wanted_set = set(wanted_ids)
    state_ids = [i for i in ids if i not in wanted_set or rng.random() >= new_share]

    def frame(keys: list[str], salt: int) -> pl.DataFrame:
        r = random.Random(salt)

        def maybe(v):
            return None if r.random() < 0.1 else v

        return pl.DataFrame(
            {
                "external_id": keys,
                ID: keys,
                "tier": [maybe(r.choice(["gold", "silver", "bronze"])) for _ in keys],
                "ltv": [maybe(r.choice([1.5, 2.5, 3.5])) for _ in keys],
                "visits": [maybe(r.randrange(3)) for _ in keys],
                "amp_vip": [r.random() < 0.3 for _ in keys],
                "amp_lapsed": [maybe(r.random() < 0.3) for _ in keys],
            },
            schema_overrides={
                "external_id": pl.String,
                ID: pl.String,
                "tier": pl.String,
                "ltv": pl.Float64,
                "visits": pl.Int64,
                "amp_vip": pl.Boolean,
                "amp_lapsed": pl.Boolean,
            },  # fmt: skip
        )

    wanted = frame(wanted_ids, 1)
    # The state: mostly what was sent last time, with some values since changed.
    state = frame(state_ids, 2).drop("external_id")
    same = pl.DataFrame({ID: state_ids}, schema={ID: pl.String}).join(
        wanted.drop("external_id"), on=ID, how="left"
    )
    keep = pl.Series([rng.random() < 0.9 for _ in state_ids], dtype=pl.Boolean)
    state = state.with_columns(
        [
            pl.when(keep & pl.Series(state_ids, dtype=pl.String).is_in(wanted_ids))
            .then(same.get_column(c))
            .otherwise(pl.col(c))
            .alias(c)
            for c in state.columns
            if c != ID
        ]
    )
    return wanted, state


def _oracle(wanted: pl.DataFrame, state: pl.DataFrame, unset_removed: bool, protected: set[str]):
    """{id: (new?, {attribute: value sent})}, compared value by value in Python."""
    old = {r[ID]: r for r in state.iter_rows(named=True)}
    want = {r[ID]: r for r in wanted.iter_rows(named=True)}
    attrs = [c for c in wanted.columns if c not in ("external_id", ID)]
    out = {}
    for i, row in want.items():
        prev = old.get(i)
        sent = {}
        for a in attrs:
            cur, before = row[a], (prev or {}).get(a)
            if a in SEGS:
                changed = bool(cur) != bool(before)
            else:
                changed = cur != before
            if changed:
                sent[a] = cur
        if sent:
            out[i] = (prev is None, sent)
    if unset_removed:
        for i, prev in old.items():
            if i in want or i in protected:
                continue
            sent = {
                a: None for a in attrs if (prev[a] is True if a in SEGS else prev[a] is not None)
            }
            if sent:
                out[i] = (False, sent)
    return out


def _result(plan) -> dict:
    attrs = [a.name for a in plan.attrs]
    out = {}
    for r in plan.table.iter_rows(named=True):
        out[r[ID]] = (r[NEW], {a: r[a] for a in attrs if r[flag(a)]})
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("new_share", "gone_share", "on_removed"),
    [(0, 0, "ignore"), (0.05, 0, "ignore"), (0, 0.05, "unset"), (0.05, 0.05, "unset"),
     (0.05, 0.05, "ignore"), (1.0, 0, "ignore"), (0, 1.0, "unset")],
)  # fmt: skip
@pytest.mark.parametrize("source", ["memory", "parquet"])
def test_plan_matches_a_row_by_row_oracle(tmp_path, new_share, gone_share, on_removed, source):
    # Big enough that the streamed sides arrive in many morsels, so a misalignment would show.
    wanted, state = _tables(11, 200_000, new_share, gone_share)
    protected = set(state.get_column(ID).head(50).to_list())
    cfg = BrazeConfig(instance="US-03", on_removed_user=on_removed)
    if source == "parquet":  # as the pipeline reads: lazily, with what the footers say
        w_in, s_in = (
            _from_parquet(Storage(tmp_path), wanted),
            _from_parquet(Storage(tmp_path), state),
        )
        assert (w_in.ids_digest == s_in.ids_digest) == (new_share == gone_share == 0)
    else:
        w_in, s_in = wanted, state
    plan = plan_delta(w_in, s_in, cfg, SEGS, protected_ids=pl.Series(sorted(protected)))
    expected = _oracle(wanted, state, on_removed == "unset", protected)
    got = _result(plan)
    assert got == expected
    assert plan.table.get_column(ID).is_sorted()
    assert plan.stats["users_changed"] == len(expected)
    assert plan.stats["new_users"] == sum(new for new, _ in expected.values())
    full = sum(v is not None for r in wanted.drop("external_id", ID).iter_rows() for v in r)
    assert plan.stats["full_sync_data_points"] == full
    assert plan.wanted_users == wanted.height


@pytest.mark.slow
@pytest.mark.parametrize(
    ("new_share", "gone_share", "on_removed"),
    [(0, 0, "ignore"), (0.05, 0.05, "unset"), (0.05, 0, "ignore"), (0, 0.05, "unset"),
     (1.0, 0, "ignore"), (0, 1.0, "unset")],
)  # fmt: skip
def test_a_plan_made_a_range_of_ids_at_a_time_equals_the_oracle(
    tmp_path, monkeypatch, new_share, gone_share, on_removed
):
    """Large tables are planned in pieces (rows that line up: the same row ranges; else ranges
    of ids cut at the wanted table's rows); the pieces must add up to exactly the whole plan."""
    monkeypatch.setattr(plan_module, "PIECE_ROWS", 30_011)
    wanted, state = _tables(13, 200_000, new_share, gone_share)
    protected = set(state.get_column(ID).tail(40).to_list())
    cfg = BrazeConfig(instance="US-03", on_removed_user=on_removed)
    w_in = _from_parquet(Storage(tmp_path), wanted)
    s_in = _from_parquet(Storage(tmp_path), state)
    plan = plan_delta(w_in, s_in, cfg, SEGS, protected_ids=pl.Series(sorted(protected)))
    assert plan.stats["pieces"] == max(1, -(-wanted.height // 30_011))
    assert _result(plan) == _oracle(wanted, state, on_removed == "unset", protected)
    assert plan.table.get_column(ID).is_sorted()
    assert plan.wanted_users == wanted.height
    assert plan.stats["state_users"] == state.height
    gone = set(state.get_column(ID)) - set(wanted.get_column(ID))
    assert plan.stats["users_no_longer_wanted"] == len(gone)


def _from_parquet(storage: Storage, table: pl.DataFrame) -> Side:
    name = f"{id(table)}.parquet"
    storage.write_parquet(name, table, id_footer(table))
    f = storage.footer(name)
    return Side(storage.scan_parquet(name), None, f["ids_digest"], f["rows"], f["non_null"])


def test_a_footer_that_lies_about_the_ids_is_caught(tmp_path):
    """Equal digests let the planner skip reading ids; if they were wrong (a file replaced
    between the footer and the scan), rows that do not line up must stop the plan."""
    wanted, state = _tables(3, 2_000, 0.1, 0)
    w, s = _from_parquet(Storage(tmp_path), wanted), _from_parquet(Storage(tmp_path), state)
    s.ids_digest, s.rows = w.ids_digest, w.rows
    with pytest.raises(RuntimeError, match="did not line up"):
        plan_delta(w, s, BrazeConfig(instance="US-03"), SEGS)


def test_rows_matched_wrongly_are_caught(tmp_path, monkeypatch):
    """When the ids are read and matched, the rows stream as row numbers and get their ids back
    afterwards; if the match were wrong, each changed row's wanted and state ids would differ,
    and the plan must stop rather than send one user's values to another."""
    wanted, state = _tables(5, 20_000, 0.1, 0)
    w, s = _from_parquet(Storage(tmp_path), wanted), _from_parquet(Storage(tmp_path), state)
    right = plan_module.match_sorted_ids

    def off_by_one(left: pl.Series, r: pl.Series) -> plan_module.Match:
        m = right(left, r)
        return plan_module.Match(m.new_rows + 1, m.gone_rows)

    plan = plan_delta(w, s, BrazeConfig(instance="US-03"), SEGS)  # the real match
    assert _result(plan) == _oracle(wanted, state, False, set())
    monkeypatch.setattr(plan_module, "match_sorted_ids", off_by_one)
    with pytest.raises(RuntimeError, match="did not line up"):
        plan_delta(w, s, BrazeConfig(instance="US-03"), SEGS)


def test_unsorted_inputs_are_sorted_first():
    wanted, state = _tables(3, 2_000, 0.1, 0.1)
    cfg = BrazeConfig(instance="US-03", on_removed_user="unset")
    plan = plan_delta(wanted.sample(fraction=1, shuffle=True, seed=1), state.reverse(), cfg, SEGS)
    assert _result(plan) == _oracle(wanted, state, True, set())


def test_array_attribute_adds_and_removes_only_what_changed():
    wanted = pl.DataFrame(
        {"external_id": ["a", "b", "c"], ID: ["a", "b", "c"],
         ARRAY: [["vip"], ["lapsed", "vip"], []]}
    )  # fmt: skip
    state = pl.DataFrame({ID: ["a", "b", "z"], ARRAY: [["vip"], ["lapsed"], ["vip"]]})
    cfg = BrazeConfig(instance="US-03", on_removed_user="unset")
    plan = plan_delta(wanted.lazy(), state.lazy(), cfg, [], segment_array=ARRAY)
    rows = {r[ID]: r for r in plan.table.iter_rows(named=True)}
    assert sorted(rows) == ["b", "z"]  # a unchanged; c new with nothing to send
    assert rows["b"][ARRAY + ADD] == ["vip"] and rows["b"][ARRAY + REMOVE] == []
    assert rows["z"][ARRAY + REMOVE] == ["vip"] and rows["z"][NEW] is False


def test_the_identifier_sent_is_the_trimmed_key():
    """Users are keyed on the trimmed id; Braze must get that same id, never the raw padding."""
    wanted = pl.DataFrame({"external_id": [" a ", "b"], ID: ["a", "b"], "tier": ["gold", "x"]})
    state = pl.DataFrame({ID: ["b", "gone"], "tier": ["y", "z"]})
    cfg = BrazeConfig(instance="US-03", on_removed_user="unset")
    plan = plan_delta(wanted, state, cfg, [])
    assert plan.table.select("external_id", ID, NEW, "tier").rows() == [
        ("a", "a", True, "gold"),
        ("b", "b", False, "x"),
        ("gone", "gone", False, None),
    ]
