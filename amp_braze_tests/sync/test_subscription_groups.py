"""Subscription groups mirrored to Braze: planned like attributes, sent with
/v2/subscription/status/set to the emulator over HTTP, checkpointed in the sync state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from amp_braze.braze.plan_columns import subscription_column
from amp_braze.config import load_config
from amp_braze.storage import Storage
from amp_braze.sync.state import SyncState
from amp_braze_tests.support.brand import FEED_SECTION, Brand, make_feed
from amp_braze_tests.support.configs import write_config

NEWS, SMS = "3f0c9a4e-news-4000-8000-000000000001", "3f0c9a4e-sms0-4000-8000-000000000002"
SQL = "SELECT id AS external_id, email, first_name, ltv, news, sms FROM customer_profiles"
GROUPS = f"{{news: {NEWS}, sms: {SMS}}}"
CONFIG = (
    FEED_SECTION
    + """braze:
  rest_endpoint: {url}
  concurrency: 2
  on_removed_user: {on_removed}
  max_wait_seconds: 2
sync:
  checkpoint_rows: 300
  subscription_groups: {groups}
"""
)


def _feed(n: int) -> pl.DataFrame:
    """The brand's feed with a text state (a third subscribed, varied case) and a boolean."""
    i = pl.int_range(pl.len())
    news = pl.when(i % 3 == 0).then(pl.lit(" Subscribed")).otherwise(pl.lit("unsubscribed"))
    return make_feed(n).with_columns(news.alias("news"), (i % 2 == 0).alias("sms"))


def _brand(folder: Path, url: str, n: int, on_removed: str = "ignore", groups: str = GROUPS):
    body = CONFIG.format(url=url, on_removed=on_removed, groups=groups)
    cfg = load_config(write_config(folder, body, SQL))
    brand = Brand(folder, cfg, Storage(cfg.storage))
    brand.write_feed(_feed(n))
    return brand


@pytest.fixture
def brand(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    return _brand(tmp_path, emulator.url, 200)


def _states(emulator, group: str) -> dict[str, str | None]:
    return {
        ext: (u.get("subscription_groups") or {}).get(group) for ext, u in emulator.users().items()
    }


def _wanted(feed: pl.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    news = {r["id"]: r["news"].strip().lower() for r in feed.iter_rows(named=True)}
    sms = {
        r["id"]: "subscribed" if r["sms"] else "unsubscribed" for r in feed.iter_rows(named=True)
    }
    return news, sms


def _get(emulator, group: str, *ids: str) -> dict[str, str]:
    r = emulator.http.get(
        f"{emulator.url}/subscription/status/get",
        params=[("subscription_group_id", group), *(("external_id", i) for i in ids)],
        headers={"Authorization": f"Bearer {emulator.key}"},
    )
    assert r.status_code == 200
    return r.json()["status"]


def test_states_reach_braze_free_and_a_rerun_sends_nothing(brand, emulator):
    _, meta = brand.sync()
    plan, sync = meta["braze_sync_plan"], meta["braze_sync"]
    feed = _feed(200)
    news, sms = _wanted(feed)
    assert _states(emulator, NEWS) == news
    assert _states(emulator, SMS) == sms
    assert _get(emulator, NEWS, "user-0", "user-1") == {
        "user-0": "Subscribed",
        "user-1": "Unsubscribed",
    }
    subscribed = sum(v == "subscribed" for v in news.values())
    assert subscribed == 67
    # Planned: per group, the users to subscribe and unsubscribe, and the requests they take.
    changes = {r["group"]: r for r in plan["subscription_changes"]}
    assert changes[NEWS] == {"group": NEWS, "subscribed": 67, "unsubscribed": 133}
    assert changes[SMS] == {"group": SMS, "subscribed": 100, "unsubscribed": 100}
    assert plan["subscription_requests"] == 2 + 3 + 2 + 2  # ceil(67/50) + ceil(133/50) + 2 + 2
    assert plan["subscription_rejections"] == 0
    # Sent: the same, accepted.
    assert {r["group"]: r for r in sync["subscription_changes"]} == changes
    assert sync["subscription_requests"] == 9
    stats = emulator.stats()
    assert stats["subscription_requests"] == 9 and stats["subscription_updates"] == 400
    assert stats["subscription_unknown_ids"] == 0  # each profile existed before its state
    # Never as attributes, and no data points: only email, first_name and ltv are billed.
    attrs = {k for u in emulator.users().values() for k in u["custom_attributes"]}
    assert attrs == {"ltv"}
    points = 200 * 3 - feed["first_name"].null_count()
    assert stats["data_points"] == points == plan["estimated_data_points"] == sync["data_points"]
    assert plan["full_sync_data_points"] == points
    # The state holds what Braze accepted, by group id.
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key).current().table
    col = state.get_column(subscription_column(NEWS))
    assert dict(zip(state["__id"].to_list(), col.to_list(), strict=True)) == news

    _, meta = brand.sync()
    assert meta["braze_sync_plan"]["users_changed"] == 0
    assert meta["braze_sync_plan"]["subscription_requests"] == 0
    assert meta["braze_sync"]["subscription_requests"] == 0
    assert meta["braze_sync"]["requests"] == 0
    assert emulator.stats()["subscription_requests"] == 9


def test_one_changed_state_sends_exactly_one_id_and_no_track_request(brand, emulator):
    brand.sync()
    before = emulator.stats()
    feed = _feed(200)
    # user-1 subscribes to the newsletter; user-3 leaves the sms group (a boolean column).
    feed = feed.with_columns(
        pl.when(pl.col("id") == "user-1")
        .then(pl.lit("SUBSCRIBED"))
        .otherwise("news")
        .alias("news"),
        pl.when(pl.col("id") == "user-2").then(False).otherwise("sms").alias("sms"),
    )
    brand.write_feed(feed)
    _, meta = brand.sync()
    plan, sync = meta["braze_sync_plan"], meta["braze_sync"]
    changes = {r["group"]: r for r in plan["subscription_changes"]}
    assert changes[NEWS] == {"group": NEWS, "subscribed": 1, "unsubscribed": 0}
    assert changes[SMS] == {"group": SMS, "subscribed": 0, "unsubscribed": 1}
    assert plan["users_changed"] == 0 and plan["estimated_data_points"] == 0
    assert sync["subscription_requests"] == 2 and sync["requests"] == 2
    after = emulator.stats()
    assert after["subscription_requests"] - before["subscription_requests"] == 2
    assert after["subscription_updates"] - before["subscription_updates"] == 2  # one id each
    assert after["track_requests"] == before["track_requests"]  # no attribute to send
    assert after["data_points"] == before["data_points"]
    assert _states(emulator, NEWS)["user-1"] == "subscribed"
    assert _states(emulator, SMS)["user-2"] == "unsubscribed"
    _, meta = brand.sync()
    assert meta["braze_sync"]["subscription_requests"] == 0


def test_a_value_that_is_no_state_is_set_aside_with_its_reason(brand, emulator):
    feed = _feed(200).with_columns(
        pl.when(pl.col("id") == "user-3").then(pl.lit("maybe")).otherwise("news").alias("news")
    )
    brand.write_feed(feed)
    _, meta = brand.sync()
    plan = meta["braze_sync_plan"]
    assert plan["subscription_rejections"] == 1
    assert plan["subscription_rejected_sample"] == [
        {
            "identifier": "user-3",
            "column": "news",
            "value": "maybe",
            "reason": "subscription_groups.news: maybe is neither subscribed, unsubscribed nor "
            "a boolean",
        }
    ]
    states = _states(emulator, NEWS)
    assert states["user-3"] is None and states["user-0"] == "subscribed"
    assert _states(emulator, SMS)["user-3"] == "unsubscribed"  # its other group goes on


@pytest.mark.parametrize(
    ("on_removed", "left"), [("unset", "unsubscribed"), ("ignore", "subscribed")]
)
def test_a_user_who_leaves_the_table(tmp_path, emulator, monkeypatch, on_removed, left):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = _brand(tmp_path, emulator.url, 200, on_removed=on_removed)
    brand.sync()
    feed = _feed(200)
    # user-0 (subscribed to both groups) and user-3 (to news only) leave.
    assert _states(emulator, NEWS)["user-0"] == "subscribed" == _states(emulator, SMS)["user-0"]
    assert (_states(emulator, NEWS)["user-3"], _states(emulator, SMS)["user-3"]) == (
        "subscribed",
        "unsubscribed",
    )
    before = emulator.stats()
    brand.write_feed(feed.filter(~pl.col("id").is_in(["user-0", "user-3"])))
    _, meta = brand.sync()
    news, sms = _states(emulator, NEWS), _states(emulator, SMS)
    assert news["user-0"] == left and sms["user-0"] == left
    assert news["user-3"] == left and sms["user-3"] == "unsubscribed"
    assert news["user-6"] == "subscribed" and sms["user-6"] == "subscribed"  # still wanted
    sent = emulator.stats()["subscription_updates"] - before["subscription_updates"]
    # unset: user-0 leaves both groups, user-3 only news (it had sms unsubscribed already).
    assert sent == (3 if on_removed == "unset" else 0)
    changes = {r["group"]: r for r in meta["braze_sync"]["subscription_changes"]}
    expected = {"unset": (2, 1), "ignore": (0, 0)}[on_removed]
    assert (changes[NEWS]["unsubscribed"], changes[SMS]["unsubscribed"]) == expected
    assert meta["braze_sync_plan"]["users_no_longer_wanted"] == 2
    _, meta = brand.sync()
    assert meta["braze_sync"]["subscription_requests"] == 0


def test_120_users_in_one_group_take_three_requests_and_the_dry_run_shows_them(
    tmp_path, emulator, monkeypatch
):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = _brand(tmp_path, emulator.url, 120, groups=f"{{sms: {SMS}}}")
    brand.write_feed(_feed(120).with_columns(pl.lit(True).alias("sms")))
    dry_config = {"ops": {"braze_sync": {"config": {"dry_run": True}}}}
    _, meta = brand.sync(run_config=dry_config)
    dry = meta["braze_sync"]
    assert dry["subscription_requests"] == 3 and dry["subscription_ids"] == 120
    assert emulator.stats()["subscription_requests"] == 0  # a dry run sends nothing
    path = dry["subscription_requests_file"].split(brand.storage.root + "/")[1]
    bodies = [orjson.loads(line) for line in brand.storage.read_bytes(path).splitlines()]
    groups = [b["subscription_groups"] for b in bodies]
    assert [len(g) for g in groups] == [1, 1, 1]
    assert [len(g[0]["external_ids"]) for g in groups] == [50, 50, 20]
    assert {(g[0]["subscription_group_id"], g[0]["subscription_state"]) for g in groups} == {
        (SMS, "subscribed")
    }
    assert sorted(i for g in groups for i in g[0]["external_ids"]) == sorted(
        f"user-{i}" for i in range(120)
    )

    out = tmp_path / "requests.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "plan", "--config", str(brand.folder / "amp_braze.yaml"), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    sub_out = tmp_path / "requests.subscriptions.jsonl"
    assert f"subscription requests: 3 with 120 ids written to {sub_out}" in proc.stdout
    assert f"{SMS:<36} subscribe      120   unsubscribe        0" in proc.stdout
    assert [len(orjson.loads(x)["subscription_groups"][0]["external_ids"])
            for x in sub_out.read_text().splitlines()] == [50, 50, 20]  # fmt: skip

    _, meta = brand.sync()
    assert meta["braze_sync"]["subscription_requests"] == 3
    stats = emulator.stats()
    assert stats["subscription_requests"] == 3 and stats["subscription_updates"] == 120
    assert set(_states(emulator, SMS).values()) == {"subscribed"}


def test_a_run_stopped_mid_way_keeps_what_braze_took_and_resends_what_is_uncertain(
    tmp_path, emulator, monkeypatch
):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = _brand(tmp_path, emulator.url, 120, groups=f"{{sms: {SMS}}}")
    feed = _feed(120).with_columns(pl.lit(True).alias("sms"))
    brand.write_feed(feed)
    brand.sync()
    assert set(_states(emulator, SMS).values()) == {"subscribed"}
    # Everyone unsubscribes; Braze takes one request (50 ids), then rate limits past the wait.
    # Windows are aligned to multiples of their length: one of a minute would let a second
    # request through whenever the run crosses a minute's end, so the window here lasts years.
    emulator.configure(subscription_rate_limit=1, subscription_rate_window=1e9)
    brand.write_feed(feed.with_columns(pl.lit(False).alias("sms")))
    result, meta = brand.sync(raise_on_error=False)
    assert not result.success
    states = _states(emulator, SMS)
    assert sum(v == "unsubscribed" for v in states.values()) == 50
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key).current().table
    col, mark = subscription_column(SMS), f"__u_{subscription_column(SMS)}"
    assert state.filter(pl.col(col) == "unsubscribed").height == 50  # what Braze took
    assert state.filter(pl.col(mark)).height == 70  # sent, no answer: Braze may hold either
    # Back to subscribed for all: the 50 changed, and the 70 uncertain go again whatever they are.
    emulator.configure(subscription_rate_limit=5000)
    brand.write_feed(feed)
    _, meta = brand.sync()
    changes = {r["group"]: r for r in meta["braze_sync"]["subscription_changes"]}
    assert changes[SMS] == {"group": SMS, "subscribed": 120, "unsubscribed": 0}
    assert set(_states(emulator, SMS).values()) == {"subscribed"}
    _, meta = brand.sync()
    assert meta["braze_sync"]["subscription_requests"] == 0
