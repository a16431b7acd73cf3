"""Braze's rules for events, purchases, eCommerce events and subscription groups, in one place.

Sources (Braze's documentation, as collected in the project's reference notes):

- Event object: https://www.braze.com/docs/api/objects_filters/event_object/ (``name`` and
  ``time`` required; property keys non-empty, at most 255 characters, no leading ``$``; string
  values at most 255 characters; 100 KB of properties when they hold arrays or objects; ``time``
  and ``event_name`` reserved; "Events with timestamps in the future will default to the current
  time").
- Custom event properties: https://www.braze.com/docs/user_guide/data/activation/events/custom_events/custom_event_properties/
  (at most 256 properties; more are dropped by Braze).
- Purchase object: https://www.braze.com/docs/api/objects_filters/purchase_object/ and
  https://www.braze.com/docs/user_guide/data/activation/events/purchase_events/ (``product_id`` at
  most 255 characters, ``currency`` ISO 4217, ``price``, ``time`` required; ``quantity`` at most
  100, counted as that many purchases; reserved property keys).
- Recommended eCommerce events: https://www.braze.com/docs/user_guide/data/activation/events/recommended_events/
  (the six names and their required properties; custom fields only under ``metadata``; money
  at least 0; an invalid event is dropped whole while the answer says success with ``errors``;
  eCommerce events cost no data points).
- /users/track: https://www.braze.com/docs/api/endpoints/user_data/post_user_track/ (75 objects
  across ``attributes``, ``events`` and ``purchases`` together: ``field_rules``).
- Data points: https://www.braze.com/docs/user_guide/data/infrastructure/data_points/ (custom
  events and purchases are billed; subscription state changes are not).
- Subscription groups: https://www.braze.com/docs/api/endpoints/subscription_groups/post_update_user_subscription_group_status_v2/
  (``POST /v2/subscription/status/set``, at most 50 ids per group object; 5,000 requests per
  minute shared with the v1 endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

# -- custom events and purchases -----------------------------------------------------------------
MAX_PROPERTIES = 256
MAX_PROPERTY_KEY_CHARS = 255
MAX_PROPERTY_STRING_CHARS = 255
MAX_NESTED_PROPERTIES_BYTES = 100 * 1024  # properties holding an array or an object
RESERVED_EVENT_KEYS = frozenset({"time", "event_name"})
RESERVED_PURCHASE_KEYS = frozenset(
    {"time", "product_id", "quantity", "event_name", "price", "currency"}
)
MAX_PRODUCT_ID_CHARS = 255
MAX_PURCHASE_QUANTITY = 100
# Braze moves a future event to now; amp_braze refuses one dated past this instead (a clock or
# time zone mistake should be seen, not hidden).
FUTURE_TOLERANCE = timedelta(minutes=5)

# -- eCommerce events ----------------------------------------------------------------------------
CUSTOM, PURCHASE = "custom", "purchase"
STRING, FLOAT, INTEGER, ARRAY, OBJECT = "string", "float", "integer", "array", "object"
PRODUCT_REQUIRED = {
    "product_id": STRING,
    "product_name": STRING,
    "variant_id": STRING,
    "quantity": INTEGER,
    "price": FLOAT,
}
PRODUCT_OPTIONAL = {"image_url": STRING, "product_url": STRING, "metadata": OBJECT}
MONEY_FIELDS = frozenset({"price", "total_value", "subtotal_value", "tax", "shipping",
                          "total_discounts"})  # fmt: skip


@dataclass(frozen=True)
class EcommerceEvent:
    """One recommended eCommerce event: its required and optional top-level properties (a
    property named ``products`` is a list of products, ``PRODUCT_REQUIRED`` each)."""

    name: str
    required: dict[str, str]
    optional: dict[str, str]

    @property
    def fields(self) -> dict[str, str]:
        return {**self.required, **self.optional}

    @property
    def has_products(self) -> bool:
        return "products" in self.required


_ORDER_OPTIONAL = {"subtotal_value": FLOAT, "tax": FLOAT, "shipping": FLOAT,
                   "total_discounts": FLOAT, "discounts": ARRAY, "metadata": OBJECT}  # fmt: skip
ECOMMERCE_EVENTS: dict[str, EcommerceEvent] = {
    e.name: e
    for e in (
        EcommerceEvent(
            "ecommerce.product_viewed",
            {"product_id": STRING, "product_name": STRING, "variant_id": STRING,
             "price": FLOAT, "currency": STRING, "source": STRING},
            {"image_url": STRING, "product_url": STRING, "type": ARRAY, "metadata": OBJECT},
        ),
        EcommerceEvent(
            "ecommerce.cart_updated",
            {"cart_id": STRING, "currency": STRING, "products": ARRAY, "source": STRING},
            {"action": STRING, "total_value": FLOAT, "subtotal_value": FLOAT, "tax": FLOAT,
             "shipping": FLOAT, "metadata": OBJECT},
        ),
        EcommerceEvent(
            "ecommerce.checkout_started",
            {"checkout_id": STRING, "total_value": FLOAT, "currency": STRING,
             "products": ARRAY, "source": STRING},
            {"cart_id": STRING, "subtotal_value": FLOAT, "tax": FLOAT, "shipping": FLOAT,
             "metadata": OBJECT},
        ),
        EcommerceEvent(
            "ecommerce.order_placed",
            {"order_id": STRING, "total_value": FLOAT, "currency": STRING, "products": ARRAY,
             "source": STRING},
            {"cart_id": STRING, **_ORDER_OPTIONAL},
        ),
        EcommerceEvent(
            "ecommerce.order_cancelled",
            {"order_id": STRING, "total_value": FLOAT, "currency": STRING,
             "cancel_reason": STRING, "products": ARRAY, "source": STRING},
            _ORDER_OPTIONAL,
        ),
        EcommerceEvent(
            "ecommerce.order_refunded",
            {"order_id": STRING, "total_value": FLOAT, "currency": STRING, "products": ARRAY,
             "source": STRING},
            {"total_discounts": FLOAT, "discounts": ARRAY, "metadata": OBJECT},
        ),
    )
}  # fmt: skip
CART_ACTIONS = ("add", "remove", "replace")  # total_value is required unless add / remove
EVENT_TYPES = (CUSTOM, PURCHASE, *ECOMMERCE_EVENTS)

# -- subscription groups -------------------------------------------------------------------------
SUBSCRIPTION_SET = "/v2/subscription/status/set"
SUBSCRIPTION_GET = "/subscription/status/get"
GROUP_STATES = ("subscribed", "unsubscribed")
MAX_SUBSCRIPTION_IDS = 50  # external_ids (or emails, phones) per group object
SUBSCRIPTION_RATE_LIMIT = 5000
SUBSCRIPTION_RATE_WINDOW_SECONDS = 60.0


def event_data_points(kind: str, quantity: int = 1) -> int:
    """Data points one object costs: a custom event 1, a purchase one per unit (Braze records a
    quantity of N as N purchases; amp_braze reads its billing of "all purchases" as one point
    each), an eCommerce event none. Properties are free unless made segmentable in Braze."""
    if kind in ECOMMERCE_EVENTS:
        return 0
    return max(1, quantity) if kind == PURCHASE else 1


@cache
def currency_codes() -> frozenset[str]:
    """ISO 4217 alphabetic codes."""
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.currencies)
