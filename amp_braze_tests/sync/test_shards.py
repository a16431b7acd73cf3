"""The pipeline split in shards (scale.shards): Braze ends as one shard leaves it, with the same
data points and rejections; each shard holds only its customers; changing the number of shards
resends nothing; the schedule reads the feeds once and the sensor then runs every shard."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from amp_braze.config import load_config
from amp_braze.resharding import run_job
from amp_braze.shard_figures import ROUND_TAG
from amp_braze.shards import shard_of, shard_stores
from amp_braze.storage import Storage
from amp_braze_tests.support.brand import (
    Brand,
    assert_braze_matches,
    braze_profiles,
    day_two,
    day_two_feed,
    make_brand,
    make_feed,
)
from amp_braze_tests.support.servers import start_emulator


def _sharded(n: int) -> str:
    return f"scale: {{shards: {n}}}\n"


def _sync(brand: Brand, instance: dg.DagsterInstance) -> dict[str, int]:
    """One sync of every shard, as the schedule and its sensor run it: the feeds, then each
    shard; the figures braze_sync reports, added up over the shards."""
    records: list[dg.EventLogRecord] = []
    before = {r.storage_id for r in _sync_records(instance)}
    run_job(brand.defs(), brand.config, "braze_sync_job", instance)
    records = [r for r in _sync_records(instance) if r.storage_id not in before]
    assert len(records) == brand.config.scale.shards
    total: dict[str, int] = {}
    for r in records:
        meta = r.asset_materialization.metadata
        for k in ("data_points", "users_sent", "rejected_rows"):
            total[k] = total.get(k, 0) + meta[k].value
    if brand.config.scale.shards > 1:  # the last shard's materialization adds up every shard's
        last = max(records, key=lambda r: r.storage_id).asset_materialization.metadata
        assert {k: last[f"all_shards_{k}"].value for k in total} == total
        assert last["shards_in_this_round"].value == brand.config.scale.shards
    return total


def _segment_sizes(brand: Brand, instance: dg.DagsterInstance) -> dict[str, int]:
    """Each segment's size as the UI shows it: the last materialization's, over all shards."""
    (last,) = instance.fetch_materializations(dg.AssetKey("segment_memberships"), limit=1).records
    meta = last.asset_materialization.metadata
    split = brand.config.scale.shards > 1
    return {
        k.removeprefix("all_shards_"): v.value
        for k, v in meta.items()
        if k.startswith("all_shards_size_" if split else "size_")
    }


def _sync_records(instance: dg.DagsterInstance) -> list:
    return list(instance.fetch_materializations(dg.AssetKey("braze_sync"), limit=1000).records)


def _rejections(brand: Brand) -> int:
    stores = shard_stores(brand.storage, brand.config.scale.shards)
    return sum(s.read_table("braze_customer_attributes_rejections").height for s in stores)


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", "test-key")


@pytest.mark.slow
def test_four_shards_leave_braze_as_one_does(tmp_path, api_key):
    results = {}
    for n in (1, 4):
        emulator = start_emulator("test-key")
        try:
            brand = make_brand(
                tmp_path / f"n{n}", emulator.url, extra=_sharded(n), on_removed="unset"
            )
            instance = dg.DagsterInstance.ephemeral()
            first = _sync(brand, instance)
            day_two(brand)
            second = _sync(brand, instance)
            assert_braze_matches(brand, emulator)
            sizes = _segment_sizes(brand, instance)
            results[n] = (first, second, _rejections(brand), braze_profiles(emulator), sizes)
        finally:
            emulator.server.stop()
    one, four = results[1], results[4]
    assert four[0] == one[0] and four[1] == one[1]  # data points, users, rejections per day
    assert four[2] == one[2] > 0  # rows set aside by the field rules
    assert four[4] == one[4] and one[4]["size_gold"] > 0  # as the UI shows the segments
    # 1500 sent, 20 of them left (their attributes unset), 30 came of whom 5 were set aside.
    assert four[3] == one[3] and len(one[3]) == 1525
    assert len([p for p in one[3].values() if p]) == 1505
    assert 0 < one[1]["data_points"] < one[0]["data_points"] / 10  # day two: only the change
    # Each shard holds its own customers, and together all of them once.
    stores = shard_stores(brand.storage, 4)
    keys = []
    for i, store in enumerate(stores):
        ids = store.read_table("customer_profiles").get_column("id")
        assert ids.len() > 0 and (shard_of(ids, 4) == i).all()
        keys += ids.to_list()
    assert sorted(keys) == sorted(make_feed(1530).slice(20).get_column("id").to_list())
    assert four[2] == 5
    assert not brand.storage.exists("tables/customer_profiles.parquet")


@pytest.mark.slow
def test_changing_the_number_of_shards_resends_nothing(tmp_path, api_key):
    """2 shards, then 4 (refused until `amp-braze reshard`, as the README's docs say to type
    it), then back to 1: each next sync sends exactly what one unsharded brand sends."""
    emulator = start_emulator("test-key")
    whole = start_emulator("test-key")
    try:
        brand = make_brand(tmp_path / "split", emulator.url, extra=_sharded(2), on_removed="unset")
        same = make_brand(tmp_path / "whole", whole.url, on_removed="unset")
        instance = dg.DagsterInstance.ephemeral()
        assert _sync(brand, instance) == _sync(same, instance)
        # user-77, whom Braze has, gets an email the field rules set aside: its row is held, not
        # taken for a user who left (unset), in whichever shard it lands after a re-split.
        for b in (brand, same):
            b.write_feed(_spoiled(make_feed(1500)))
        assert _sync(brand, instance) == _sync(same, instance)
        path = brand.folder / "amp_braze.yaml"
        # The state's users: the first 1500; then 30 came (5 set aside) and 20 left (unset).
        for n, users in ((4, "1,500"), (1, "1,525")):
            path.write_text(path.read_text().replace(_sharded(2 if n == 4 else 4), _sharded(n)))
            brand = Brand(brand.folder, load_config(path), brand.storage)
            failed = run_job_quietly(brand, instance)
            assert "amp-braze reshard" in failed
            out = _cli("reshard", "--config", str(path))
            assert f"split in {n} shard(s)" in out and f"{users} users" in out
            assert "nothing to do" in _cli("reshard", "--config", str(path))
            for b in (brand, same):
                b.write_feed(_spoiled(day_two_feed() if n == 4 else make_feed(1500)))
            assert _sync(brand, instance) == _sync(same, instance)
            assert braze_profiles(emulator) == braze_profiles(whole)
            # Held, not unset. (assert_braze_matches would call user-77 unexpected: the wanted
            # state leaves out a row set aside; the unsplit brand is the reference here.)
            assert braze_profiles(emulator)["user-77"]["tier"]
    finally:
        emulator.server.stop()
        whole.server.stop()


def _spoiled(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.col("id") == "user-77")
        .then(pl.lit("not an email"))
        .otherwise("email")
        .alias("email")
    )


def run_job_quietly(brand: Brand, instance: dg.DagsterInstance) -> str:
    """Run a sync that should be refused; the failure's text."""
    with pytest.raises(dg.Failure) as info:
        run_job(brand.defs(), brand.config, "braze_sync_job", instance)
    return info.value.description


def _cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_schedule_reads_the_feeds_and_the_sensor_runs_every_shard(tmp_path):
    brand = make_brand(tmp_path, "http://127.0.0.1:9", extra=_sharded(3))
    defs = brand.defs()
    schedule = defs.resolve_schedule_def("braze_sync_schedule")
    assert schedule.job_name == "braze_sync_job_feeds"
    feeds = defs.resolve_job_def("braze_sync_job_feeds")
    chain = defs.resolve_job_def("braze_sync_job")
    assert {k.to_user_string() for k in feeds.asset_layer.executable_asset_keys} == {"sources/crm"}
    assert dg.AssetKey("customer_profiles") in chain.asset_layer.executable_asset_keys
    profiles = defs.resolve_assets_def("customer_profiles")
    assert profiles.partitions_def.get_partition_keys() == ["shard_00", "shard_01", "shard_02"]
    sensor = defs.resolve_sensor_def("braze_sync_job_shards")
    instance = dg.DagsterInstance.ephemeral()
    result = feeds.execute_in_process(instance=instance)
    run = result.dagster_run
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=result.get_run_success_event(),
    )
    requests = sensor(context)
    assert [r.partition_key for r in requests] == ["shard_00", "shard_01", "shard_02"]
    assert {r.tags[ROUND_TAG] for r in requests} == {run.run_id}  # one round's figures
    assert len({r.run_key for r in requests}) == 3 and all(
        run.run_id in r.run_key for r in requests
    )


def test_one_shard_keeps_the_graph_as_it_was(tmp_path):
    brand = make_brand(tmp_path, "http://127.0.0.1:9")
    defs = brand.defs()
    assert all(a.partitions_def is None for a in defs.assets)
    assert defs.resolve_schedule_def("braze_sync_schedule").job_name == "braze_sync_job"
    assert not list(defs.sensors or [])
    assert Storage(brand.config.storage).shared.root == Storage(brand.config.storage).root


def test_every_job_of_several_syncs_goes_on_to_its_shards(tmp_path):
    from amp_braze.definitions import build_defs
    from amp_braze_tests.support.brand import SQL
    from amp_braze_tests.support.configs import write_config
    from amp_braze_tests.sync.test_many_syncs import CONFIG, LOYALTY

    (tmp_path / "loyalty.sql").write_text(LOYALTY)
    body = CONFIG.format(us="http://127.0.0.1:9", eu="http://127.0.0.1:8", rate=100)
    defs = build_defs(load_config(write_config(tmp_path, body + _sharded(3), SQL)))
    syncs = ["profiles_us", "loyalty_us", "winback_eu"]
    assert {s.name for s in defs.sensors} == {
        f"{j}_shards" for j in ["braze_sync_job"] + [f"{s}_job" for s in syncs]
    }
    for name in syncs:
        assert defs.resolve_schedule_def(f"{name}_schedule").job_name == f"{name}_job_feeds"
    # The sync with its own query: its attributes are split too.
    own = defs.resolve_assets_def(dg.AssetKey(["loyalty_us", "attributes"]))
    assert own.partitions_def.get_partition_keys() == ["shard_00", "shard_01", "shard_02"]


def test_the_dry_run_plans_every_shard(tmp_path, api_key):
    brand = make_brand(tmp_path, "http://127.0.0.1:9", extra=_sharded(2))
    out = _cli(
        "plan", "--config", str(brand.folder / "amp_braze.yaml"), "--out", str(tmp_path / "r.jsonl")
    )
    users = 0
    for shard in ("shard_00", "shard_01"):
        assert f"{shard}:" in out
        lines = (tmp_path / f"r.{shard}.jsonl").read_text().splitlines()
        users += sum(len(json.loads(line)["attributes"]) for line in lines)
    assert users == 1500  # every customer once, in one shard or the other


def test_a_resplit_puts_each_user_with_the_shard_that_answers_for_it(tmp_path):
    """Into the shard whose attributes hold the user, or whose field rejections do (a user Braze
    has whose row a rule set aside: that shard keeps it as it is), else by its identifier's hash."""
    from amp_braze.shards import shard_names
    from amp_braze.sync.reshard import resplit_state
    from amp_braze.sync.state import SyncState

    brand = make_brand(tmp_path, "http://127.0.0.1:9", extra=_sharded(2))
    spec = brand.config.syncs["braze"]
    shared = brand.storage
    ids = ["held-by-00", "held-by-01", "set-aside", "gone"]
    state = pl.DataFrame({"__id": ids, "tier": ["a", "b", "c", "d"]}).sort("__id")
    assert SyncState(shared, spec.names.state_key).write_version(1, state, 0)
    stores = dict(zip(shard_names(2), shard_stores(shared, 2), strict=True))
    stores["shard_00"].write_table(spec.names.attributes, pl.DataFrame({"__id": ["held-by-00"]}))
    stores["shard_01"].write_table(spec.names.attributes, pl.DataFrame({"__id": ["held-by-01"]}))
    stores["shard_01"].write_table(
        spec.names.field_rejections, pl.DataFrame({"__id": ["set-aside", None]})
    )
    stores["shard_00"].write_table(
        spec.names.field_rejections, pl.DataFrame({"__id": pl.Series([], dtype=pl.String)})
    )
    assert shard_of(pl.Series(["set-aside"]), 2)[0] == 0  # its hash alone would take it elsewhere
    (done,) = resplit_state(brand.config, shared, 1, 2)
    held = {
        name: SyncState(store, spec.names.state_key).current().table.get_column("__id").to_list()
        for name, store in stores.items()
    }
    gone_home = shard_names(2)[shard_of(pl.Series(["gone"]), 2)[0]]
    assert "held-by-00" in held["shard_00"] and "held-by-01" in held["shard_01"]
    assert "set-aside" in held["shard_01"] and "gone" in held[gone_home]
    assert sorted(held["shard_00"] + held["shard_01"]) == sorted(ids)  # each once
    assert done.users == 4 and sum(done.per_shard.values()) == 4
