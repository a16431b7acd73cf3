"""The configuration reference is generated from the models: the committed page is what the
models say, every key has a description, and every key the demo and the design's example use is
in it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from amp_braze.config import BUNDLED_CONFIG
from amp_braze.config.reference import DOC, reference, sections
from amp_braze.config.section import file_keys

REPO = Path(__file__).resolve().parents[2]

# DESIGN.md, "The configuration's shape" (its database feed, written there among the syncs, is a
# feed: it is under sources: here).
DESIGN_EXAMPLE = """
storage: ./.amp_braze
sources:
  pos:
    path: data/pos_customers.csv
    customer_key: customer_id
    updated_at: updated_at
    priority: 2
    columns: {EMAIL: email}
  crm:
    database: ${CRM_DATABASE_URL}
    table: public.customers
    customer_key: customer_id
    updated_at: updated_at
    lookback: 1h
    deleted_at: deleted_at
    phone_region: GB
profile_sql: sql/braze_customer_attributes.sql
braze:
  instance: US-03
  identifier: external_id
  update_existing_only: false
  on_removed_user: ignore
  segment_attributes: boolean
  segment_prefix: amp_
  rate_limit: {requests: 3000, per_seconds: 3}
segments:
  vip:
    sql: SELECT external_id FROM braze_customer_attributes WHERE lifetime_value > 1000
  lapsed:
    rules:
      all:
        - {attribute: days_since_last_purchase, op: ">", value: 180}
        - {attribute: email_subscribe, op: "=", value: opted_in}
    exclude: [vip]
sync:
  schedule: "0 6 * * *"
destinations:
  us: {instance: US-03, api_key_env: BRAZE_API_KEY_US, identifier: external_id}
  eu: {instance: EU-01, api_key_env: BRAZE_API_KEY_EU}
syncs:
  profiles_us: {destination: us, schedule: "0 6 * * *"}
  loyalty_us: {destination: us, sql: sql/loyalty.sql}
  winback_eu:
    destination: eu
    audience: lapsed
    exclude: [vip]
    attributes: [email, first_name, lifetime_value]
    segments: [lapsed]
phone_region: US
events:
  orders_us:
    destination: us
    sql: sql/orders.sql
    type: ecommerce.order_placed
    schedule: "*/30 * * * *"
scale:
  shards: 1
identity:
  fields: {given_name: name, surname: name, date_of_birth: date, email: email, phone: phone}
  blocking: [[surname, given_name], [date_of_birth], [email], [phone]]
  deterministic: [[loyalty_id]]
  threshold: 0.9
currents:
  bucket: my-currents-bucket
  prefix: currents
  lookback_hours: 48
"""

# Keys the design describes that are not built yet (database feeds, event streams, shards): not
# in the reference until they are, and then this list shrinks.
NOT_BUILT: set[str] = set()  # keys DESIGN.md shows that are not built yet

NAMED = {"sources", "segments", "destinations", "syncs", "events"}  # keys below are names
OPAQUE = {"columns", "types", "fields", "rules", "subscription_groups"}  # the user's own keys


def key_paths(data: dict, prefix: str = "") -> set[str]:
    """Every key path a file uses, with ``<name>`` for the names it chooses."""
    out = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.add(path)
        if isinstance(value, dict) and key not in OPAQUE:
            if key in NAMED and not prefix:
                for entry in value.values():
                    out |= key_paths(entry, f"{path}.<name>")
            else:
                out |= key_paths(value, path)
    return out


def test_the_committed_reference_is_what_the_models_say():
    """Regenerate with: python -m amp_braze.config.reference > docs/reference/configuration.md"""
    assert (REPO / DOC).read_text() == reference()


def test_every_key_has_a_description():
    missing = [
        f"{prefix}.{name}" if prefix else name
        for prefix, model in sections()
        for name in file_keys(model)
        if not (model.model_fields[name].description or "").strip()
    ]
    assert missing == []


def test_every_key_of_the_demo_and_the_design_example_is_in_the_reference():
    text = reference()
    demo = key_paths(yaml.safe_load(BUNDLED_CONFIG.read_text()))
    design = key_paths(yaml.safe_load(textwrap.dedent(DESIGN_EXAMPLE)))
    assert {"syncs.<name>.audience", "braze.rate_limit.requests", "identity.blocking"} <= design
    assert "destinations.<name>.rest_endpoint" in demo
    absent = sorted(k for k in (demo | design) - NOT_BUILT if f"`{k}`" not in text)
    assert absent == []
    assert sorted(k for k in NOT_BUILT if f"`{k}`" in text) == []
