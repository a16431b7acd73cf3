"""The ``events:`` section: event streams, each row of a stream's query sent to Braze once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from amp_braze.braze import event_rules
from amp_braze.catalogue import SINGLE_SYNC, EventNames, destination_key, event_names
from amp_braze.config.errors import did_you_mean, problem
from amp_braze.config.section import Loading, Section, derived, set_by_loader
from amp_braze.config.values import Cron, FilePath, TimeZone, one_of, resolve_path

EventType = Literal[
    "custom",
    "purchase",
    "ecommerce.product_viewed",
    "ecommerce.cart_updated",
    "ecommerce.checkout_started",
    "ecommerce.order_placed",
    "ecommerce.order_cancelled",
    "ecommerce.order_refunded",
]
assert set(EventType.__args__) == set(event_rules.EVENT_TYPES)  # one list, in event_rules


class EventStream(Section):
    """One event stream: a query whose rows are what customers did, each sent to Braze once
    (by ``event_id``) as a custom event, a purchase or a recommended eCommerce event."""

    stream: str = set_by_loader(description="The stream's key under `events:`.")
    destination: str = derived(
        description="The destination it sends to, as syncs name it.",
        otherwise="the `braze:` destination (the single shape)",
    )
    sql: FilePath = Field(
        description="The query (over the tables `profile_sql` reads, feeds included): the "
        "identifier column(s), `event_id` (unique and stable: an order id), `time` and the "
        "type's fields; every other column is a property (`metadata` for eCommerce events)."
    )
    type: one_of(EventType, "event type") = Field(
        description="`custom`, `purchase`, or one of Braze's recommended eCommerce events "
        "(`ecommerce.order_placed`, ...); eCommerce events cost no data points."
    )
    name: str | None = Field(
        None,
        description="The event name, for `type: custom`; without it the query has a `name` column.",
    )
    schedule: Cron = derived(
        description="Cron of `<stream>_schedule`.", otherwise="`sync.schedule`"
    )
    timezone: TimeZone = derived(
        description="Time zone of `<stream>_schedule`: an IANA name.", otherwise="`sync.timezone`"
    )
    resend_uncertain: bool = Field(
        False,
        description="Events a crash left in doubt (Braze may or may not have them) are sent "
        "again (at least once) instead of being listed and left out (at most once).",
    )
    names: EventNames = set_by_loader(
        description="Its assets, job, schedule, pool, lease and ledger (amp_braze.catalogue)."
    )

    @model_validator(mode="after")
    def _name(self) -> EventStream:
        if self.name is not None and self.type != event_rules.CUSTOM:
            raise problem(f"`name` is for type: custom; a {self.type} has its own", at="name")
        if self.name is not None and not self.name.strip():
            raise problem("must not be blank", at="name")
        return self

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        data = super()._prepare(data, loading)
        data["stream"] = loading.name
        data.setdefault("schedule", loading.sync.schedule)
        data.setdefault("timezone", loading.sync.timezone)
        sql = data.get("sql")
        if isinstance(sql, str) and sql:
            data["sql"] = Path(resolve_path(sql, loading.base_dir))
            if not data["sql"].is_file():
                raise problem(f"file not found: {data['sql']}", at="sql")
        single = list(loading.destinations) == [SINGLE_SYNC] and loading.single
        if single:
            if "destination" in data:
                raise problem("the single braze: shape has one destination; leave this out",
                              at="destination")  # fmt: skip
            data["destination"] = SINGLE_SYNC
        dest = data.get("destination")
        if not isinstance(dest, str):
            raise problem("is required (a destination name)", at="destination")
        if dest not in loading.destinations:
            hint = did_you_mean(dest, list(loading.destinations))
            raise problem(f"unknown destination {dest!r}{hint}", at="destination")
        b = loading.destinations[dest]
        key = destination_key(b.instance, b.rest_endpoint, b.identifier)
        data["names"] = event_names(loading.name, dest, key, single)
        return data
