"""Configuration: loading order, path resolution, and one clear error per kind of mistake."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import polars as pl
import pytest

from amp_braze.config import BUNDLED_CONFIG, ConfigError, load_config
from amp_braze_tests.support.configs import MINIMAL, write_config


def _bad(tmp_path: Path, body: str) -> ConfigError:
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_minimal_config_resolves_paths_against_its_folder(tmp_path):
    cfg = load_config(write_config(tmp_path / "conf", MINIMAL))
    assert cfg.storage == str((tmp_path / "conf" / "store").resolve())
    assert cfg.sources["pos"].path == str((tmp_path / "conf" / "pos.csv").resolve())
    assert cfg.sources["pos"].format == "csv"
    assert cfg.profile_sql == (tmp_path / "conf" / "profile.sql").resolve()
    assert cfg.braze.identifier == "external_id"
    assert cfg.braze.rate_limit.requests == 3000 and cfg.braze.rate_limit.per_seconds == 3.0
    assert cfg.sync.schedule == "0 6 * * *"
    assert cfg.currents is None


def test_bundled_demo_config_is_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_BRAZE_HOME", str(tmp_path))
    cfg = load_config(BUNDLED_CONFIG)
    assert set(cfg.sources) == {"pos", "ecommerce", "loyalty", "web_orders"}
    assert set(cfg.profile_sources) == {"pos", "ecommerce", "loyalty"}  # orders: a table only
    assert cfg.events["orders_us"].type == "ecommerce.order_placed"
    assert cfg.events["orders_us"].names.pool == cfg.syncs["profiles_us"].names.pool
    assert cfg.sources["pos"].path == str(tmp_path / ".amp_braze/demo_data/pos_customers.csv")
    assert cfg.sources["loyalty"].format == "ndjson"
    assert cfg.segments["lapsed"].exclude == ("vip",)
    assert cfg.currents is not None and cfg.currents.lookback_hours == 48


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        (
            "storage: ./store",
            "storage: ./store\nstorag: x",
            "storag",
            "unknown key (did you mean 'storage'?)",
        ),
        (
            "    updated_at: updated_at",
            "    updated_at: updated_at\n    priorty: 2",
            "sources.pos.priorty",
            "did you mean 'priority'",
        ),
        (
            "    updated_at: updated_at",
            "    updated_at: updated_at\n    priority: high",
            "sources.pos.priority",
            "must be an integer, got a string",
        ),
        ("profile.sql", "missing.sql", "profile_sql", "file not found"),
        (
            "  rest_endpoint: http://127.0.0.1:9",
            "  instance: US-99",
            "braze.instance",
            "unknown Braze instance 'US-99'",
        ),
        (
            "  rest_endpoint: http://127.0.0.1:9",
            "  instance: US-3",
            "braze.instance",
            "did you mean US-03",
        ),
        (
            "  rest_endpoint: http://127.0.0.1:9",
            "  rest_endpoint: http://rest.iad-03.braze.com",
            "braze.rest_endpoint",
            "plain http",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nsync: {schedule: '61 * * * *'}",
            "sync.schedule",
            "not a valid cron expression",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nsync: {keep_state_versions: 1}",
            "sync.keep_state_versions",
            "must be at least 2",
        ),
        ("    customer_key: customer_id\n", "", "sources.pos.customer_key", "is required"),
        ("    path: pos.csv", "    path: pos.xlsx", "sources.pos.path", "cannot tell the format"),
        (
            "  rest_endpoint: http://127.0.0.1:9",
            "  rest_endpoint: http://127.0.0.1:9\n  identifier: email",
            "braze.identifier",
            "must be one of external_id, braze_id, user_alias",
        ),
        (
            "  rest_endpoint: http://127.0.0.1:9",
            "  rest_endpoint: http://127.0.0.1:9\n  rate_limit: {requests: 0}",
            "braze.rate_limit.requests",
            "must be positive",
        ),
        (
            "    updated_at: updated_at",
            "    updated_at: updated_at\n    types: {phone: text}",
            "sources.pos.types.phone",
            "unknown type 'text'",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nidentity: {fields: {email: email}}",
            "sources.pos.record_id",
            "is required",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nidentity: {fields: {email: mail}}",
            "identity.fields.email",
            "unknown kind 'mail'; use one of name, exact, email",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nidentity: {fields: {email: email}, blocking: [[phone]]}",
            "identity.blocking[0]",
            "'phone' is not in identity.fields",
        ),
        (
            "profile_sql: profile.sql",
            "profile_sql: profile.sql\nidentity: {fields: {email: email}, threshold: 1.5}",
            "identity.threshold",
            "must be above 0 and at most 1",
        ),
        (
            "    customer_key: customer_id\n",
            "    record_id: customer_id\n",
            "identity.one_record_per_person[0]",
            "'crm' is not a source; sources: pos",
        ),
        ("storage: ./store", "storage: [a, b]", "storage", "must be a string, got a list"),
        (
            "storage: ./store",
            "storage: ${NOT_SET_ANYWHERE_42}",
            "storage",
            "environment variable NOT_SET_ANYWHERE_42 is not set",
        ),
    ],
)
def test_each_mistake_names_its_key(tmp_path, old, new, key, words):
    assert old in MINIMAL
    body = MINIMAL.replace(old, new)
    if key.startswith("identity.one_record"):
        body += "identity: {fields: {email: email}, one_record_per_person: [crm]}\n"
    err = _bad(tmp_path, body)
    assert err.key == key
    assert words in str(err)
    assert str(err).startswith(str(tmp_path / "amp_braze.yaml"))


@pytest.mark.parametrize(
    ("segments", "key", "words"),
    [
        (
            "  a: {rules: {attribute: x, op: '~', value: 1}}",
            "segments.a.rules.op",
            "unknown op '~'",
        ),
        (
            "  a: {rules: {all: [{attribute: x, op: in, value: 3}]}}",
            "segments.a.rules.all[0].value",
            "needs a list",
        ),
        ("  a: {rules: {any: []}}", "segments.a.rules.any", "non-empty list"),
        (
            "  a: {rules: {attribute: x, op: between, value: [1]}}",
            "segments.a.rules.value",
            "two values",
        ),
        ("  a: {sql: SELECT 1, exclude: [b]}", "segments.a.exclude[0]", "unknown segment 'b'"),
        (
            "  a: {sql: SELECT 1, rules: {attribute: x, op: is_null}}",
            "segments.a",
            "exactly one of",
        ),
        (
            "  a: {sql: SELECT 1, exclude: [b]}\n  b: {sql: SELECT 1, exclude: [a]}",
            "segments.a",
            "cycle",
        ),
        (
            "  a: {rules: {attribute: x, op: is_null, value: 1}}",
            "segments.a.rules.value",
            "takes no value",
        ),
        (
            "  a: {rules: {not: {attribute: x, op: within_last_days, value: soon}}}",
            "segments.a.rules.not.value",
            "number of days",
        ),
        ("  1a: {sql: SELECT 1}", "segments.1a", "must start with a letter"),
    ],
)
def test_segment_mistakes_name_their_key(tmp_path, segments, key, words):
    err = _bad(tmp_path, MINIMAL + "segments:\n" + segments + "\n")
    assert err.key == key
    assert words in str(err)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "amp_braze.yaml"
    path.write_text("storage: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


def test_environment_expansion_with_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_BUCKET", "brand-currents")
    body = MINIMAL + "currents: {bucket: '${MY_BUCKET}', prefix: '${MY_PREFIX:-braze/currents}/'}\n"
    cfg = load_config(write_config(tmp_path, body))
    assert cfg.currents.bucket == "brand-currents"
    assert cfg.currents.prefix == "braze/currents"


def test_load_order_env_then_local_then_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMP_BRAZE_CONFIG", raising=False)
    assert load_config().path == BUNDLED_CONFIG
    local = write_config(tmp_path, MINIMAL)
    assert load_config().path == local.resolve()
    other = write_config(tmp_path / "elsewhere", MINIMAL.replace("./store", "./other"))
    monkeypatch.setenv("AMP_BRAZE_CONFIG", str(other))
    cfg = load_config()
    assert cfg.path == other
    assert cfg.storage.endswith("elsewhere/other")


def test_bad_file_stops_the_code_location_with_one_clear_error(tmp_path):
    path = write_config(
        tmp_path, MINIMAL.replace("US-03", "x").replace("http://127.0.0.1:9", "ftp://x")
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.run(  # loading the code location builds the definitions from the file
        [dagster, "asset", "list", "-m", "amp_braze.definitions"],
        env={"AMP_BRAZE_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr
    assert "braze.rest_endpoint: 'ftp://x' is not an http(s) URL" in proc.stderr


def test_cli_validate_reports_key_and_missing_feed(tmp_path):
    cli = [sys.executable, "-m", "amp_braze.cli", "validate", "--config"]
    bad = write_config(tmp_path / "bad", MINIMAL.replace("customer_key", "customer_kye"))
    proc = subprocess.run([*cli, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert (
        "sources.pos.customer_key: is required (is 'customer_kye' a misspelling of it?)"
        in proc.stderr
    )
    good = write_config(tmp_path / "good", MINIMAL)
    proc = subprocess.run([*cli, str(good)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "sources.pos.path: no file matches" in proc.stdout
    (tmp_path / "good" / "pos.csv").write_text("customer_id,updated_at\n1,2026-01-01\n")
    proc = subprocess.run([*cli, str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "sources.pos: 1 file(s) (csv)" in proc.stdout


def test_yaml_documented_example_in_design_parses(tmp_path):
    body = textwrap.dedent(
        """
        storage: s3://bucket/prefix
        sources:
          pos:
            path: s3://bucket/feeds/pos_*.csv
            customer_key: customer_id
            updated_at: updated_at
            priority: 2
            columns: {EMAIL: email}
        profile_sql: profile.sql
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
        currents:
          bucket: my-currents-bucket
          prefix: currents
          lookback_hours: 48
        """
    )
    cfg = load_config(write_config(tmp_path, body))
    assert cfg.storage == "s3://bucket/prefix"
    assert cfg.sources["pos"].path == "s3://bucket/feeds/pos_*.csv"
    assert cfg.braze.instance == "US-03"
    assert cfg.segments["lapsed"].rules["all"][0]["op"] == ">"


def test_validate_says_which_file_and_never_ok_above_a_failure(tmp_path):
    """Before: 'configuration OK' printed first, then the missing feeds; nothing said that the
    bundled demo configuration had been checked because no other was found."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMP_BRAZE_CONFIG", "AMP_BRAZE_HOME")}
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "validate"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first == (
        f"checking {BUNDLED_CONFIG} (the bundled demo configuration: $AMP_BRAZE_CONFIG is not "
        "set and there is no ./amp_braze.yaml)"
    )
    assert "configuration OK" not in proc.stdout
    assert (
        proc.stdout.splitlines()[-1] == f"4 problem(s) in {BUNDLED_CONFIG}"
    )  # four feeds not generated yet
    (tmp_path / "amp_braze.yaml").write_text(MINIMAL)
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "validate"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.stdout.startswith(
        f"checking {tmp_path / 'amp_braze.yaml'} (./amp_braze.yaml in the working directory)"
    )


def test_plan_command_works_on_the_bundled_configuration_with_currents(tmp_path):
    """Before: the selection pulled in the partitioned Currents asset without its S3 resource,
    so `amp-braze plan` failed for every configuration with a currents section."""
    from amp_braze.profiles.sample_data import generate

    generate(tmp_path / ".amp_braze" / "demo_data", customers=400, shared_key=False)
    env = {k: v for k, v in os.environ.items() if k != "AMP_BRAZE_CONFIG"}
    env["AMP_BRAZE_HOME"] = str(tmp_path)
    out = tmp_path / "requests.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "plan", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"planning with {BUNDLED_CONFIG} (the bundled demo")
    wanted = pl.read_parquet(
        tmp_path / ".amp_braze/storage/tables/braze_customer_attributes.parquet"
    )
    # One file per sync of the demo: the whole table to us, the campaign to eu.
    for sync in ("profiles_us", "winback_eu"):
        lines = (tmp_path / f"requests.{sync}.jsonl").read_text().splitlines()
        users = sum(len(orjson.loads(line)["attributes"]) for line in lines)
        assert (
            f"dry run: nothing was sent. {len(lines)} requests with {users:,} users" in proc.stdout
        )
        if sync == "profiles_us":
            assert users == wanted.height > 390  # everyone the field rules let through
        else:
            assert 0 < users < wanted.height  # the campaign's audience only


def test_a_code_location_without_currents_does_not_import_dagster_aws(tmp_path):
    """Every Dagster step process loads the code location; dagster_aws costs it ~0.25 s more
    and is only needed to read Currents from S3."""
    path = write_config(tmp_path, MINIMAL)
    probe = (
        "import sys\n"
        "from amp_braze.config import load_config\n"
        "from amp_braze.definitions import build_defs\n"
        f"defs = build_defs(load_config({str(path)!r}))\n"
        "print(len(defs.resolve_all_asset_keys()), 'dagster_aws' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assets, imported = proc.stdout.split()
    assert int(assets) > 3 and imported == "False"


# -- phone regions -------------------------------------------------------------------------------


def test_phone_regions_top_level_and_per_feed(tmp_path):
    cfg = load_config(write_config(tmp_path, MINIMAL))
    assert cfg.phone_region == "US" and cfg.sources["pos"].phone_region == "US"  # today's default
    assert cfg.braze.phone_region == "US"
    body = MINIMAL.replace("storage: ./store", "storage: ./store\nphone_region: gb").replace(
        "    updated_at: updated_at",
        "    updated_at: updated_at\n  uk_till:\n    path: till.csv\n    customer_key: id\n"
        "  paris:\n    path: paris.csv\n    customer_key: id\n    phone_region: fr\n"
        "    phone_region_column: store_country\n    types: {mobile: phone}",
    )
    cfg = load_config(write_config(tmp_path, body))
    assert cfg.phone_region == "GB" and cfg.braze.phone_region == "GB"  # the Braze phone rule's
    assert {n: s.phone_region for n, s in cfg.sources.items()} == {
        "pos": "GB", "uk_till": "GB", "paris": "FR",
    }  # fmt: skip
    assert cfg.sources["paris"].phone_region_column == "store_country"
    assert cfg.sources["paris"].phone_columns == ["phone", "mobile"]
    assert cfg.sources["pos"].phone_region_column is None


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("storage: ./store", "storage: ./store\nphone_region: XX", "phone_region",
         "unknown phone region 'XX'; give an ISO 3166 alpha-2 country code"),
        ("storage: ./store", "storage: ./store\nphone_region: UK", "phone_region",
         "the ISO 3166 code is GB"),
        ("storage: ./store", "storage: ./store\nphone_region: 44", "phone_region",
         "must be a string, got a int"),
        ("storage: ./store", "storage: ./store\nphone_region: NO", "phone_region",
         'quote the region, e.g. phone_region: "NO"'),
        ("    updated_at: updated_at", "    updated_at: updated_at\n    phone_region: Germany",
         "sources.pos.phone_region", "unknown phone region 'Germany'"),
        ("    updated_at: updated_at", "    updated_at: updated_at\n    phone_regoin: DE",
         "sources.pos.phone_regoin", "did you mean 'phone_region'"),
        ("    updated_at: updated_at", "    updated_at: updated_at\n    types: {mobile: phone_number}",
         "sources.pos.types.mobile", "unknown type 'phone_number'; use one of string, int"),
        ("storage: ./store",
         "storage: ./store\nphone_region: GB\nidentity: {fields: {email: email}, default_country_code: 1}",
         "identity.default_country_code", "phone_region supersedes this key"),
        ("storage: ./store",
         "storage: ./store\nidentity: {fields: {email: email}, default_country_code: 999}",
         "identity.default_country_code", "'999' is not a country calling code"),
    ],
)  # fmt: skip
def test_phone_region_mistakes_name_their_key(tmp_path, old, new, key, words):
    body = MINIMAL.replace(old, new)
    if "identity" in new:
        body = body.replace("customer_key: customer_id", "record_id: customer_id")
    err = _bad(tmp_path, body)
    assert err.key == key
    assert words in str(err)


def test_the_older_default_country_code_still_works(tmp_path):
    """identity.default_country_code (before phone_region) sets the region when phone_region is
    not given, and agrees with it when both are."""
    body = MINIMAL.replace("customer_key: customer_id", "record_id: customer_id")
    for code, region in (("44", "GB"), ("+49", "DE"), ("1", "US")):
        text = body + f"identity: {{fields: {{phone: phone}}, default_country_code: '{code}'}}\n"
        cfg = load_config(write_config(tmp_path, text))
        assert cfg.phone_region == region and cfg.sources["pos"].phone_region == region
    text = body.replace("storage: ./store", "storage: ./store\nphone_region: GG")
    text += "identity: {fields: {phone: phone}, default_country_code: 44}\n"  # Guernsey is +44
    assert load_config(write_config(tmp_path, text)).phone_region == "GG"


def test_the_bundled_demo_reads_each_store_in_its_country(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_BRAZE_HOME", str(tmp_path))
    cfg = load_config(BUNDLED_CONFIG)
    assert cfg.phone_region == "US"
    assert cfg.sources["pos"].phone_region_column == "store_country"
    assert "phone" in cfg.syncs["winback_eu"].attributes
