"""The pipeline in shards on real workers: Redis, two dagster-celery workers and Dagster's run
storage in PostgreSQL, all started here. Runs are launched as a deployment launches them
(`dagster job execute`, one run per shard, side by side). Steps run on both workers; Braze ends as
one shard in one process leaves it, with the same data points and rejections; the sends never
overlap. A worker killed in the middle of a sync loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from celery import Celery

from amp_braze.resharding import run_job
from amp_braze_tests.support.brand import (
    Brand,
    assert_braze_matches,
    braze_profiles,
    day_two,
    make_brand,
)
from amp_braze_tests.support.celery import CeleryWorker, RedisServer
from amp_braze_tests.support.servers import start_emulator

SHARDS = 4
REDELIVERY = 10  # seconds before a dead worker's task goes to another (longer than any step here)
pytestmark = pytest.mark.slow


class Deployment:
    """A Dagster instance on PostgreSQL, a broker, and workers, around one brand's project."""

    def __init__(self, brand: Brand, home: Path, redis: RedisServer):
        self.brand, self.home, self.redis = brand, home, redis
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "AMP_BRAZE_CONFIG": str(brand.folder / "amp_braze.yaml"),
            "BRAZE_API_KEY": "test-key",
        }
        self.app = Celery(broker=redis.url, backend=redis.url)
        self.workers: list[CeleryWorker] = []

    def worker(self, name: str, **env: str) -> CeleryWorker:
        w = CeleryWorker(
            name, self.redis.url, self.redis.url, {**self.env, **env}, self.brand.folder, REDELIVERY
        )
        self.workers.append(w.start())
        return w

    def launch(self, job: str, shard: str | None = None) -> subprocess.Popen:
        """A run as a schedule's run launcher starts it: its own process, the instance's storage."""
        args = [sys.executable, "-m", "dagster", "job", "execute", "-m", "amp_braze.definitions"]
        args += ["-j", job]
        if shard:
            args += ["--tags", json.dumps({"dagster/partition": shard})]
        return subprocess.Popen(
            args,
            cwd=self.brand.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def sync(self) -> list[int]:
        """The feeds, then every shard side by side; each run's exit code."""
        feeds = self.launch("braze_sync_job_feeds")
        assert feeds.wait(300) == 0, feeds.stdout.read()[-3000:]
        runs = [self.launch("braze_sync_job", f"shard_{i:02d}") for i in range(SHARDS)]
        return [r.wait(300) for r in runs]

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def _instance(home: Path) -> dg.DagsterInstance:
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _workers_of(instance: dg.DagsterInstance) -> set[str]:
    """The Celery worker each step ran on, as its engine events name it."""
    names = set()
    for run in instance.get_runs():
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = e.dagster_event.engine_event_data
            if data and "Celery worker" in data.metadata:
                names.add(data.metadata["Celery worker"].value)
    return names


def _sends(instance: dg.DagsterInstance) -> list[tuple[float, float]]:
    """(start, end) of every braze_sync step that succeeded."""
    out = []
    for run in instance.get_runs():
        starts, ends = {}, {}
        for e in instance.all_logs(run.run_id):
            if e.step_key != "braze_sync" or e.dagster_event is None:
                continue
            kind = e.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                starts[run.run_id] = e.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS:
                ends[run.run_id] = e.timestamp
        out += [(starts[r], ends[r]) for r in ends]
    return sorted(out)


def _figures(instance: dg.DagsterInstance) -> dict[str, int]:
    records = instance.fetch_materializations(dg.AssetKey("braze_sync"), limit=1000).records
    total = {"data_points": 0, "rejected_rows": 0, "users_sent": 0}
    for r in records:
        for k in total:
            total[k] += r.asset_materialization.metadata[k].value
    return total


def _reference(tmp_path: Path) -> tuple[dict, list[dict[str, int]], int]:
    """The same brand in one shard, in one process: Braze's profiles, each day's figures, and
    the rows set aside by field rules."""
    emulator = start_emulator("test-key")
    try:
        brand = make_brand(tmp_path / "one", emulator.url, on_removed="unset")
        instance = dg.DagsterInstance.ephemeral()
        days = []
        for day in (1, 2):
            if day == 2:
                day_two(brand)
            before = _figures(instance)
            run_job(brand.defs(), brand.config, "braze_sync_job", instance)
            now = _figures(instance)
            days.append({k: now[k] - before[k] for k in now})
        rejected = brand.storage.read_table("braze_customer_attributes_rejections").height
        return braze_profiles(emulator), days, rejected
    finally:
        emulator.server.stop()


def test_shards_on_two_celery_workers(tmp_path, postgres, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", "test-key")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    want_profiles, want_days, want_rejected = _reference(tmp_path)

    postgres.create_database("dagster_celery_test")
    url = postgres.uri_for("dagster_celery_test").replace("postgresql://", "postgresql+psycopg2://")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {url}\n"
        "concurrency:\n  pools:\n    default_limit: 1\n"
    )
    emulator = start_emulator("test-key")
    with RedisServer(tmp_path / "redis") as redis:
        scale = (
            f"scale: {{shards: {SHARDS}, executor: celery, celery_broker: '{redis.url}', "
            f"celery_redelivery_seconds: {REDELIVERY}}}\n"
        )
        brand = make_brand(tmp_path / "split", emulator.url, extra=scale, on_removed="unset")
        deployment = Deployment(brand, home, redis)
        try:
            for w in (deployment.worker("w1"), deployment.worker("w2")):
                w.wait_ready(deployment.app)
            instance = _instance(home)

            # Day one: every shard side by side on both workers.
            assert deployment.sync() == [0] * SHARDS
            assert _workers_of(instance) == {w.hostname for w in deployment.workers}
            sends = _sends(instance)
            assert len(sends) == SHARDS
            assert all(a[1] <= b[0] for a, b in zip(sends, sends[1:], strict=False)), (
                sends
            )  # one at a time
            day_one = _figures(instance)
            assert day_one == want_days[0]
            assert_braze_matches(brand, emulator)

            # Day two, and a worker dies in the middle of shard_00's sync: a failpoint stops it
            # after it recorded what it is about to send, and the machine goes away.
            day_two(brand)
            for w in deployment.workers:
                w.stop()
            failpoints = tmp_path / "failpoints"
            failpoints.mkdir()
            doomed = deployment.worker(
                "w3",
                AMP_BRAZE_FAILPOINT="sync.window_recorded",
                AMP_BRAZE_FAILPOINT_DIR=str(failpoints),
            )
            doomed.wait_ready(deployment.app)
            feeds = deployment.launch("braze_sync_job_feeds")
            assert feeds.wait(300) == 0
            stopped = deployment.launch("braze_sync_job", "shard_00")
            deadline = time.monotonic() + 120
            while not (failpoints / "sync.window_recorded").exists():
                assert time.monotonic() < deadline and stopped.poll() is None, "never got there"
                time.sleep(0.1)
            survivor = deployment.worker("w4")
            survivor.wait_ready(deployment.app)
            doomed.kill()
            # Its task was never acknowledged: after the redelivery time the broker gives it to w4,
            # which runs the step again from the sync state (the window in doubt is sent again).
            assert stopped.wait(300) == 0, stopped.stdout.read()[-3000:]
            assert deployment.sync() == [0] * SHARDS  # the next sync, every shard
            assert_braze_matches(brand, emulator)
            assert braze_profiles(emulator) == want_profiles
            total = _figures(instance)
            assert (
                total["rejected_rows"]
                == want_days[0]["rejected_rows"] + want_days[1]["rejected_rows"]
            )
            # The window in doubt may go out twice, nothing else does.
            sent_day_two = total["data_points"] - day_one["data_points"]
            assert want_days[1]["data_points"] <= sent_day_two <= want_days[1]["data_points"] * 2
            from amp_braze.shards import shard_stores

            rejected = sum(
                s.read_table("braze_customer_attributes_rejections").height
                for s in shard_stores(brand.storage, SHARDS)
            )
            assert rejected == want_rejected == 5
            assert "w4@" in " ".join(_workers_of(instance))
        finally:
            deployment.stop()
            emulator.server.stop()
