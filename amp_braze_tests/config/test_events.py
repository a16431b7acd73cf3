"""``events:`` in the configuration: each stream checked when the file loads, each mistake named
by its key path."""

from __future__ import annotations

import pytest

from amp_braze.config import ConfigError, load_config
from amp_braze_tests.support.configs import FEED_ONLY, write_config

SINGLE = FEED_ONLY + "braze:\n  rest_endpoint: http://127.0.0.1:9\nevents:\n{events}"
MANY = (
    FEED_ONLY
    + """destinations:
  us: {{rest_endpoint: "http://127.0.0.1:9"}}
syncs:
  profiles_us: {{destination: us}}
events:
{events}"""
)


def _load(tmp_path, body: str):
    (tmp_path / "orders.sql").parent.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp_path, body)
    (tmp_path / "orders.sql").write_text("SELECT 1")
    return load_config(path)


def _bad(tmp_path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, body)
    return str(info.value).split(": ", 1)[1]


def test_a_stream_gets_its_names_and_its_destinations_lease(tmp_path):
    cfg = _load(tmp_path / "many", MANY.format(events="  orders:\n    destination: us\n"
                                               "    sql: orders.sql\n    type: purchase\n"))  # fmt: skip
    s = cfg.events["orders"]
    assert (s.type, s.name, s.resend_uncertain, s.schedule) == (
        "purchase",
        None,
        False,
        "0 6 * * *",
    )
    assert s.names.lease == cfg.syncs["profiles_us"].names.lease == "sync/us/lease"
    assert s.names.pool == cfg.syncs["profiles_us"].names.pool
    assert (s.names.job, s.names.group, s.names.ledger) == ("orders_job", "orders", "events/orders")
    one = _load(tmp_path / "one", SINGLE.format(
        events="  visits: {sql: orders.sql, type: custom, name: store_visit, resend_uncertain: true}\n"
    ))  # fmt: skip
    v = one.events["visits"]
    assert (v.destination, v.name, v.resend_uncertain) == ("braze", "store_visit", True)
    assert v.names.lease == one.syncs["braze"].names.lease


@pytest.mark.parametrize(
    ("shape", "entry", "message"),
    [
        (MANY, "  o: {destination: eu, sql: orders.sql, type: purchase}",
         "events.o.destination: unknown destination 'eu'"),
        (MANY, "  o: {sql: orders.sql, type: purchase}", "events.o.destination: is required"),
        (SINGLE, "  o: {destination: us, sql: orders.sql, type: purchase}",
         "events.o.destination: the single braze: shape has one destination; leave this out"),
        (MANY, "  o: {destination: us, sql: nope.sql, type: purchase}", "events.o.sql: file not found"),
        (MANY, "  o: {destination: us, sql: orders.sql, type: order}",
         "events.o.type: unknown event type 'order'; use one of custom, purchase, ecommerce."),
        (MANY, "  o: {destination: us, sql: orders.sql, type: purchase, name: buy}",
         "events.o.name: `name` is for type: custom"),
        (MANY, "  profiles_us: {destination: us, sql: orders.sql, type: custom}",
         "events.profiles_us: 'profiles_us' is also a sync's name"),
        (MANY, "  o: {destination: us, sql: orders.sql, type: custom, resend: true}",
         "events.o.resend: unknown key"),
    ],
)  # fmt: skip
def test_mistakes_name_their_key(tmp_path, shape, entry, message):
    got = _bad(tmp_path, shape.format(events=entry + "\n"))
    assert got.startswith(message), got
