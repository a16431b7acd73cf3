"""braze_sync_plan and braze_sync against the emulator: exact counts, faults, crashes, bad keys."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import orjson
import polars as pl
import pytest

from amp_braze.braze.identifiers import ID
from amp_braze.braze.plan_columns import flag
from amp_braze.config import load_config
from amp_braze.sync.journal_fold import CHECKPOINT
from amp_braze.sync.state import SyncState
from amp_braze_tests.support.brand import (
    Brand,
    assert_braze_matches,
    braze_profiles,
    make_brand,
    make_feed,
)


@pytest.fixture
def brand(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    return make_brand(tmp_path, emulator.url)


def test_first_sync_sends_everyone_then_nothing_then_only_changes(brand, emulator):
    _, meta = brand.sync()
    plan, sync = meta["braze_sync_plan"], meta["braze_sync"]
    assert plan["users_changed"] == 1500 and plan["new_users"] == 1500
    assert sync["users_sent"] == 1500 and sync["rejected_rows"] == 0
    assert sync["requests"] == plan["requests_needed"] == 20  # 1500 / 75
    stats = emulator.stats()
    assert stats["objects"] == 1500
    assert stats["data_points"] == plan["estimated_data_points"] == sync["data_points"]
    # New users: every non-null attribute; false segment flags are not sent.
    feed = make_feed(1500)
    first_names = feed["first_name"].null_count()
    big = int((feed["ltv"] > 500).sum())
    gold = int((feed["tier"] == "gold").sum())
    expected_points = 1500 * 9 - first_names + big + gold  # 8 scalar attributes + the tags array
    assert plan["estimated_data_points"] == expected_points
    assert plan["full_sync_data_points"] == 1500 * 9 - first_names + 1500 * 2
    assert_braze_matches(brand, emulator)

    _, meta = brand.sync()
    assert meta["braze_sync_plan"]["users_changed"] == 0
    assert meta["braze_sync"]["requests"] == 0
    assert emulator.stats()["objects"] == 1500  # nothing more was sent

    # 1% of users (15) get a new ltv; 5 of them cross the 'big' threshold.
    feed = make_feed(1500)
    changed_ids = [f"user-{i}" for i in range(0, 1500, 100)]
    low = feed.filter(pl.col("id").is_in(changed_ids) & (pl.col("ltv") <= 500))["id"].to_list()[:5]
    feed = feed.with_columns(
        pl.when(pl.col("id").is_in(low)).then(pl.lit(999.0))
        .when(pl.col("id").is_in(changed_ids)).then(pl.col("ltv") + 0.5)
        .otherwise(pl.col("ltv")).alias("ltv")
    )  # fmt: skip
    brand.write_feed(feed)
    before = emulator.stats()
    _, meta = brand.sync()
    plan, sync = meta["braze_sync_plan"], meta["braze_sync"]
    assert plan["users_changed"] == 15
    assert plan["attributes_changed"] == 15 + 5  # ltv for 15, amp_big for 5
    after = emulator.stats()
    assert after["objects"] - before["objects"] == 15
    assert after["data_points"] - before["data_points"] == plan["estimated_data_points"] == 20
    assert sync["requests"] == 1
    assert_braze_matches(brand, emulator)


def test_segment_leavers_become_false_and_removed_users(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300, on_removed="unset")
    brand.sync()
    gold = [u for u, p in braze_profiles(emulator).items() if p.get("amp_gold")]
    assert len(gold) == 100
    feed = make_feed(300)
    leavers = gold[:10]
    feed = feed.with_columns(
        pl.when(pl.col("id").is_in(leavers)).then(pl.lit("silver")).otherwise("tier").alias("tier")
    )
    feed = feed.filter(pl.col("id") != "user-1")  # user-1 disappears: on_removed_user = unset
    brand.write_feed(feed)
    _, meta = brand.sync()
    assert (
        meta["segment_memberships"]["leavers_gold"] == 10
    )  # user-1 was silver, so not a gold leaver
    users = emulator.users()
    for u in leavers:
        assert users[u]["custom_attributes"]["amp_gold"] is False
        assert users[u]["custom_attributes"]["tier"] == "silver"
    gone = users["user-1"]
    assert "email" not in gone and gone["custom_attributes"] == {}  # every managed attribute unset
    assert meta["braze_sync_plan"]["users_changed"] == 11
    assert meta["braze_sync_plan"]["users_no_longer_wanted"] == 1
    assert meta["braze_sync_plan"]["users_in_state"] == 300


def test_rejected_rows_are_kept_and_retried_next_run(brand, emulator):
    emulator.faults(blocklisted_external_ids=["user-3", "user-700"])
    _, meta = brand.sync()
    sync = meta["braze_sync"]
    assert sync["rejected_rows"] == 2 and sync["users_sent"] == 1498
    rej = brand.storage.read_table("braze_sync_rejections").sort("__id")
    assert rej["__id"].to_list() == ["user-3", "user-700"]
    assert rej["reason"].to_list() == ["provided external_id is blacklisted and disallowed"] * 2
    assert "user-3" not in emulator.users()
    emulator.faults(blocklisted_external_ids=[])
    _, meta = brand.sync()
    assert meta["braze_sync_plan"]["users_changed"] == 2
    assert meta["braze_sync"]["retried_rows_from_last_run"] == 2
    assert meta["braze_sync"]["rejected_rows"] == 0
    assert_braze_matches(brand, emulator)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"force_429_seconds": 2}, id="429-storm", marks=pytest.mark.slow),
        pytest.param({"error_rate": 0.3, "seed": 3}, id="5xx-burst"),
        pytest.param({"drop_rate": 0.2, "seed": 4}, id="dropped-connections"),
        pytest.param(
            {"drop_after_apply_rate": 0.2, "seed": 5},
            id="dropped-after-apply",
            marks=pytest.mark.slow,
        ),
        pytest.param({"latency_ms": 150}, id="slow"),
    ],
)
def test_faults_end_with_braze_equal_to_wanted(brand, emulator, faults):
    emulator.faults(**faults)
    result, meta = brand.sync()
    sync = meta["braze_sync"]
    assert sync["users_sent"] == 1500 and sync["failed_rows"] == 0
    if "force_429_seconds" in faults:
        assert sync["rate_limited_429s"] >= 1
    if "error_rate" in faults or "drop_rate" in faults or "drop_after_apply_rate" in faults:
        assert sync["retries"] >= 1
    assert_braze_matches(brand, emulator)
    emulator.faults(clear=True)
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 0


def test_braze_object_errors_map_back_to_their_rows(tmp_path, emulator, monkeypatch):
    """A nested attribute holding a null makes Braze refuse that object (201 with errors): the
    error's index maps back to user-42; everyone else is accepted."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=150)
    text = (
        (tmp_path / "amp_braze.yaml")
        .read_text()
        .replace(
            "profile_sql:",
            "  prefs: {path: prefs.ndjson, customer_key: id}\nprofile_sql:",
        )
    )
    (tmp_path / "amp_braze.yaml").write_text(text)
    rows = [
        {"id": f"user-{i}", "prefs": {"color": "red", "size": None if i == 42 else "M"}}
        for i in range(150)
    ]
    (tmp_path / "prefs.ndjson").write_text("\n".join(orjson.dumps(r).decode() for r in rows))
    (tmp_path / "profile.sql").write_text(
        "SELECT id AS external_id, tier, ltv, prefs FROM customer_profiles"
    )
    brand = Brand(tmp_path, load_config(tmp_path / "amp_braze.yaml"), brand.storage)
    _, meta = brand.sync()
    sync = meta["braze_sync"]
    assert sync["rejected_rows"] == 1 and sync["users_sent"] == 149 and sync["split_batches"] == 0
    assert "user-42" not in emulator.users()
    assert emulator.users()["user-41"]["custom_attributes"]["prefs"] == {
        "color": "red",
        "size": "M",
    }
    reason = brand.storage.read_table("braze_sync_rejections")["reason"].to_list()
    assert reason == ["nested attribute 'prefs' holds a null; all nested updates are dropped"]


def test_400_batches_are_split_to_isolate_the_bad_object(brand, emulator):
    emulator.faults(bad_request_external_ids=["user-42"])
    _, meta = brand.sync()
    sync = meta["braze_sync"]
    assert sync["split_batches"] == 6  # the halves holding user-42: 75, 38, 19, 9, 5, 2 objects
    assert sync["rejected_rows"] == 1 and sync["users_sent"] == 1499
    assert brand.storage.read_table("braze_sync_rejections")["__id"].to_list() == ["user-42"]
    assert "user-42" not in emulator.users() and len(emulator.users()) == 1499


def state_values(state: SyncState, version: int) -> pl.DataFrame:
    man = state.manifest(version)
    parts = [f"{state.base}/state/v{version:06d}/{p}" for p in man["parts"]]
    return state.storage.scan_parquet(parts).collect().sort("__id")


def test_wrong_api_key_stops_with_a_clear_error_and_no_state_change(brand, emulator, monkeypatch):
    brand.sync()
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key)
    version = state.current().version
    brand.write_feed(make_feed(1500).with_columns(pl.col("ltv") + 1))
    monkeypatch.setenv("BRAZE_API_KEY", "not-the-key")
    result, meta = brand.sync(raise_on_error=False)
    assert not result.success and "braze_sync" not in meta
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error
    text = failure.message + (failure.cause.message if failure.cause else "")
    assert "Braze answered 401 (Invalid API key)" in text and "check BRAZE_API_KEY" in text
    assert "not-the-key" not in text
    # Nothing Braze accepted: every value stays; the rows that went out are marked uncertain.
    view = state.current()
    assert view.pending == []
    before = state_values(state, version)
    assert view.table.select(before.columns).sort("__id").equals(before)
    assert emulator.stats()["status"].get("401", 0) >= 1


CRASHING_SYNC = """
import sys, dagster as dg
from amp_braze.config import load_config
from amp_braze.definitions import build_defs
defs = build_defs(load_config(sys.argv[1]))
dg.materialize(list(defs.assets), resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
"""


def checkpoints_written(state: SyncState) -> int:
    return sum(state.read_entry(n).kind == CHECKPOINT for n in state.journal())


@pytest.mark.slow
def test_sync_killed_mid_run_resends_at_most_one_checkpoint(tmp_path, emulator, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    n, checkpoint_rows, concurrency = 3000, 300, 2
    brand = make_brand(
        tmp_path, emulator.url, n=n, checkpoint_rows=checkpoint_rows, concurrency=concurrency
    )
    emulator.faults(latency_ms=120)  # 40 requests, 2 at a time: about 2.5 s of sending
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SYNC, str(tmp_path / "amp_braze.yaml")],
        env=os.environ.copy(),
    )
    deadline = time.time() + 60
    while checkpoints_written(state) < 2:
        assert proc.poll() is None, "the sync finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = emulator.stats()["objects"]
    assert killed_at < n  # it really was cut short
    view = state.current()
    assert view.version == 0 and checkpoints_written(state) >= 2  # left by the dead run
    certain = ~pl.any_horizontal(pl.col("^__u_.*$"))
    accepted_before = view.table.filter(certain).height
    assert accepted_before >= 2 * checkpoint_rows

    emulator.faults(clear=True)
    _, meta = brand.sync()
    sync = meta["braze_sync"]
    assert (
        meta["braze_sync_plan"]["users_changed"] == n - accepted_before
    )  # checkpoints were folded in
    total = emulator.stats()["objects"]
    resent = total - n
    print(f"resent after SIGKILL: {resent} objects (checkpoint_rows {checkpoint_rows})")
    assert resent <= checkpoint_rows + 75 * (concurrency + 2), resent
    assert sync["users_sent"] == n - accepted_before
    assert state.current().pending == [] and state.current().version == 1
    assert_braze_matches(brand, emulator)


def test_dry_run_flag_and_plan_command_send_nothing(brand, emulator, tmp_path):
    import subprocess
    import sys

    result, meta = brand.sync(run_config={"ops": {"braze_sync": {"config": {"dry_run": True}}}})
    dry = meta["braze_sync"]
    assert dry["dry_run"] is True and dry["requests"] == 20 and dry["users"] == 1500
    assert emulator.stats()["objects"] == 0
    lines = brand.storage.read_bytes(
        dry["requests_file"].split(brand.storage.root + "/")[1]
    ).splitlines()
    assert len(lines) == 20
    first = orjson.loads(lines[0])["attributes"]
    assert len(first) == 75 and first[0]["external_id"] == "user-0" and first[0]["tier"] == "bronze"
    assert (
        SyncState(brand.storage, brand.config.syncs["braze"].names.state_key).current().version == 0
    )

    out = tmp_path / "requests.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "plan", "--config", str(brand.folder / "amp_braze.yaml"), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dry run: nothing was sent. 20 requests with 1,500 users" in proc.stdout
    assert len(out.read_text().splitlines()) == 20
    assert emulator.stats()["objects"] == 0


def test_job_and_schedule_follow_the_config(brand):
    defs = brand.defs()
    job = defs.resolve_job_def("braze_sync_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys == {
        "sources/crm", "customer_profiles", "braze_customer_attributes", "segment_memberships",
        "braze_sync_plan", "braze_sync", "braze_customer_attributes_rejections",
        "braze_sync_rejections",
    }  # fmt: skip
    schedule = defs.resolve_schedule_def("braze_sync_schedule")
    assert schedule.cron_schedule == "0 6 * * *" and schedule.job_name == "braze_sync_job"
    # Planning and sending share one Dagster pool per Braze destination.
    graph = defs.resolve_asset_graph()
    pools = {k: graph.get(dg.AssetKey(k)).pools for k in ("braze_sync_plan", "braze_sync")}
    assert pools == {k: {"braze/127.0.0.1-external_id"} for k in pools}


def test_user_alias_identifier_end_to_end(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=200)
    text = (
        (tmp_path / "amp_braze.yaml")
        .read_text()
        .replace("  rate_limit:", "  identifier: user_alias\n  rate_limit:")
    )
    text = text.replace("SELECT external_id FROM braze_customer_attributes WHERE ltv > 500",
                        "SELECT alias_name, alias_label FROM braze_customer_attributes WHERE ltv > 500")  # fmt: skip
    (tmp_path / "amp_braze.yaml").write_text(text)
    (tmp_path / "profile.sql").write_text(
        "SELECT email AS alias_name, 'crm_email' AS alias_label, tier, ltv FROM customer_profiles"
    )
    brand = Brand(tmp_path, load_config(tmp_path / "amp_braze.yaml"), brand.storage)
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 200
    users = emulator.http.get(f"{emulator.url}/_emulator/users").json()
    assert len(users) == 200 and all("external_id" not in u for u in users)
    by_alias = {u["user_aliases"][0]["alias_name"]: u for u in users}
    u7 = by_alias["user7@example.com"]
    assert u7["user_aliases"] == [{"alias_name": "user7@example.com", "alias_label": "crm_email"}]
    assert u7["custom_attributes"]["tier"] == "silver" and "amp_gold" not in u7["custom_attributes"]
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 0
    brand.write_feed(
        make_feed(200).with_columns(
            pl.when(pl.col("id") == "user-7").then(pl.lit("gold")).otherwise("tier").alias("tier")
        )
    )
    _, meta = brand.sync()
    assert meta["braze_sync_plan"]["attributes_changed"] == 2  # tier and amp_gold
    users = emulator.http.get(f"{emulator.url}/_emulator/users").json()
    u7 = next(u for u in users if u["user_aliases"][0]["alias_name"] == "user7@example.com")
    assert u7["custom_attributes"]["tier"] == "gold" and u7["custom_attributes"]["amp_gold"] is True
    assert len(users) == 200


def test_sync_with_storage_on_s3(tmp_path, emulator, monkeypatch, s3_bucket):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300, checkpoint_rows=100)
    text = (
        (tmp_path / "amp_braze.yaml")
        .read_text()
        .replace("storage: ./store", f"storage: s3://{s3_bucket}/amp")
    )
    (tmp_path / "amp_braze.yaml").write_text(text)
    cfg = load_config(tmp_path / "amp_braze.yaml")
    from amp_braze.storage import Storage

    brand = Brand(tmp_path, cfg, Storage(cfg.storage))
    _, meta = brand.sync()
    assert (
        meta["braze_sync"]["users_sent"] == 300 and meta["braze_sync"]["checkpoints"] == 2
    )  # 150 + 150
    state = SyncState(brand.storage, cfg.syncs["braze"].names.state_key)
    view = state.current()
    assert (
        view.version == 1 and view.table.height == 300 and view.folded_through == 6
    )  # 4 intents (75 rows each), 2 checkpoints
    listed = brand.storage.list(f"sync/{cfg.syncs['braze'].names.state_key}/state")
    assert (
        len(listed) == 2
        and listed[0] == f"sync/{cfg.syncs['braze'].names.state_key}/state/v000001/manifest.json"
    )
    assert listed[1].startswith(
        f"sync/{cfg.syncs['braze'].names.state_key}/state/v000001/part-00000-"
    )
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 0
    assert_braze_matches(brand, emulator)


@pytest.mark.slow
def test_old_state_versions_and_folded_checkpoints_are_deleted(brand, emulator):
    """Each sync writes a full snapshot; only the newest sync.keep_state_versions (3) stay, the
    checkpoint files folded into the newest are deleted, a crashed run's checkpoints are not."""
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key)
    feed = make_feed(1500)
    metas = []
    for k in range(4):  # a first sync, then three with one more ltv change each
        brand.write_feed(feed.with_columns(pl.col("ltv") + k))
        metas.append(brand.sync()[1]["braze_sync"])
    assert [m["state_version"] for m in metas] == [1, 2, 3, 4]
    assert [m["old_state_versions_deleted"] for m in metas] == [0, 0, 0, 1]
    assert [m["journal_entries_deleted"] for m in metas] == [
        m["checkpoints"] + m["intents"] for m in metas
    ]
    assert metas[0]["checkpoints"] == 5  # 1,500 users, a checkpoint every 300
    assert state.versions() == [2, 3, 4]
    assert brand.storage.list(f"{state.base}/journal") == []
    assert sorted(p.name for p in Path(brand.storage.uri(f"{state.base}/state")).iterdir()) == [
        "v000002", "v000003", "v000004",
    ]  # fmt: skip
    assert state.manifest(4)["folded_through"] == sum(
        m["checkpoints"] + m["intents"] for m in metas
    )
    assert_braze_matches(brand, emulator)

    # A crashed run's checkpoint is pending: pruning leaves it, and the state still folds it in.
    row = (
        state.current()
        .table.head(1)
        .select(ID, pl.lit(123.0).alias("ltv"), pl.lit(True).alias(flag("ltv")))
    )
    name = state.write_checkpoint(row)
    assert state.prune(2) == (1, 0)
    assert brand.storage.exists(name) and state.versions() == [3, 4]
    view = state.current()
    assert view.pending == [name]
    assert view.table.filter(pl.col(ID) == row[ID][0])["ltv"].item() == 123.0
