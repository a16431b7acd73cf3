"""The Braze emulator's events, purchases and recommended eCommerce events, over HTTP: what lands on
a profile, what is refused (and reported in ``errors`` with its index), what it costs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from amp_braze.braze.emulator import Emulator, Settings

T0 = "2026-03-01T10:00:00Z"


def ev(name="open", time=T0, user="u1", **extra):
    return {"external_id": user, "name": name, "time": time, **extra}


def buy(product_id="sku1", time=T0, user="u1", **extra):
    return {"external_id": user, "product_id": product_id, "currency": "USD", "price": 9.5,
            "time": time, **extra}  # fmt: skip


def product(**changes):
    return {"product_id": "p1", "product_name": "Mug", "variant_id": "p1-red", "quantity": 2,
            "price": 12.5, **changes}  # fmt: skip


def order(**props):
    base = {"order_id": "o1", "total_value": 25, "currency": "USD", "products": [product()],
            "source": "web", "metadata": {"coupon": "SPRING"}}  # fmt: skip
    return ev("ecommerce.order_placed", properties={**base, **props})


def test_counts_first_last_and_objects_per_profile(emulator):
    events = [
        ev("open", "2026-03-02T10:00:00Z"),
        ev("open", "2026-03-01T08:30:00+02:00", properties={"screen": "home", "n": 2}),
        ev("open", "2026-03-05T00:00:00"),  # no zone: UTC
        ev("click", "2026-03-03T12:00:00:250Z"),  # Braze's yyyy-MM-dd'T'HH:mm:ss:SSSZ form
        ev("open", "2026-03-04T00:00:00Z", user="u2"),
    ]
    purchases = [buy("sku1", "2026-03-02T00:00:00Z", quantity=2), buy("sku1", "2026-03-01"),
                 buy("sku2", "2026-03-03T00:00:00Z", price=-3, properties={"refund": True})]  # fmt: skip
    r = emulator.track({"events": events, "purchases": purchases})
    assert r.status_code == 201
    assert r.json() == {"message": "success", "events_processed": 5, "purchases_processed": 3}
    u1 = emulator.users()["u1"]
    assert u1["custom_events"] == {
        "open": {"count": 3, "first": "2026-03-01T06:30:00.000Z", "last": "2026-03-05T00:00:00.000Z"},
        "click": {"count": 1, "first": "2026-03-03T12:00:00.250Z", "last": "2026-03-03T12:00:00.250Z"},
    }  # fmt: skip
    assert u1["purchases"] == {
        "sku1": {"count": 3, "first": "2026-03-01T00:00:00.000Z", "last": "2026-03-02T00:00:00.000Z"},
        "sku2": {"count": 1, "first": "2026-03-03T00:00:00.000Z", "last": "2026-03-03T00:00:00.000Z"},
    }  # fmt: skip
    assert u1["event_objects"] == [
        {"name": "open", "time": "2026-03-02T10:00:00.000Z", "properties": {}},
        {"name": "open", "time": "2026-03-01T06:30:00.000Z",
         "properties": {"screen": "home", "n": 2}},
        {"name": "open", "time": "2026-03-05T00:00:00.000Z", "properties": {}},
        {"name": "click", "time": "2026-03-03T12:00:00.250Z", "properties": {}},
    ]  # fmt: skip
    assert u1["purchase_objects"] == [
        {"product_id": "sku1", "currency": "USD", "price": 9.5, "quantity": 2,
         "time": "2026-03-02T00:00:00.000Z", "properties": {}},
        {"product_id": "sku1", "currency": "USD", "price": 9.5, "quantity": 1,
         "time": "2026-03-01T00:00:00.000Z", "properties": {}},
        {"product_id": "sku2", "currency": "USD", "price": -3, "quantity": 1,
         "time": "2026-03-03T00:00:00.000Z", "properties": {"refund": True}},
    ]  # fmt: skip
    assert emulator.users()["u2"]["custom_events"] == {
        "open": {"count": 1, "first": "2026-03-04T00:00:00.000Z", "last": "2026-03-04T00:00:00.000Z"}
    }  # fmt: skip
    stats = emulator.stats()
    assert (stats["events_processed"], stats["purchases_processed"]) == (5, 3)
    assert (stats["purchase_quantity"], stats["users_created"]) == (4, 2)
    # The state file keeps all of it.
    copy_ = Emulator(Settings())
    copy_.load(emulator.server.emulator.dump())
    assert {u["external_id"]: u for u in copy_.users()}["u1"] == u1


def test_future_time_is_moved_to_now(emulator):
    before = datetime.now(UTC).replace(microsecond=0)
    r = emulator.track({"events": [ev(time="2100-01-01T00:00:00Z")],
                        "purchases": [buy(time="2099-06-01T00:00:00+05:00")]})  # fmt: skip
    after = datetime.now(UTC)
    assert r.status_code == 201
    u1 = emulator.users()["u1"]
    for stored in (u1["event_objects"][0]["time"], u1["purchase_objects"][0]["time"]):
        assert stored.endswith("Z")
        assert before <= datetime.fromisoformat(stored) <= after
    assert u1["custom_events"]["open"]["first"] == u1["event_objects"][0]["time"]
    assert u1["purchases"]["sku1"]["last"] == u1["purchase_objects"][0]["time"]


def _one_refused(emulator, array: str, bad: dict) -> dict:
    """Send a valid object then ``bad``; the valid one lands, ``bad`` is error index 1."""
    good = ev("ok", user="other") if array == "events" else buy("ok", user="other")
    r = emulator.track({array: [good, bad]})
    assert r.status_code == 201
    body = r.json()
    assert body[f"{array}_processed"] == 1
    (error,) = body["errors"]
    assert (error["input_array"], error["index"]) == (array, 1)
    return error


BIG = ["x" * 1000] * 103  # about 103 KB of JSON


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"name": None}, "'name' is required for an event and must be a non-empty string"),
        ({"name": 7}, "'name' is required for an event and must be a non-empty string"),
        ({"time": None}, "'time' is required and must be an ISO 8601 datetime string"),
        ({"time": 1767225600}, "'time' is required and must be an ISO 8601 datetime string"),
        ({"time": "yesterday"}, "'time' is not an ISO 8601 datetime: 'yesterday'"),
        ({"time": "0001-01-01T00:00:00+05:00"},
         "'time' is not an ISO 8601 datetime: '0001-01-01T00:00:00+05:00'"),
        ({"properties": [1]}, "Invalid 'properties' field: 'properties' must be an object"),
        ({"properties": {"": 1}}, "Invalid 'properties' field: key '' must be 1 to 255 "
                                  "characters and may not start with $"),
        ({"properties": {"$amount": 1}}, "Invalid 'properties' field: key '$amount' must be 1 "
                                         "to 255 characters and may not start with $"),
        ({"properties": {"k" * 256: 1}}, "Invalid 'properties' field: key '" + "k" * 64
                                         + "' must be 1 to 255 characters and may not start with $"),
        ({"properties": {"time": "x"}}, "Invalid 'properties' field: 'time' is reserved"),
        ({"properties": {"event_name": "x"}}, "Invalid 'properties' field: 'event_name' is reserved"),
        ({"properties": {"note": "n" * 256}}, "Invalid 'properties' field: the value of 'note' is "
                                              "longer than 255 characters"),
        ({"properties": {"blob": BIG}}, "Invalid 'properties' field: properties holding arrays "
                                        "or objects are larger than 100 KB"),
    ],
)  # fmt: skip
def test_custom_event_rules(emulator, bad, reason):
    error = _one_refused(emulator, "events", {**ev(), **bad})
    assert error["type"] == reason
    assert "u1" not in emulator.users()  # the refused event did not create its user


def test_custom_event_limits_that_pass(emulator):
    props = {f"p{i:03d}": i for i in range(300)}
    props_ok = {"s": "s" * 255, "k" * 255: 1, "list": ["x" * 1000] * 90, "obj": {"a": [1, 2]}}
    r = emulator.track({"events": [ev(properties=props), ev("e2", properties=props_ok)]})
    assert r.status_code == 201 and "errors" not in r.json()
    first, second = emulator.users()["u1"]["event_objects"]
    assert list(first["properties"]) == [f"p{i:03d}" for i in range(256)]  # the first 256 kept
    assert second["properties"] == props_ok
    assert emulator.stats()["event_properties_dropped"] == 44


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"product_id": None}, "'product_id' is required for a purchase and must be a string"),
        ({"product_id": 12}, "'product_id' is required for a purchase and must be a string"),
        ({"product_id": "p" * 256}, "'product_id' is longer than 255 characters"),
        ({"currency": None}, "'currency' is required for a purchase"),
        ({"currency": "ABC"}, "'currency' must be an ISO 4217 currency"),
        ({"currency": "usd"}, "'currency' must be an ISO 4217 currency"),
        ({"price": None}, "'price' is required for a purchase"),
        ({"price": "9.50"}, "'price' must be a number"),
        ({"price": True}, "'price' must be a number"),
        ({"quantity": 0}, "'quantity' must be between 1 and 100"),
        ({"quantity": 101}, "'quantity' must be between 1 and 100"),
        ({"quantity": 2.5}, "'quantity' must be an integer"),
        ({"time": None}, "'time' is required and must be an ISO 8601 datetime string"),
        ({"properties": {"price": 1}}, "Invalid 'properties' field"),
        ({"properties": {"currency": "EUR"}}, "Invalid 'properties' field"),
        ({"properties": {"quantity": 1}}, "Invalid 'properties' field"),
        ({"properties": {"product_id": "x"}}, "Invalid 'properties' field"),
        ({"properties": {"$x": 1}}, "Invalid 'properties' field: key '$x' must be 1 to 255 "
                                    "characters and may not start with $"),
    ],
)  # fmt: skip
def test_purchase_rules(emulator, bad, reason):
    error = _one_refused(emulator, "purchases", {**buy(), **bad})
    assert error["type"] == reason
    assert "u1" not in emulator.users()


def test_purchase_quantity_bounds_that_pass(emulator):
    r = emulator.track({"purchases": [buy(quantity=100), buy(quantity=1, currency="JPY")]})
    assert r.status_code == 201 and "errors" not in r.json()
    assert emulator.users()["u1"]["purchases"]["sku1"]["count"] == 101


def _without(path: str) -> dict:
    o = order()
    props = o["properties"]
    if path.startswith("products[0]."):
        del props["products"][0][path.split(".", 1)[1]]
    else:
        del props[path]
    return o


def _cart(**props):
    base = {"cart_id": "c1", "currency": "EUR", "products": [product()], "source": "app"}
    return ev("ecommerce.cart_updated", properties={**base, **props})


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # missing_property
        (_without("order_id"), "missing_property: order_id"),
        (_without("products"), "missing_property: products"),
        (_without("products[0].variant_id"), "missing_property: products[0].variant_id"),
        (_without("products[0].price"), "missing_property: products[0].price"),
        (ev("ecommerce.order_placed"), "missing_property: order_id"),
        (_cart(), "missing_property: total_value"),
        (_cart(action="replace"), "missing_property: total_value"),
        (ev("ecommerce.product_viewed", properties={"product_id": "p1"}),
         "missing_property: product_name"),
        # extra_property
        (order(coupon="SPRING"), "extra_property: coupon (custom fields go under metadata)"),
        (order(products=[product(color="red")]),
         "extra_property: products[0].color (custom fields go under metadata)"),
        (order(cancel_reason="x"), "extra_property: cancel_reason (custom fields go under metadata)"),
        # unexpected_data_type
        (order(total_value="25"), "unexpected_data_type: total_value must be float, got string"),
        (order(total_value=True), "unexpected_data_type: total_value must be float, got boolean"),
        (order(order_id=1), "unexpected_data_type: order_id must be string, got integer"),
        (order(products={"p": 1}), "unexpected_data_type: products must be array, got object"),
        (order(metadata=["x"]), "unexpected_data_type: metadata must be object, got array"),
        (order(source=None), "unexpected_data_type: source must be string, got null"),
        (order(products=[product(), "p2"]),
         "unexpected_data_type: products[1] must be object, got string"),
        (order(products=[product(quantity=1.5)]),
         "unexpected_data_type: products[0].quantity must be integer, got float"),
        (order(products=[product(price="1")]),
         "unexpected_data_type: products[0].price must be float, got string"),
        (ev("ecommerce.product_viewed", properties=[1]),
         "unexpected_data_type: properties must be object, got array"),
        # value rules
        (order(total_value=-1), "invalid_value: total_value must be >= 0"),
        (order(tax=-0.5), "invalid_value: tax must be >= 0"),
        (order(products=[product(price=-2)]), "invalid_value: products[0].price must be >= 0"),
        (order(currency="ZZZ"), "invalid_value: currency must be an ISO 4217 currency"),
        (_cart(action="clear", total_value=1),
         "invalid_value: action must be one of add, remove, replace"),
    ],
)  # fmt: skip
def test_ecommerce_rules(emulator, bad, reason):
    error = _one_refused(emulator, "events", bad)
    assert error["type"] == reason
    assert "u1" not in emulator.users()  # dropped whole: not even its user


def test_ecommerce_events_that_pass(emulator):
    viewed = {"product_id": "p1", "product_name": "Mug", "variant_id": "v", "price": 3,
              "currency": "GBP", "source": "web", "type": ["price_drop"],
              "metadata": {"anything": {"goes": [1]}}}  # fmt: skip
    r = emulator.track({"events": [
        ev("ecommerce.product_viewed", properties=viewed),
        _cart(action="add"),  # no total_value needed for add / remove
        _cart(action="remove", products=[]),
        _cart(total_value=0),
        order(products=[product(metadata={"gift": True}, image_url="https://x/i.png")]),
        ev("ecommerce.order_cancelled", properties={**order()["properties"],
                                                    "cancel_reason": "late"}),
        ev("ecommerce.checkout_started", properties={"checkout_id": "k", "total_value": 1.5,
           "currency": "USD", "products": [product()], "source": "web", "cart_id": "c1"}),
        ev("ecommerce.order_refunded", properties={"order_id": "o1", "total_value": 5,
           "currency": "USD", "products": [product()], "source": "web"}),
        ev("ecommerce.Order_Placed", properties={"anything": 1}),  # not exact: a custom event
    ]})  # fmt: skip
    assert r.status_code == 201
    assert r.json() == {"message": "success", "events_processed": 9}
    names = {k: v["count"] for k, v in emulator.users()["u1"]["custom_events"].items()}
    assert names == {"ecommerce.product_viewed": 1, "ecommerce.cart_updated": 3,
                     "ecommerce.order_placed": 1, "ecommerce.order_cancelled": 1,
                     "ecommerce.checkout_started": 1, "ecommerce.order_refunded": 1,
                     "ecommerce.Order_Placed": 1}  # fmt: skip
    stats = emulator.stats()
    assert (stats["ecommerce_events_processed"], stats["data_points"]) == (8, 1)


def test_invalid_ecommerce_event_is_dropped_whole_and_its_neighbour_lands(emulator):
    bad = _without("products[0].variant_id")
    good = order(order_id="o2")
    r = emulator.track({"events": [bad, good]})
    assert r.status_code == 201
    assert r.json() == {
        "message": "success",
        "events_processed": 1,
        "errors": [{"type": "missing_property: products[0].variant_id", "input_array": "events",
                    "index": 0}],
    }  # fmt: skip
    u1 = emulator.users()["u1"]
    assert [e["properties"]["order_id"] for e in u1["event_objects"]] == ["o2"]
    assert u1["event_objects"][0]["properties"] == good["properties"]
    assert u1["custom_events"]["ecommerce.order_placed"]["count"] == 1
    stats = emulator.stats()
    assert (stats["ecommerce_events_processed"], stats["object_errors"]) == (1, 1)


def test_75_objects_across_the_three_arrays_and_76_refused(emulator):
    attrs = [{"external_id": f"u{i}", "tier": "gold"} for i in range(40)]
    events = [ev(user=f"u{i}") for i in range(30)]
    purchases = [buy(user=f"u{i}") for i in range(5)]
    r = emulator.track({"attributes": attrs, "events": events + [ev(user="u99")],
                        "purchases": purchases})  # fmt: skip
    assert r.status_code == 400 and r.json()["message"] == "Max Input Length Exceeded"
    assert emulator.users() == {}
    r = emulator.track({"attributes": attrs, "events": events, "purchases": purchases})
    assert r.status_code == 201
    assert r.json() == {"message": "success", "attributes_processed": 40, "events_processed": 30,
                        "purchases_processed": 5}  # fmt: skip
    users = emulator.users()
    assert len(users) == 40
    assert sum("custom_events" in u for u in users.values()) == 30
    assert sum("purchases" in u for u in users.values()) == 5
    assert users["u0"]["custom_attributes"] == {"tier": "gold"}


@pytest.mark.parametrize(
    ("body", "points"),
    [
        ({"events": [ev(properties={"a": 1, "b": "x", "c": [1], "d": {"e": 1}})]}, 1),
        ({"purchases": [buy(quantity=3, properties={"a": 1})]}, 3),
        ({"purchases": [buy()]}, 1),
        ({"events": [order()]}, 0),
        ({"events": [ev(), ev(), order()], "purchases": [buy(quantity=2)]}, 4),
    ],
    ids=["custom", "purchase-quantity-3", "purchase", "ecommerce", "mixed"],
)
def test_data_points_per_kind(emulator, body, points):
    assert emulator.track(body).status_code == 201
    assert emulator.stats()["data_points"] == points


def test_unknown_users_are_created_unless_update_only(emulator):
    r = emulator.track({"events": [
        ev(user="new"),
        ev(user="ghost", _update_existing_only=True),
        {"user_alias": {"alias_name": "a", "alias_label": "l"}, "name": "e", "time": T0},
        {"user_alias": {"alias_name": "b", "alias_label": "l"}, "name": "e", "time": T0,
         "_update_existing_only": False},
    ], "purchases": [buy(user="ghost2", _update_existing_only=True)]})  # fmt: skip
    assert r.status_code == 201  # update-only objects for unknown users: accepted, not recorded
    assert r.json() == {"message": "success", "events_processed": 4, "purchases_processed": 1}
    users = emulator.users()
    assert len(users) == 2 and "new" in users  # not ghost, ghost2, nor alias a
    (alias_user,) = [u for k, u in users.items() if k != "new"]
    assert alias_user["user_aliases"] == [{"alias_name": "b", "alias_label": "l"}]
    assert alias_user["custom_events"]["e"]["count"] == 1
    stats = emulator.stats()
    assert (stats["users_created"], stats["data_points"]) == (2, 2)
    r = emulator.track({"events": [{"braze_id": "nope", "name": "e", "time": T0}, ev()]})
    assert r.json()["errors"] == [
        {"type": "'braze_id' does not match any user", "input_array": "events", "index": 0}
    ]


def test_one_user_addressed_several_ways_in_one_request(emulator):
    r = emulator.track({
        "attributes": [{"external_id": "u1", "email": "ann@example.com"}],
        "events": [ev(), {"email": "Ann@example.com", "name": "open", "time": T0}, ev("x")],
        "purchases": [buy(), {**buy(), "external_id": None, "email": "ann@example.com"}],
    })  # fmt: skip
    assert r.status_code == 201 and "errors" not in r.json()
    users = emulator.users()
    assert list(users) == ["u1"]
    assert users["u1"]["custom_events"]["open"]["count"] == 2
    assert len(users["u1"]["event_objects"]) == 3
    assert users["u1"]["purchases"]["sku1"]["count"] == 2


def test_merge_adds_counters_and_keeps_both_users_objects(emulator):
    emulator.track({"events": [ev(time="2026-01-05T00:00:00Z"),
                               ev(time="2026-01-01T00:00:00Z", user="u2"),
                               ev(time="2026-01-09T00:00:00Z", user="u2")],
                    "purchases": [buy(user="u2", quantity=4)]})  # fmt: skip
    before = copy.deepcopy(emulator.users())
    merge = {"merge_updates": [{"identifier_to_merge": {"external_id": "u2"},
                                "identifier_to_keep": {"external_id": "u1"}}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {emulator.key}"}
    assert emulator.http.post(f"{emulator.url}/users/merge", json=merge, headers=headers).ok
    (u1,) = emulator.users().values()
    assert u1["custom_events"] == {
        "open": {"count": 3, "first": "2026-01-01T00:00:00.000Z", "last": "2026-01-09T00:00:00.000Z"}
    }  # fmt: skip
    assert u1["purchases"] == {"sku1": {"count": 4, "first": "2026-03-01T10:00:00.000Z",
                                        "last": "2026-03-01T10:00:00.000Z"}}  # fmt: skip
    assert u1["event_objects"] == before["u1"]["event_objects"] + before["u2"]["event_objects"]
    assert u1["purchase_objects"] == before["u2"]["purchase_objects"]


def test_stats_and_export_names(emulator):
    emulator.track({"events": [ev(), order()], "purchases": [buy(quantity=2)]})
    stats = emulator.stats()
    assert {k: stats[k] for k in ("events_processed", "ecommerce_events_processed",
            "purchases_processed", "purchase_quantity", "event_properties_dropped",
            "data_points")} == {"events_processed": 2, "ecommerce_events_processed": 1,
            "purchases_processed": 1, "purchase_quantity": 2, "event_properties_dropped": 0,
            "data_points": 3}  # fmt: skip
    # /users/export/ids shows the counters, as Braze's export does, not the objects.
    (user,) = emulator.export({"external_ids": ["u1"]}).json()["users"]
    assert set(user["custom_events"]) == {"open", "ecommerce.order_placed"}
    assert user["purchases"]["sku1"]["count"] == 2
    assert "event_objects" not in user and "purchase_objects" not in user
