"""/users/track's ``events`` and ``purchases`` in the emulator: custom events, purchases and
Braze's recommended eCommerce events, checked as Braze documents them (the rules themselves live in
``amp_braze.braze.event_rules``) and recorded on the profile.

What a profile holds (and ``/_emulator/users`` shows):

- ``custom_events``: per event name ``{"count", "first", "last"}`` (eCommerce events too: Braze
  calls them custom events with predefined names);
- ``purchases``: per product_id ``{"count", "first", "last"}``, ``count`` adding the quantities;
- ``event_objects`` / ``purchase_objects``: every accepted object, in arrival order, as
  ``{"name", "time", "properties"}`` / ``{"product_id", "currency", "price", "quantity", "time",
  "properties"}`` (kept by the store beside the profile, one packed chunk per request, so that a
  profile with many events costs no more to update than one with few).

Times are stored as ISO 8601 UTC with milliseconds (``2026-01-01T10:00:00.000Z``); first and
last are the earliest and the latest event time (a backfilled event can be older than the last).

Where Braze's documentation is silent, the choice is written next to the code. Called by
``track.Track`` under the emulator's lock; nothing here is slower per object than attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from amp_braze.braze import event_rules as rules
from amp_braze.braze.emulator.settings import Stats
from amp_braze.braze.emulator.validation import ObjectError

BAD_PROPERTIES = "Invalid 'properties' field"  # Braze's wording for a reserved purchase key
BAD_CURRENCY = "'currency' must be an ISO 4217 currency"  # Braze's wording (eCommerce page)
_NUMBER = (int, float)
# Braze also documents ``yyyy-MM-dd'T'HH:mm:ss:SSSZ`` for event times (a colon before the millis).
_COLON_MILLIS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d):(\d+)(.*)$")


@dataclass(slots=True)
class Accepted:
    """One valid event or purchase: what is stored, its counter label, its kind and quantity."""

    kind: str  # event_rules.CUSTOM, PURCHASE or an eCommerce event name
    label: str  # the event name or the product_id
    quantity: int
    stored: dict
    dropped_properties: int


# -- time ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1 << 16)  # a sync's events share few distinct times; parse each once
def _parse_time(value: str) -> tuple[float, str] | None:
    """(epoch seconds, ISO 8601 UTC with milliseconds), or None when not a datetime. A time
    without a zone is UTC (Braze: "without a time zone will default to midnight UTC")."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        m = _COLON_MILLIS.match(value)
        if m is None:
            return None
        try:
            t = datetime.fromisoformat(f"{m[1]}.{m[2]}{m[3]}")
        except ValueError:
            return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    try:
        return t.timestamp(), iso_utc(t)
    except (OverflowError, ValueError):  # an offset past year 1 or 9999 in UTC
        return None


def iso_utc(t: datetime) -> str:
    # isoformat pads the year to four digits (strftime's %Y does not on every platform), so the
    # stored strings compare in time order.
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def event_time(value: Any, now: float) -> str:
    """The time Braze stores for an object's ``time``: required, ISO 8601; a future time is moved
    to now ("Events with timestamps in the future will default to the current time")."""
    if not isinstance(value, str):
        raise ObjectError("'time' is required and must be an ISO 8601 datetime string")
    parsed = _parse_time(value)
    if parsed is None:
        raise ObjectError(f"'time' is not an ISO 8601 datetime: {value[:64]!r}")
    if parsed[0] > now:
        return iso_utc(datetime.fromtimestamp(now, UTC))
    return parsed[1]


# -- properties of custom events and purchases -----------------------------------------------------
def check_properties(props: Any, reserved: frozenset[str], purchase: bool) -> tuple[dict, int]:
    """The properties Braze keeps, and how many it dropped. Past 256 only the first 256 are kept
    (Braze's documented behaviour); they are checked after that cut (the docs are silent on
    whether a dropped property can still make the object invalid: amp_braze reads "only the
    first 256 will be captured" as the rest never being looked at)."""
    if props is None:
        return {}, 0
    if not isinstance(props, dict):
        raise ObjectError(f"{BAD_PROPERTIES}: 'properties' must be an object")
    dropped = 0
    if len(props) > rules.MAX_PROPERTIES:
        dropped = len(props) - rules.MAX_PROPERTIES
        props = dict(list(props.items())[: rules.MAX_PROPERTIES])
    nested = False
    max_key, max_str = rules.MAX_PROPERTY_KEY_CHARS, rules.MAX_PROPERTY_STRING_CHARS
    for key, value in props.items():
        if not key or len(key) > max_key or key[0] == "$":
            raise ObjectError(
                f"{BAD_PROPERTIES}: key {key[:64]!r} must be 1 to {max_key} characters "
                "and may not start with $"
            )
        if key in reserved:
            # Braze's exact wording for purchases; for events Braze only says "API errors".
            raise ObjectError(
                BAD_PROPERTIES if purchase else f"{BAD_PROPERTIES}: {key!r} is reserved"
            )
        t = type(value)
        if t is str:
            if len(value) > max_str:
                raise ObjectError(
                    f"{BAD_PROPERTIES}: the value of {key!r} is longer than {max_str} characters"
                )
        elif t is list or t is dict:
            nested = True
    if nested and len(orjson.dumps(props)) > rules.MAX_NESTED_PROPERTIES_BYTES:
        raise ObjectError(
            f"{BAD_PROPERTIES}: properties holding arrays or objects are larger than 100 KB"
        )
    return props, dropped


# -- the three kinds -------------------------------------------------------------------------------
def accept(array: str, obj: dict, now: float) -> Accepted:
    """Check one object of the ``events`` or ``purchases`` array; raises ``ObjectError``."""
    if array == "purchases":
        return _purchase(obj, now)
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError("'name' is required for an event and must be a non-empty string")
    spec = rules.ECOMMERCE_EVENTS.get(name)
    when = event_time(obj.get("time"), now)
    if spec is not None:
        props = obj.get("properties")
        check_ecommerce(spec, props)
        props, dropped = check_properties(props, rules.RESERVED_EVENT_KEYS, purchase=False)
        kind = name
    else:
        props, dropped = check_properties(
            obj.get("properties"), rules.RESERVED_EVENT_KEYS, purchase=False
        )
        kind = rules.CUSTOM
    return Accepted(kind, name, 1, {"name": name, "time": when, "properties": props}, dropped)


def _purchase(obj: dict, now: float) -> Accepted:
    product_id = obj.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise ObjectError("'product_id' is required for a purchase and must be a string")
    if len(product_id) > rules.MAX_PRODUCT_ID_CHARS:
        raise ObjectError(f"'product_id' is longer than {rules.MAX_PRODUCT_ID_CHARS} characters")
    currency = obj.get("currency")
    if currency is None:
        raise ObjectError("'currency' is required for a purchase")
    # Codes as ISO 4217 writes them (upper case); Braze's docs do not say whether "usd" passes.
    if not isinstance(currency, str) or currency not in rules.currency_codes():
        raise ObjectError(BAD_CURRENCY)
    price = obj.get("price")
    if price is None:
        raise ObjectError("'price' is required for a purchase")
    if type(price) not in _NUMBER:  # bool is not a number here
        raise ObjectError("'price' must be a number")
    quantity = obj.get("quantity", 1)
    if type(quantity) is not int:
        raise ObjectError("'quantity' must be an integer")
    if not 1 <= quantity <= rules.MAX_PURCHASE_QUANTITY:
        raise ObjectError(f"'quantity' must be between 1 and {rules.MAX_PURCHASE_QUANTITY}")
    when = event_time(obj.get("time"), now)
    props, dropped = check_properties(
        obj.get("properties"), rules.RESERVED_PURCHASE_KEYS, purchase=True
    )
    stored = {"product_id": product_id, "currency": currency, "price": price,
              "quantity": quantity, "time": when, "properties": props}  # fmt: skip
    return Accepted(rules.PURCHASE, product_id, quantity, stored, dropped)


# -- eCommerce schemas -----------------------------------------------------------------------------
_TYPES: dict[str, tuple[type, ...]] = {
    rules.STRING: (str,),
    rules.FLOAT: (int, float),  # an integer is a valid float; a boolean is neither
    rules.INTEGER: (int,),
    rules.ARRAY: (list,),
    rules.OBJECT: (dict,),
}


def _check_fields(
    props: dict, required: dict[str, str], optional: dict[str, str], where: str
) -> None:
    """Braze's three failure types, in this order: every required property present, nothing
    outside required + optional, each of the listed type; then money >= 0 and ISO 4217."""
    for key in required:
        if key not in props:
            raise ObjectError(f"missing_property: {where}{key}")
    for key in props:
        if key not in required and key not in optional:
            raise ObjectError(f"extra_property: {where}{key} (custom fields go under metadata)")
    for key, value in props.items():
        expected = required.get(key) or optional[key]
        if type(value) not in _TYPES[expected]:  # null is not of any type (docs silent)
            raise ObjectError(
                f"unexpected_data_type: {where}{key} must be {expected}, got {_json_type(value)}"
            )
        if key in rules.MONEY_FIELDS and value < 0:
            raise ObjectError(f"invalid_value: {where}{key} must be >= 0")
        if key == "currency" and value not in rules.currency_codes():
            raise ObjectError(f"invalid_value: {where}currency must be an ISO 4217 currency")


def check_ecommerce(spec: rules.EcommerceEvent, props: Any) -> None:
    """Braze's strict schema of one recommended eCommerce event; raises ``ObjectError`` naming
    the rule and the property (``missing_property: products[0].variant_id``)."""
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise ObjectError(
            f"unexpected_data_type: properties must be object, got {_json_type(props)}"
        )
    required = spec.required
    if spec.name == "ecommerce.cart_updated" and props.get("action", "replace") == "replace":
        required = {**required, "total_value": rules.FLOAT}  # required unless add / remove
    _check_fields(props, required, spec.optional, "")
    action = props.get("action")
    if action is not None and action not in rules.CART_ACTIONS:
        raise ObjectError(f"invalid_value: action must be one of {', '.join(rules.CART_ACTIONS)}")
    types = props.get("type")
    if type(types) is list:
        for i, v in enumerate(types):
            if type(v) is not str:
                raise ObjectError(
                    f"unexpected_data_type: type[{i}] must be string, got {_json_type(v)}"
                )
    # An empty products array passes: Braze lists products as required, not as non-empty.
    for i, product in enumerate(props.get("products") or ()):
        if type(product) is not dict:
            raise ObjectError(
                f"unexpected_data_type: products[{i}] must be object, got {_json_type(product)}"
            )
        _check_fields(product, rules.PRODUCT_REQUIRED, rules.PRODUCT_OPTIONAL, f"products[{i}].")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) is int:
        return "integer"
    return {float: "float", str: "string", list: "array", dict: "object"}.get(type(value), "?")


# -- recording ---------------------------------------------------------------------------------------
def record(profile: dict, accepted: Accepted, stats: Stats, pending: tuple[list, list]) -> None:
    """Put one accepted object on its profile: its counter, and the object in ``pending`` (the
    profile's new events and purchases, which the store files at the end of the request); bill
    its data points."""
    purchase = accepted.kind == rules.PURCHASE
    when = accepted.stored["time"]
    counters = profile.get("purchases" if purchase else "custom_events")
    if counters is None:
        counters = profile["purchases" if purchase else "custom_events"] = {}
    entry = counters.get(accepted.label)
    if entry is None:
        counters[accepted.label] = {"count": accepted.quantity, "first": when, "last": when}
    else:
        entry["count"] += accepted.quantity
        if when < entry["first"]:
            entry["first"] = when
        if when > entry["last"]:
            entry["last"] = when
    pending[purchase].append(accepted.stored)
    stats.data_points += rules.event_data_points(accepted.kind, accepted.quantity)
    if purchase:
        stats.purchase_quantity += accepted.quantity


def merge_counters(keep: dict, merged: dict, key: str) -> None:
    """/users/merge: the merged user's counters added to the kept user's (first the earlier,
    last the later)."""
    counters = keep.setdefault(key, {})
    for label, theirs in merged[key].items():
        mine = counters.get(label)
        if mine is None:
            counters[label] = dict(theirs)
        else:
            mine["count"] += theirs["count"]
            mine["first"] = min(mine["first"], theirs["first"])
            mine["last"] = max(mine["last"], theirs["last"])
