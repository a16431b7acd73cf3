"""Several syncs to two Braze workspaces (one emulator each): orchestrations and a campaign."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest

from amp_braze.config import ConfigError, load_config
from amp_braze.definitions import build_defs
from amp_braze.demo.run import QUIET
from amp_braze.storage import Storage
from amp_braze.sync.lease import Lease
from amp_braze_tests.support.brand import FEED_SECTION, SEGMENTS_SECTION, make_feed
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import materialized
from amp_braze_tests.support.servers import EmulatorHandle, start_emulator

N = 600
CONFIG = (
    FEED_SECTION
    + """destinations:
  us:
    rest_endpoint: {us}
    api_key_env: BRAZE_API_KEY_US
    rate_limit: {{requests: {rate}, per_seconds: 1}}
    concurrency: 2
  eu:
    rest_endpoint: {eu}
    api_key_env: BRAZE_API_KEY_EU
    on_removed_user: unset
    concurrency: 2
"""
    + SEGMENTS_SECTION
    + """syncs:
  profiles_us:
    destination: us
  loyalty_us:
    destination: us
    sql: loyalty.sql
    segments: []
  winback_eu:
    destination: eu
    audience: [gold]
    exclude: [big]
    attributes: [email, first_name, ltv]
    segments: [gold]
    schedule: "0 7 * * MON"
sync:
  checkpoint_rows: 200
"""
)
SQL = "SELECT id AS external_id, email, first_name, tier, ltv FROM customer_profiles"
LOYALTY = "SELECT id AS external_id, visits AS loyalty_visits FROM customer_profiles"


@pytest.fixture
def workspaces() -> Iterator[tuple[EmulatorHandle, EmulatorHandle]]:
    us, eu = start_emulator("key-us"), start_emulator("key-eu")
    try:
        yield us, eu
    finally:
        us.server.stop()
        eu.server.stop()


class Brand:
    def __init__(self, folder, us: EmulatorHandle, eu: EmulatorHandle, rate: int = 5000):
        body = CONFIG.format(us=us.url, eu=eu.url, rate=rate)
        self.path = write_config(folder, body, SQL)
        (folder / "loyalty.sql").write_text(LOYALTY)
        self.folder = folder
        self.config = load_config(self.path)
        self.storage = Storage(self.config.storage)
        self.write_feed(make_feed(N))

    def write_feed(self, df: pl.DataFrame) -> None:
        df.write_csv(self.folder / "crm.csv")

    def run(self, job: str = "braze_sync_job") -> dict[str, dict]:
        defs = build_defs(self.config)
        result = defs.resolve_job_def(job).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), run_config=QUIET
        )
        return materialized(result)


@pytest.fixture
def brand(tmp_path, workspaces, monkeypatch) -> Brand:
    us, eu = workspaces
    monkeypatch.setenv("BRAZE_API_KEY_US", us.key)
    monkeypatch.setenv("BRAZE_API_KEY_EU", eu.key)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    return Brand(tmp_path, us, eu)


def _winback(feed: pl.DataFrame) -> set[str]:
    return set(feed.filter((pl.col("tier") == "gold") & ~(pl.col("ltv") > 500))["id"].to_list())


def test_each_sync_delivers_exactly_its_users_and_attributes(brand, workspaces):
    us, eu = workspaces
    meta = brand.run()
    feed = make_feed(N)
    assert meta["profiles_us/braze_sync"]["users_sent"] == N
    assert meta["loyalty_us/braze_sync"]["users_sent"] == N
    assert meta["winback_eu/braze_sync"]["users_sent"] == len(_winback(feed)) > 50

    us_users = us.users()
    assert set(us_users) == set(feed["id"].to_list())
    u = us_users["user-7"]
    assert u["email"] == "user7@example.com" and u["first_name"] == "Name7"
    custom = u["custom_attributes"]
    # The profile sync's columns and segments, plus the loyalty sync's own query; nothing else.
    assert set(custom) <= {"tier", "ltv", "amp_big", "amp_gold", "loyalty_visits"}
    assert custom["loyalty_visits"] == 7 and custom["tier"] == "silver"

    eu_users = eu.users()
    assert set(eu_users) == _winback(feed)
    one = eu_users[sorted(eu_users)[0]]
    assert set(one["custom_attributes"]) == {"ltv", "amp_gold"}  # email and first_name: standard
    assert (
        one["custom_attributes"]["amp_gold"] is True and "amp_big" not in one["custom_attributes"]
    )

    again = brand.run()  # nothing changed: nothing is sent, per sync
    for sync in ("profiles_us", "loyalty_us", "winback_eu"):
        assert again[f"{sync}/braze_sync"]["users_sent"] == 0, sync


def test_audience_joiners_are_sent_in_full_and_leavers_unset(brand, workspaces):
    us, eu = workspaces
    brand.run()
    feed = make_feed(N)
    members = sorted(_winback(feed))
    leaver = members[0]
    joiner = feed.filter((pl.col("tier") == "silver") & (pl.col("ltv") <= 500))["id"][0]
    feed = feed.with_columns(
        pl.when(pl.col("id") == leaver).then(pl.lit("silver"))
        .when(pl.col("id") == joiner).then(pl.lit("gold"))
        .otherwise("tier").alias("tier")
    )  # fmt: skip
    brand.write_feed(feed)
    meta = brand.run("winback_eu_job")
    plan = meta["winback_eu/braze_sync_plan"]
    assert plan["new_users"] == 1 and plan["users_no_longer_wanted"] == 1
    users = eu.users()
    assert users[joiner]["email"] == feed.filter(pl.col("id") == joiner)["email"][0]
    assert users[joiner]["custom_attributes"]["amp_gold"] is True
    gone = users[leaver]  # on_removed_user: unset on this destination
    assert "email" not in gone and gone["custom_attributes"] == {}


def test_two_syncs_that_would_manage_one_attribute_are_refused(tmp_path, workspaces):
    us, eu = workspaces
    path = write_config(tmp_path, CONFIG.format(us=us.url, eu=eu.url, rate=100), SQL)
    (tmp_path / "loyalty.sql").write_text(LOYALTY.replace("visits AS loyalty_visits", "ltv"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "attribute 'ltv' of destination 'us' is managed by both syncs 'profiles_us' and" in str(
        err.value
    )
    assert "'loyalty_us'" in str(err.value) and "syncs.loyalty_us" in str(err.value)
    # Segment attributes count too: the loyalty sync may not send them as well.
    (tmp_path / "loyalty.sql").write_text(LOYALTY)
    text = path.read_text().replace("    segments: []\n", "    segments: [gold]\n")
    path.write_text(text)
    with pytest.raises(ConfigError, match="attribute 'amp_gold' of destination 'us'"):
        load_config(path)


@pytest.mark.slow
def test_two_syncs_of_one_workspace_stay_under_its_limit_together(tmp_path, monkeypatch):
    """Each sync alone would use the whole limit; at once they must still not exceed it."""
    limit = 4  # requests per second, the emulator's Braze-style window of one second
    us = start_emulator("key-us", rate_limit=limit, rate_window=1.0)
    eu = start_emulator("key-eu")
    try:
        monkeypatch.setenv("BRAZE_API_KEY_US", us.key)
        monkeypatch.setenv("BRAZE_API_KEY_EU", eu.key)
        brand = Brand(tmp_path, us, eu, rate=limit)
        brand.run("winback_eu_job")  # the shared tables, and eu's sync, first
        # Both us syncs reach the lease before either takes it, so one surely waits for the
        # other's whole send, however the machine schedules their planning.
        at_lease: set[str] = set()
        arrived = threading.Condition()
        take = Lease.acquire

        def acquire_once_both_are_there(lease: Lease, wait_seconds: float, poll: float = 0.2):
            with arrived:
                at_lease.add(lease.owner)
                arrived.notify_all()
                assert arrived.wait_for(lambda: len(at_lease) == 2, timeout=240)
            return take(lease, wait_seconds, poll)

        monkeypatch.setattr(Lease, "acquire", acquire_once_both_are_there)
        metas: list[dict] = []
        threads = [
            threading.Thread(target=lambda job=f"{s}_job": metas.append(brand.run(job)))
            for s in ("profiles_us", "loyalty_us")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        stats = us.stats()
        assert stats["track_requests"] == 2 * -(-N // 75)  # both syncs sent everything
        assert stats["rate_limited"] == 0 and stats["status"].get("429", 0) == 0
        assert set(us.users()) == set(make_feed(N)["id"].to_list())
        # They did overlap: one waited for the other's lease (each alone takes 2 s to send).
        waits = [m[k]["lease_wait_seconds"] for m in metas for k in m if k.endswith("/braze_sync")]
        assert len(waits) == 2 and max(waits) > 0.5, waits
    finally:
        us.server.stop()
        eu.server.stop()


def test_jobs_schedules_groups_and_keys_per_sync(brand):
    defs = build_defs(brand.config)
    assert {j.name for j in defs.jobs} >= {
        "braze_sync_job", "profiles_us_job", "loyalty_us_job", "winback_eu_job",
    }  # fmt: skip
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {
        "profiles_us_schedule": "0 6 * * *",
        "loyalty_us_schedule": "0 6 * * *",
        "winback_eu_schedule": "0 7 * * MON",
    }
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey(["winback_eu", "braze_sync"]))
    assert node.group_name == "winback_eu"
    loyalty_plan = graph.get(dg.AssetKey(["loyalty_us", "braze_sync_plan"]))
    assert dg.AssetKey(["loyalty_us", "attributes"]) in loyalty_plan.parent_keys
    job = defs.resolve_job_def("winback_eu_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "winback_eu/braze_sync" in keys and "profiles_us/braze_sync" not in keys
    assert graph.get(dg.AssetKey(["profiles_us", "braze_sync"])).pools == {"braze/us"}
    # Each workspace is a resource naming where its key is, never holding the key itself.
    eu = defs.resources["braze_eu"]
    assert (eu.rest_endpoint, eu.api_key_env) == (
        brand.config.destinations["eu"].rest_endpoint,
        "BRAZE_API_KEY_EU",
    )
    assert "key-eu" not in repr(defs.resources)
