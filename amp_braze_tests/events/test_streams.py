"""Event streams against the emulator: each event once, by its id."""

from __future__ import annotations

import polars as pl
import pytest

from amp_braze_tests.events.support import EventBrand, orders
from amp_braze_tests.support.servers import EmulatorHandle


@pytest.fixture
def brand(tmp_path, emulator: EmulatorHandle, monkeypatch) -> EventBrand:
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    return EventBrand(tmp_path, emulator.url)


def _objects(emulator: EmulatorHandle, kind: str = "event_objects") -> list[dict]:
    return [o for u in emulator.users().values() for o in u.get(kind, [])]


def test_a_stream_sends_every_row_once_and_a_rerun_sends_nothing(brand, emulator):
    brand.write_orders(orders(300))
    meta = brand.run()
    m = meta["orders/braze_events"]
    assert meta["__success"] and m["events_sent"] == 300 and m["new_events"] == 300
    assert m["data_points"] == 0 and m["uncertain_events"] == 0 and m["rejected_rows"] == 0
    objs = _objects(emulator)
    assert len(objs) == 300 and {o["name"] for o in objs} == {"ecommerce.order_placed"}
    ids = sorted(o["properties"]["order_id"] for o in objs)
    assert ids == sorted(f"o-{i}" for i in range(300))
    one = next(o for o in objs if o["properties"]["order_id"] == "o-7")
    assert one["properties"]["total_value"] == 10.0 and one["properties"]["currency"] == "USD"
    assert one["properties"]["metadata"] == {"channel": "web"}
    assert one["properties"]["products"][0]["variant_id"] == "sku-2-m"
    assert one["time"] == "2026-11-01T09:07:00.000Z"
    assert emulator.stats()["data_points"] == 0

    again = brand.run()["orders/braze_events"]
    assert again["events_sent"] == 0 and again["already_sent"] == 300 and again["requests"] == 0
    assert len(_objects(emulator)) == 300


def test_a_changed_row_is_not_sent_again_and_a_late_row_is_sent_once(brand, emulator):
    brand.write_orders(orders(100))
    brand.run()
    df = orders(100).with_columns(
        pl.when(pl.col("order_id") == "o-3").then(999.0).otherwise(pl.col("total")).alias("total")
    )
    late = orders(1, start=500).with_columns(pl.col("placed_at").dt.offset_by("-30d"))
    brand.write_orders(pl.concat([df, late]))
    m = brand.run()["orders/braze_events"]
    assert m["changed_after_send"] == 1 and m["events_sent"] == 1 and m["new_events"] == 1
    objs = _objects(emulator)
    assert len(objs) == 101
    assert [o["time"] for o in objs if o["properties"]["order_id"] == "o-500"] == [
        "2026-10-02T17:20:00.000Z"
    ]
    assert {
        o["properties"]["total_value"] for o in objs if o["properties"]["order_id"] == "o-3"
    } == {40.0}
    assert brand.run()["orders/braze_events"]["events_sent"] == 0


def test_invalid_rows_are_rejected_with_their_rule(brand, emulator):
    df = orders(6)
    bad = df.with_columns(
        pl.when(pl.col("order_id") == "o-0")
        .then(pl.lit("ZZZ"))
        .otherwise("currency")
        .alias("currency"),
        pl.when(pl.col("order_id") == "o-1").then(-5.0).otherwise("total").alias("total"),
        pl.when(pl.col("order_id") == "o-2")
        .then(pl.col("placed_at").dt.offset_by("3000d"))
        .otherwise("placed_at")
        .alias("placed_at"),
        pl.when(pl.col("order_id") == "o-3")
        .then(None)
        .otherwise("customer_id")
        .alias("customer_id"),
    )
    dup = df.filter(pl.col("order_id") == "o-4").with_columns(pl.lit(1.0).alias("total"))
    brand.write_orders(pl.concat([bad, dup]))
    meta = brand.run()
    m = meta["orders/braze_events"]
    rules = {r["event_id"]: r["rule"] for r in meta["orders/braze_events_rejections"]["sample"]}
    assert rules == {
        "o-0": "currency_invalid",
        "o-1": "money_negative: total_value",
        "o-2": "time_in_future",
        "o-3": "identifier_missing",
        "o-4": "event_id_duplicate",
    }
    assert m["events_sent"] == 1 and m["rejected_rows"] == 6  # o-4 twice
    assert [o["properties"]["order_id"] for o in _objects(emulator)] == ["o-5"]
    # A product without its variant: the whole event is set aside, named by the field.
    noprod = orders(1, start=40).with_columns(
        pl.col("products").list.eval(
            pl.element().struct.with_fields(pl.lit(None, pl.String).alias("variant_id"))
        )
    )
    brand.write_orders(noprod)
    meta = brand.run()
    assert [r["rule"] for r in meta["orders/braze_events_rejections"]["sample"]] == [
        "missing_property: products[].variant_id"
    ]


def test_a_quantity_of_250_becomes_three_purchases(brand, emulator):
    df = orders(3).with_columns(pl.Series("units", [250, 1, 100], dtype=pl.Int64))
    brand.write_orders(df)
    m = brand.run("purchases")["purchases/braze_events"]
    assert m["events_sent"] == 5 and m["data_points"] == 351
    by_user = {k: u.get("purchase_objects", []) for k, u in emulator.users().items()}
    assert sorted(o["quantity"] for o in by_user["user-0"]) == [50, 100, 100]
    assert [o["quantity"] for o in by_user["user-2"]] == [100]
    assert emulator.stats()["data_points"] == 351
    assert brand.run("purchases")["purchases/braze_events"]["events_sent"] == 0


def test_custom_events_cost_one_data_point_each(brand, emulator):
    brand.write_orders(orders(40))
    m = brand.run("visits")["visits/braze_events"]
    assert m["events_sent"] == 40 and m["data_points"] == 40
    objs = _objects(emulator)
    assert {o["name"] for o in objs} == {"store_visit"} and objs[0]["properties"] == {
        "store": "web"
    }
    assert emulator.stats()["data_points"] == 40


def test_a_purchase_whose_quantity_changes_is_not_sent_again(brand, emulator):
    brand.write_orders(orders(2).with_columns(pl.Series("units", [250, 50], dtype=pl.Int64)))
    assert brand.run("purchases")["purchases/braze_events"]["events_sent"] == 4
    brand.write_orders(orders(2).with_columns(pl.Series("units", [50, 150], dtype=pl.Int64)))
    m = brand.run("purchases")["purchases/braze_events"]
    assert (m["events_sent"], m["already_sent"], m["changed_after_send"]) == (0, 2, 2)
    quantities = sorted(o["quantity"] for o in _objects(emulator, "purchase_objects"))
    assert quantities == [50, 50, 100, 100]


def test_a_stream_reads_the_feeds_its_query_reads_not_the_profiles(brand):
    from amp_braze.definitions import build_defs

    job = build_defs(brand.config).resolve_job_def("orders_job")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {"sources/orders", "orders/braze_events", "orders/braze_events_rejections"}


def test_objects_braze_refuses_are_mapped_back_and_sent_once_it_takes_them(brand, emulator):
    brand.write_orders(orders(100))  # user-3 has orders o-3, o-53
    emulator.faults(blocklisted_external_ids=["user-3"])
    meta = brand.run()
    m = meta["orders/braze_events"]
    assert m["events_sent"] == 98 and m["braze_rejected"] == 2
    refused = {r["event_id"]: r["rule"] for r in meta["orders/braze_events_rejections"]["sample"]}
    assert refused == {
        "o-3": "braze: provided external_id is blacklisted and disallowed",
        "o-53": "braze: provided external_id is blacklisted and disallowed",
    }
    emulator.faults(blocklisted_external_ids=[])
    again = brand.run()["orders/braze_events"]
    assert again["events_sent"] == 2 and again["already_sent"] == 98
    assert len(_objects(emulator)) == 100
