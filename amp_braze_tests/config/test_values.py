"""Kinds of value the configuration checks where they are declared: time zones, one name where a
list is expected, bounds; and the models as values (frozen, no unknown fields, names set at load)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from amp_braze.catalogue import destination_key, sync_names
from amp_braze.config import BrazeConfig, ConfigError, SyncSpec, load_config
from amp_braze_tests.support.configs import MINIMAL, write_config

MULTI = """
storage: ./store
sources:
  pos:
    path: pos.csv
    record_id: customer_id
    updated_at: updated_at
profile_sql: profile.sql
identity:
  fields: {email: email, phone: phone}
  blocking: email
  deterministic: loyalty_id
  junk_values: n/a
  one_record_per_person: pos
segments:
  vip: {sql: SELECT external_id FROM braze_customer_attributes}
  lapsed: {rules: {attribute: x, op: is_null}, exclude: vip}
sync:
  timezone: Europe/London
destinations:
  us: {rest_endpoint: http://127.0.0.1:9}
  eu: {rest_endpoint: http://127.0.0.1:8, api_key_env: BRAZE_API_KEY_EU}
syncs:
  profiles_us: {destination: us}
  winback_eu:
    destination: eu
    audience: lapsed
    exclude: vip
    attributes: email
    segments: lapsed
    timezone: America/New_York
"""


def _bad(tmp_path: Path, body: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, body))
    return info.value


def test_one_name_where_a_list_is_expected(tmp_path):
    cfg = load_config(write_config(tmp_path, MULTI))
    win = cfg.syncs["winback_eu"]
    assert (win.audience, win.exclude, win.attributes, win.segments) == (
        ("lapsed",), ("vip",), ("email",), ("lapsed",),
    )  # fmt: skip
    assert cfg.segments["lapsed"].exclude == ("vip",)
    ident = cfg.identity
    assert ident.blocking == (("email",),) and ident.deterministic == (("loyalty_id",),)
    assert ident.junk_values == ("n/a",) and ident.one_record_per_person == ("pos",)
    # A list is still a list; an empty one sends no segment attributes.
    listed = MULTI.replace("segments: lapsed\n", "segments: []\n").replace(
        "audience: lapsed", "audience: [lapsed, vip]"
    )
    win = load_config(write_config(tmp_path, listed)).syncs["winback_eu"]
    assert win.audience == ("lapsed", "vip") and win.segments == ()


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("audience: lapsed", "audience: lapsd", "syncs.winback_eu.audience[0]",
         "unknown segment 'lapsd' (did you mean 'lapsed'?)"),
        ("audience: lapsed", "audience: [lapsed, 7]", "syncs.winback_eu.audience[1]",
         "must be a string, got a int"),
        ("exclude: vip\n    attributes", "exclude: {vip: 1}\n    attributes",
         "syncs.winback_eu.exclude", "must be a list, got a mapping"),
        ("destination: eu", "destination: eu1", "syncs.winback_eu.destination",
         "unknown destination 'eu1' (did you mean 'eu'?)"),
        ("blocking: email", "blocking: phon", "identity.blocking[0]",
         "'phon' is not in identity.fields (email, phone)"),
        ("one_record_per_person: pos", "one_record_per_person: crm",
         "identity.one_record_per_person[0]", "'crm' is not a source; sources: pos"),
    ],
)  # fmt: skip
def test_name_list_mistakes_name_their_key(tmp_path, old, new, key, words):
    assert old in MULTI
    err = _bad(tmp_path, MULTI.replace(old, new))
    assert err.key == key
    assert words in str(err)


def test_time_zones_are_iana_names_and_syncs_take_the_sync_default(tmp_path):
    cfg = load_config(write_config(tmp_path, MULTI))
    assert cfg.sync.timezone == "Europe/London"
    assert cfg.syncs["profiles_us"].timezone == "Europe/London"  # sync.timezone, the default
    assert cfg.syncs["winback_eu"].timezone == "America/New_York"
    assert load_config(write_config(tmp_path, MINIMAL)).syncs["braze"].timezone == "UTC"


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("timezone: Europe/London", "timezone: Europe/Londn", "sync.timezone",
         "unknown time zone 'Europe/Londn' (did you mean 'Europe/London'?)"),
        ("timezone: Europe/London", "timezone: europe/london", "sync.timezone",
         "(did you mean 'Europe/London'?); give an IANA name such as Europe/London"),
        ("timezone: America/New_York", "timezone: EST5", "syncs.winback_eu.timezone",
         "unknown time zone 'EST5'"),
        ("timezone: America/New_York", "timezone: 5", "syncs.winback_eu.timezone",
         "must be a string, got a int"),
    ],
)  # fmt: skip
def test_time_zone_mistakes_name_their_key(tmp_path, old, new, key, words):
    err = _bad(tmp_path, MULTI.replace(old, new))
    assert err.key == key
    assert words in str(err)


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("  objects_per_request: 76", "braze.objects_per_request",
         "must be between 1 and 75 (Braze's limit); got 76"),
        ("  max_wait_seconds: -1", "braze.max_wait_seconds", "must be 0 or more"),
        ("  rate_limit: {per_seconds: 0}", "braze.rate_limit.per_seconds", "must be positive"),
        ("  rate_limit: {request: 10}", "braze.rate_limit.request",
         "unknown key (did you mean 'requests'?); known keys here: per_seconds, requests"),
        ("  name: other", "braze.name", "unknown key"),  # the loader names a destination
        ("  phone_region: GB", "braze.phone_region", "unknown key"),  # the top-level key's
        ("  on_removed_user: delete", "braze.on_removed_user",
         "must be one of ignore, unset; got 'delete'"),
        ("  api_key_env: my-key", "braze.api_key_env", "must be an environment variable name"),
        ("  concurrency: 2.5", "braze.concurrency", "must be an integer, got a float"),
        ("  timeout_seconds: '30'", "braze.timeout_seconds", "must be a number, got a string"),
        ("  update_existing_only: 'no'", "braze.update_existing_only",
         "must be a boolean, got a string"),
    ],
)  # fmt: skip
def test_destination_mistakes_name_their_key(tmp_path, extra, key, words):
    err = _bad(tmp_path, MINIMAL + extra + "\n")
    assert err.key == key
    assert words in str(err)


def test_a_null_key_is_an_absent_one(tmp_path):
    body = MINIMAL.replace(
        "    updated_at: updated_at", "    updated_at: updated_at\n    priority:"
    )
    assert load_config(write_config(tmp_path, body)).sources["pos"].priority == 0


def test_names_are_set_at_load_as_the_catalogue_builds_them(tmp_path):
    single = load_config(write_config(tmp_path / "single", MINIMAL)).syncs["braze"]
    key = destination_key(None, "http://127.0.0.1:9", "external_id")
    assert single.names == sync_names("braze", "braze", key, True, False)
    (tmp_path / "multi").mkdir()
    (tmp_path / "multi" / "own.sql").write_text("SELECT customer_id AS external_id, 1 AS x FROM t")
    body = MULTI.replace(
        "profiles_us: {destination: us}", "profiles_us: {destination: us, sql: own.sql}"
    )
    cfg = load_config(write_config(tmp_path / "multi", body))
    key_eu = destination_key(None, "http://127.0.0.1:8", "external_id")
    assert cfg.syncs["winback_eu"].names == sync_names("winback_eu", "eu", key_eu, False, False)
    key_us = destination_key(None, "http://127.0.0.1:9", "external_id")
    assert cfg.syncs["profiles_us"].names == sync_names("profiles_us", "us", key_us, False, True)
    assert cfg.syncs["profiles_us"].with_names(cfg.destinations["us"]) == cfg.syncs["profiles_us"]
    err = _bad(tmp_path, MULTI.replace("{destination: us}", "{destination: us, names: x}"))
    assert err.key == "syncs.profiles_us.names" and "unknown key" in err.problem


def test_models_built_in_code_are_frozen_and_take_no_unknown_fields(tmp_path):
    b = BrazeConfig(instance="us-03")
    assert b.instance == "US-03" and b.rate_limit.requests == 3000 and b.phone_region == "US"
    with pytest.raises(pydantic.ValidationError):
        b.concurrency = 3
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        BrazeConfig(instance="US-03", concurency=3)
    with pytest.raises(pydantic.ValidationError, match="is required"):
        BrazeConfig()
    spec = load_config(write_config(tmp_path, MINIMAL)).syncs["braze"]
    assert {spec: 1}[spec] == 1  # hashable
    with pytest.raises(pydantic.ValidationError, match="names"):
        SyncSpec(name="s", destination="d", schedule="0 6 * * *", timezone="UTC")
