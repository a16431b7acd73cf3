"""``amp-braze demo``: the whole loop, offline, on generated data and the real Dagster definitions.

Day one: feeds -> customer_profiles -> braze_customer_attributes -> segment_memberships ->
braze_sync_plan -> braze_sync, into a Braze emulator on a free loopback port. Day two: 1% of the
customers spend more; the next sync sends only what changed. Then a check that the emulator holds
exactly the wanted state.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import dagster as dg
import polars as pl
import requests

from amp_braze.braze.emulator import EmulatorServer, Settings
from amp_braze.config import BUNDLED_CONFIG, Config, load_config
from amp_braze.profiles.sample_data import generate
from amp_braze.storage import Storage
from amp_braze.sync.verify import compare

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_KEY = "amp-braze-demo-key"


class Progress:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def step(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {text}", flush=True)


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, dict]:
    result = dg.materialize(
        list(defs.assets), instance=instance, raise_on_error=True, run_config=QUIET
    )
    out = {}
    for ev in result.get_asset_materialization_events():
        md = ev.materialization.metadata
        out[ev.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in md.items()}
    return out


def _day_two(feed: Path, share: float = 0.01) -> int:
    """1% of point-of-sale customers make a big purchase: spend up, timestamp newer."""
    pos = pl.read_csv(feed, infer_schema=False)
    ids = pos.get_column("customer_id").unique().sort()
    chosen = ids.gather_every(int(1 / share))
    later = (dt.datetime(2026, 11, 2)).strftime("%Y-%m-%d %H:%M:%S")
    pos = pos.with_columns(
        pl.when(pl.col("customer_id").is_in(chosen.implode()))
        .then((pl.col("lifetime_spend").cast(pl.Float64) + 1200).round(2).cast(pl.String))
        .otherwise(pl.col("lifetime_spend"))
        .alias("lifetime_spend"),
        pl.when(pl.col("customer_id").is_in(chosen.implode()))
        .then(pl.lit(later))
        .otherwise(pl.col("updated_at"))
        .alias("updated_at"),
    )
    pos.write_csv(feed)
    return chosen.len()


def _print_sync(label: str, plan: dict, sync: dict) -> None:
    full = plan["full_sync_data_points"]
    print(
        f"  {label}: {sync['users_sent']:>7,} users, {sync['attributes_sent']:>8,} attributes, "
        f"{sync['data_points']:>8,} data points (a full resend: {full:,}), {sync['requests']:,} requests, "
        f"{sync['rate_limited_429s']} 429s, {sync['rejected_rows']} rejected"
    )


def run_demo(
    profiles: int = 10_000, workdir: Path = Path(".amp_braze_demo"), keep_running: bool = False
) -> int:
    from amp_braze.definitions import build_defs

    progress = Progress()
    workdir = workdir.resolve()
    os.environ["AMP_BRAZE_HOME"] = str(workdir)
    data = workdir / ".amp_braze" / "demo_data"
    progress.step(f"generating sample feeds for {profiles:,} customers in {data}")
    generate(data, customers=profiles)
    storage_dir = workdir / ".amp_braze" / "storage"
    if storage_dir.exists():  # a fresh emulator holds nothing: start the sync state afresh too
        import shutil

        shutil.rmtree(storage_dir)

    server = EmulatorServer(settings=Settings(api_key=DEMO_KEY)).start()
    os.environ["BRAZE_REST_ENDPOINT"] = server.url
    os.environ["BRAZE_API_KEY"] = DEMO_KEY
    progress.step(f"Braze emulator listening on {server.url}")
    try:
        config = load_config(BUNDLED_CONFIG)
        defs = build_defs(config)
        instance = dg.DagsterInstance.ephemeral()

        progress.step("day one: feeds -> profiles -> attributes -> segments -> plan -> sync")
        day1 = _materialize(defs, instance)
        changed = _day_two(data / "pos_customers.csv")
        progress.step(f"day two: {changed:,} customers spent more; syncing again")
        day2 = _materialize(defs, instance)
        progress.step("comparing the emulator's profiles with the wanted state")
        users = requests.get(f"{server.url}/_emulator/users", timeout=60).json()
        stats = requests.get(f"{server.url}/_emulator/stats", timeout=10).json()
        check = compare(config, Storage(config.storage), users)
        _summary(config, day1, day2, stats, check)
        if keep_running:
            print(f"\nBraze emulator: {server.url} (key {DEMO_KEY}); Ctrl-C to stop.")
            while True:
                time.sleep(3600)
        return 0 if check.equal else 1
    finally:
        server.stop()


def _summary(config: Config, day1: dict, day2: dict, stats: dict, check) -> None:
    print("\namp_braze demo summary")
    print("----------------------")
    for name in config.sources:
        m = day1[f"sources/{name}"]
        print(
            f"  feed {name:<10} {m['dagster/row_count']:>10,} rows  {m['distinct_customers']:>10,} customers"
        )
    cp = day1["customer_profiles"]
    print(f"  customer_profiles {cp['dagster/row_count']:>10,} unified customers")
    ba = day1["braze_customer_attributes"]
    print(
        f"  braze attributes  {ba['dagster/row_count']:>10,} users ready, {ba['rejected_rows']:,} rows set aside "
        f"by field rules (braze_customer_attributes_rejections)"
    )
    sm1, sm2 = day1["segment_memberships"], day2["segment_memberships"]
    for seg in config.segments:
        print(
            f"  segment {seg:<12} {sm1[f'size_{seg}']:>8,} members; day two {sm2[f'size_{seg}']:>8,} "
            f"(+{sm2[f'joiners_{seg}']:,} / -{sm2[f'leavers_{seg}']:,})"
        )
    _print_sync("sync day one", day1["braze_sync_plan"], day1["braze_sync"])
    _print_sync("sync day two", day2["braze_sync_plan"], day2["braze_sync"])
    print(
        f"  emulator: {stats['users']:,} profiles, {stats['track_requests']:,} requests, "
        f"{stats['data_points']:,} data points billed in all"
    )
    verdict = "EQUAL" if check.equal else "DIFFERENT"
    print(
        f"  check: Braze holds the wanted state for {check.wanted_users:,} users: {verdict}"
        + ("" if check.equal else f" ({len(check.missing)} missing, {len(check.different)} differ)")
    )
    print(f"  storage: {config.storage}")
