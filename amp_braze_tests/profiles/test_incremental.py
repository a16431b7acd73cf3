"""Incremental rebuilds give exactly what a full rebuild gives: changed, deleted, late and
duplicated rows, rejections that clear, and changes of shape that force a full rebuild."""

from __future__ import annotations

import random

import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.config import BrazeConfig
from amp_braze.profiles.incremental import FINGERPRINT, Rebuilt, attributes_from_changes
from amp_braze.storage import Snapshot

CFG = BrazeConfig(instance="US-03")


def _raw(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "external_id": [f"u{i:05d}" for i in range(n)],
            "email": [f"P{i}@Example.com" if i % 7 else f"bad{i}@" for i in range(n)],
            "phone": [f"(555) 01{i:05d}"[:14] if i % 3 else None for i in range(n)],
            "first_name": [rng.choice(["Ann", "Bob", " Cy ", None]) for _ in range(n)],
            "ltv": [rng.random() * 100 for _ in range(n)],
        }
    )


def _day_two(day1: pl.DataFrame) -> pl.DataFrame:
    rng = random.Random(7)
    rows = day1.to_dicts()
    for r in rng.sample(rows[200:], 40):  # changed values
        r["ltv"] = -1.0
        r["first_name"] = "Changed"
    rows[14]["email"] = "fixed14@example.com"  # a rejected row is corrected
    rows[20]["email"] = "broken@"  # an accepted row becomes rejected
    del rows[100:130]  # deletions
    rows += [  # late rows, one of them duplicating an unchanged user's id
        {"external_id": f"n{i}", "email": f"n{i}@x.io", "phone": None, "first_name": "New",
         "ltv": 1.0} for i in range(25)
    ] + [{"external_id": "u00050", "email": "dup@x.io", "phone": None, "first_name": None,
          "ltv": 2.0}]  # fmt: skip
    rng.shuffle(rows)  # the SQL's row order is not stable either
    return pl.DataFrame(rows, schema=day1.schema)


def _build(rows: pl.DataFrame, after: Rebuilt | None = None, cfg: BrazeConfig = CFG) -> Rebuilt:
    """Attributes of ``rows``, reusing what ``after`` built (as the asset does with its last table)."""
    last = (
        Snapshot(after.attributes.table.lazy(), {FINGERPRINT: after.fingerprint}) if after else None
    )
    return attributes_from_changes(lambda: rows, cfg, last)


def _same(a, b) -> None:
    assert a.table.equals(b.table)  # equal rows in the same (key) order
    assert a.table[ID].is_sorted()
    sort = ["identifier", "column", "rule"]
    assert a.rejections.sort(sort).equals(b.rejections.sort(sort))
    assert a.input_rows == b.input_rows


def test_incremental_attributes_equal_a_full_rebuild():
    day1 = _raw(1000, 1)
    first = _build(day1)
    assert not first.incremental and first.rows_built == 1000
    day2 = _day_two(day1)
    inc = _build(day2, first)
    full = _build(day2)
    assert inc.incremental and not full.incremental
    _same(inc.attributes, full.attributes)
    # Built again: 40 changed (some may be deleted), 2 email edits, the 25 late rows, both rows of
    # the new duplicate, and the rows rejected on day one; nothing else.
    rejected_day1 = first.attributes.rejected_rows
    assert inc.rows_built <= 40 + 2 + 26 + 1 + rejected_day1
    assert inc.rows_built >= 26 + 1
    assert "dup@x.io" not in full.attributes.table["email"].to_list()
    assert "identifier_duplicate" in full.attributes.rejections["rule"].to_list()
    # The next day the duplicate goes away: the unchanged row that was rejected with it returns.
    day3 = day2.filter(pl.col("email") != "dup@x.io")
    inc3 = _build(day3, inc)
    _same(inc3.attributes, _build(day3).attributes)
    assert "u00050" in inc3.attributes.table["external_id"].to_list()
    # Unchanged input: nothing is checked again.
    again = _build(day3, inc3)
    assert again.incremental and again.rows_built == again.attributes.rejected_rows
    _same(again.attributes, inc3.attributes)


def test_a_new_shape_or_configuration_rebuilds_everything():
    day1 = _raw(200, 2)
    first = _build(day1)
    # The same values under another column name must not reuse the old rows.
    renamed = day1.rename({"first_name": "last_name"})
    out = _build(renamed, first)
    assert not out.incremental and "last_name" in out.attributes.table.columns
    # Another endpoint or rate limit changes nothing the field rules do: rows are reused.
    moved = BrazeConfig(instance="EU-01", concurrency=3)
    assert _build(day1, first, moved).rows_built == (first.attributes.rejected_rows)
    other = BrazeConfig(instance="US-03", columns={"ltv": "lifetime_value"})
    out = _build(day1, first, other)
    assert not out.incremental and "lifetime_value" in out.attributes.table.columns


CONFIG = """
storage: {store}
sources:
  pos: {{path: pos.csv, customer_key: customer_id, updated_at: updated_at, priority: 1,
        key_normalize: lower}}
  web: {{path: web.csv, customer_key: customer_id, updated_at: updated_at, priority: 2,
        key_normalize: lower}}
profile_sql: profile.sql
braze:
  rest_endpoint: http://127.0.0.1:9
"""
SQL = "SELECT customer_id AS external_id, email, first_name, tier FROM customer_profiles"


def _feeds(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    pos = pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)] + [None, "C1"],  # no key; a 2nd row
            "email": [f"c{i}@x.io" if rng.random() < 0.8 else None for i in range(n)]
            + ["k@x.io", None],
            "first_name": [rng.choice(["Ann", "Bob", None]) for _ in range(n + 2)],
            "updated_at": [f"2026-01-{rng.randint(1, 28):02d}T00:00:00" for _ in range(n + 2)],
        }
    )
    web = pl.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(0, n, 2)],  # the same customers, lower case
            "email": [f"web{i}@x.io" if rng.random() < 0.5 else None for i in range(0, n, 2)],
            "tier": [rng.choice(["gold", "silver", None]) for _ in range(0, n, 2)],
            "updated_at": [f"2026-01-{rng.randint(1, 28):02d}T00:00:00" for _ in range(0, n, 2)],
        }
    )
    return pos, web


def _materialize(folder, pos: pl.DataFrame, web: pl.DataFrame) -> dict:
    import dagster as dg

    from amp_braze.config import load_config
    from amp_braze.definitions import build_defs
    from amp_braze_tests.support.assets import assets_named
    from amp_braze_tests.support.configs import write_config
    from amp_braze_tests.support.metadata import materialized

    folder.mkdir(parents=True, exist_ok=True)
    pos.write_csv(folder / "pos.csv")
    web.write_csv(folder / "web.csv")
    cfg = load_config(write_config(folder, CONFIG.format(store=folder / "store"), SQL))
    defs = build_defs(cfg)
    names = ("sources/pos", "sources/web", "customer_profiles", "braze_customer_attributes")
    result = dg.materialize(assets_named(defs, *names), resources=defs.resources)
    return materialized(result)


def _tables(folder) -> dict[str, pl.DataFrame]:
    from amp_braze.storage import Storage

    store = Storage(folder / "store")
    return {t: store.read_table(t) for t in ("customer_profiles", "braze_customer_attributes")}


def test_customer_profiles_rebuilt_from_changed_rows_equal_a_full_build(tmp_path):
    pos, web = _feeds(400, 3)
    day1 = _materialize(tmp_path / "inc", pos, web)
    assert day1["customer_profiles"]["rebuild"] == "full"
    # Day two: changed values, deleted rows, a late row (older than what we have), new customers,
    # a key that differs only by case and spaces, and a row losing its key.
    pos2 = pos.with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0)
        .then(pl.lit("Zed"))
        .otherwise("first_name")
        .alias("first_name")
    ).filter(pl.int_range(pl.len()) % 97 != 5)
    late = pl.DataFrame({"customer_id": [" c10 ", "C401", None], "email": ["late@x.io", "new@x.io", "x@x.io"],
                         "first_name": ["Late", "New", "Nokey"], "updated_at": ["2025-06-01T00:00:00"] * 3})  # fmt: skip
    pos2 = pl.concat([pos2, late])
    web2 = web.filter(pl.col("customer_id") != "c20").with_columns(
        pl.when(pl.col("customer_id") == "c30")
        .then(pl.lit("platinum"))
        .otherwise("tier")
        .alias("tier")
    )
    day2 = _materialize(tmp_path / "inc", pos2, web2)
    full = _materialize(tmp_path / "full", pos2, web2)
    assert day2["customer_profiles"]["rebuild"] == "changed customers only"
    assert full["customer_profiles"]["rebuild"] == "full"
    # Rebuilt: 9 renamed + 5 deleted + C10, C401, c20, c30 (some overlap); far fewer than 401.
    assert 12 <= day2["customer_profiles"]["customers_rebuilt"] <= 18
    inc_tables, full_tables = _tables(tmp_path / "inc"), _tables(tmp_path / "full")
    for name, table in full_tables.items():
        assert inc_tables[name].equals(table), name
    for key in ("per_source", "rows_without_key", "customers_from_pos", "fields_won_by_web",
                "fields_won_by_pos", "customers_from_web", "dagster/row_count"):  # fmt: skip
        assert day2["customer_profiles"][key] == full["customer_profiles"][key], key
    late_row = full_tables["customer_profiles"].filter(pl.col("customer_id") == "c10")
    assert late_row["email"].to_list() != ["late@x.io"] or pos.filter(
        pl.col("customer_id") == "C10"
    )["email"].to_list() == [None]
    assert day2["braze_customer_attributes"]["rows_checked_this_run"] < 40
    # Day three, nothing changed: the feeds are not read and nothing is rebuilt.
    day3 = _materialize(tmp_path / "inc", pos2, web2)
    assert day3["customer_profiles"]["customers_rebuilt"] == 0
    assert day3["braze_customer_attributes"]["rows_checked_this_run"] == 0
    for name, table in _tables(tmp_path / "inc").items():
        assert table.equals(full_tables[name]), name
