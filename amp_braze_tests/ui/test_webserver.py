"""The real Dagster webserver and daemon (dagster dev, under setsid) on the demo configuration:
launch the sync through GraphQL, wait for it, and check lineage, automation and metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from amp_braze.config import BUNDLED_CONFIG
from amp_braze.profiles.sample_data import generate
from amp_braze_tests.support.metadata import from_graphql
from amp_braze_tests.support.servers import free_port, start_emulator

pytestmark = pytest.mark.slow  # the real webserver and daemon, and a sync through them

# The asset graph (docs/index.md's asset graph) for the demo's two syncs, as (upstream,
# downstream) edges. Every table a SQL file reads is an upstream edge, and no other: the demo's
# profile SQL reads customer_profiles and engagement_summary, its SQL segment
# braze_customer_attributes.
SYNCS = ("profiles_us", "winback_eu")
GRAPH_EDGES = {
    ("sources/pos", "customer_profiles"),
    ("sources/ecommerce", "customer_profiles"),
    ("sources/loyalty", "customer_profiles"),
    # The demo's feeds share no key: identity_clusters gives each record its amp_id, and
    # customer_profiles reads both (the ids, and the feeds' values for survivorship).
    ("sources/pos", "identity_clusters"),
    ("sources/ecommerce", "identity_clusters"),
    ("sources/loyalty", "identity_clusters"),
    ("identity_clusters", "customer_profiles"),
    ("customer_profiles", "braze_customer_attributes"),
    ("braze_currents_events", "engagement_summary"),
    ("engagement_summary", "braze_customer_attributes"),
    ("braze_customer_attributes", "segment_memberships"),
    # The rejection tables are assets of their own, beside the asset that writes them.
    ("customer_profiles", "braze_customer_attributes_rejections"),
    ("engagement_summary", "braze_customer_attributes_rejections"),
    # The order stream: its query reads the orders feed and identity_clusters (record -> amp_id).
    *(
        (table, f"orders_us/{asset}")
        for table in ("sources/web_orders", "identity_clusters")
        for asset in ("braze_events", "braze_events_rejections")
    ),
} | {
    edge
    for sync in SYNCS
    for edge in (
        ("segment_memberships", f"{sync}/braze_sync_plan"),
        (f"{sync}/braze_sync_plan", f"{sync}/braze_sync"),
        (f"{sync}/braze_sync_plan", f"{sync}/braze_sync_rejections"),
    )
}
LINEAGE = """
{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }
"""
AUTOMATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    sensors { name sensorState { status } }
    schedules { name cronSchedule }
} } } }
"""
METADATA = """
query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 1) { metadataEntries {
    label
    ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue }
  } }
} } }
"""


def _gql(port: int, query: str, variables: dict | None = None) -> dict:
    r = requests.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=60,
    )
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def emulator_eu():
    handle = start_emulator("eu-key")
    try:
        yield handle
    finally:
        handle.server.stop()


@pytest.fixture
def dagster_dev(tmp_path, emulator, emulator_eu, moto_server):
    generate(tmp_path / ".amp_braze" / "demo_data", customers=1500, shared_key=False)
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = os.environ | {
        "AMP_BRAZE_HOME": str(tmp_path),
        "AMP_BRAZE_CONFIG": str(BUNDLED_CONFIG),
        "BRAZE_REST_ENDPOINT": emulator.url,
        "BRAZE_API_KEY": emulator.key,
        "BRAZE_REST_ENDPOINT_EU": emulator_eu.url,
        "BRAZE_API_KEY_EU": emulator_eu.key,
        "DAGSTER_HOME": str(home),
    }
    dagster = Path(sys.executable).with_name("dagster")
    log = open(tmp_path / "dagster_dev.log", "w")
    proc = subprocess.Popen(
        [str(dagster), "dev", "-m", "amp_braze.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_location(port, time.time() + 120, proc, tmp_path / "dagster_dev.log")
        yield port
    finally:
        _stop_group(proc)
        log.close()


REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"


def _wait_for_location(
    port: int, deadline: float, proc: subprocess.Popen, log: Path, query: str = REPOSITORIES
) -> dict:
    """Poll the webserver until the code location is loaded; returns the query's answer."""
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            data = _gql(port, query)
            if data["repositoriesOrError"].get("nodes"):
                return data
        except (requests.ConnectionError, requests.Timeout, AssertionError):
            pass
        assert time.time() < deadline, "the Dagster UI did not come up"
        time.sleep(0.5)


def _stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """Stop a process started in a session of its own, and everything it started."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_ui_lineage_automation_and_a_sync_launched_through_graphql(
    dagster_dev, emulator, emulator_eu
):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    port = dagster_dev
    nodes = _gql(port, LINEAGE)["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    edges = {
        ("/".join(d["path"]), "/".join(n["assetKey"]["path"]))
        for n in nodes
        for d in n["dependencyKeys"]
    }
    assert keys == {k for e in GRAPH_EDGES for k in e}
    assert edges == GRAPH_EDGES
    # ... and the edges into the SQL assets are exactly what their SQL reads.
    from amp_braze.config import load_config
    from amp_braze.profiles.sql import table_assets
    from amp_braze.sql_reads import tables_read

    os.environ.setdefault("AMP_BRAZE_HOME", str(Path.cwd()))
    cfg = load_config(BUNDLED_CONFIG)
    names = {t: "/".join(k) for t, k in table_assets(cfg).items()}
    read = {names[t] for t in tables_read(cfg.profile_sql_text) if t in names}
    assert {u for u, d in edges if d == "braze_customer_attributes"} == read
    seg_read = {names.get(t, t) for s in cfg.segments.values() if s.sql for t in tables_read(s.sql)}
    assert {u for u, d in edges if d == "segment_memberships"} == seg_read
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert (
        groups["customer_profiles"] == groups["identity_clusters"] == "customer_360"
        and groups["segment_memberships"] == "audiences"
    )
    assert groups["profiles_us/braze_sync"] == "profiles_us"
    assert groups["winback_eu/braze_sync_plan"] == "winback_eu"
    assert groups["engagement_summary"] == "braze_currents"
    assert (
        groups["orders_us/braze_events"]
        == groups["orders_us/braze_events_rejections"]
        == "orders_us"
    )

    repo = _gql(port, AUTOMATION)["repositoriesOrError"]["nodes"][0]
    assert [s["name"] for s in repo["sensors"]] == ["braze_currents_sensor"]
    assert sorted((s["name"], s["cronSchedule"]) for s in repo["schedules"]) == [
        ("orders_us_schedule", "*/30 * * * *"),
        ("profiles_us_schedule", "0 6 * * *"),
        ("winback_eu_schedule", "0 7 * * MON"),
    ]

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("braze_sync_job")
    deadline = time.time() + 240
    status = None
    while time.time() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"

    data = _gql(port, METADATA, {"key": {"path": ["profiles_us", "braze_sync"]}})
    entries = data["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    meta = from_graphql(entries)
    stats = emulator.stats()
    assert meta["users_sent"] == stats["objects"] == stats["users"] > 1400
    assert meta["data_points"] == stats["data_points"]
    # /users/track, and the newsletter's subscription states (/v2/subscription/status/set)
    assert stats["track_requests"] == -(-meta["users_sent"] // 75)
    assert meta["requests"] == stats["track_requests"] + stats["subscription_requests"]
    assert stats["subscription_requests"] > 0
    assert meta["rejected_rows"] == 0 and meta["rate_limited_429s"] == 0
    # The campaign went to the other workspace, and only there.
    data = _gql(port, METADATA, {"key": {"path": ["winback_eu", "braze_sync"]}})
    entries = data["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    campaign = from_graphql(entries)
    assert 0 < campaign["users_sent"] == emulator_eu.stats()["users"] < meta["users_sent"]


DEMO_STATE = """
{ runsOrError { ... on Runs { results { jobName status tags { key value } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { sensors {
      name sensorState { typeSpecificData { ... on SensorData { lastCursor } } } } } } } }
"""


def test_demo_left_running_shows_named_jobs_and_keeps_the_sensor_cursor(tmp_path):
    """Before: the demo's runs showed as __ephemeral_asset_job__ and the sensor had no cursor, so
    turning it on reloaded every hour the demo had loaded."""
    import json
    import re

    env = {k: v for k, v in os.environ.items() if k not in ("AMP_BRAZE_CONFIG", "DAGSTER_HOME")}
    env["AMP_BRAZE_HOME"] = str(tmp_path)
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amp_braze.cli", "demo", "--profiles", "600",
             "--workdir", str(tmp_path / "demo"), "--keep-running"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.time() + 240
        port = None
        while port is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            m = re.search(r"Dagster UI:\s+http://127.0.0.1:(\d+)", log.read_text())
            port = int(m.group(1)) if m else None
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        loaded = re.search(r"requested \d+ hourly loads: (.*)", log.read_text()).group(1)
        hours = loaded.strip().split(", ")
        data = _wait_for_location(port, deadline, proc, log, DEMO_STATE)
        runs = data["runsOrError"]["results"]
        jobs = sorted(r["jobName"] for r in runs)
        assert jobs == (
            ["braze_currents_load_job"] * len(hours)
            + ["braze_sync_job"] * 2
            + ["orders_us_job"] * 2
        )
        assert all(r["status"] == "SUCCESS" for r in runs)
        sensor = data["repositoriesOrError"]["nodes"][0]["sensors"][0]
        cursor = json.loads(sensor["sensorState"]["typeSpecificData"]["lastCursor"])
        assert sorted(cursor["hours"]) == sorted(hours)
    finally:
        _stop_group(proc)
