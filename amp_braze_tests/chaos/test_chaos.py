"""Chaos, with real processes against the emulator, on a plain Dagster instance (a DAGSTER_HOME
with no dagster.yaml: no pools, no run queue limits), as a user's first deployment has it.

- Two full ``braze_sync_job`` runs started at the same moment (``dagster job execute``: the
  default multiprocess executor), several times, on data that changes between rounds.
- SIGKILL of a sync at many moments of its life (before the first request, right after a window
  is recorded, mid-batch, while a journal entry or the new state version is being written, after
  the commit), half of the time with the data changing again before the next run, some values
  back to what they were. Each is followed by a normal run: Braze must end equal to the wanted
  state, a further run must send nothing, and the data points spent on values Braze already held
  (the emulator counts them) stay within one checkpoint plus the requests in flight.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from amp_braze.failpoints import DIR_ENV, ENV
from amp_braze.sync.run import window_rows
from amp_braze_tests.support.brand import Brand, assert_braze_matches, make_brand, make_feed

pytestmark = pytest.mark.slow

N = 2000
CHECKPOINT_ROWS = 200
CONCURRENCY = 2
IN_PROCESS_RUN = """
import sys, dagster as dg
from amp_braze.config import load_config
from amp_braze.definitions import build_defs
defs = build_defs(load_config(sys.argv[1]))
defs.resolve_job_def("braze_sync_job").execute_in_process(instance=dg.DagsterInstance.get())
"""


def _env(brand: Brand, home: Path, key: str, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (ENV, DIR_ENV)}
    env |= {
        "DAGSTER_HOME": str(home),
        "AMP_BRAZE_CONFIG": str(brand.folder / "amp_braze.yaml"),
        "BRAZE_API_KEY": key,
    }
    return env | extra


def _job_execute(brand: Brand, env: dict[str, str]) -> subprocess.Popen:
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(dagster), "job", "execute", "-m", "amp_braze.definitions", "-j", "braze_sync_job"],
        cwd=brand.folder, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _in_process(brand: Brand, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", IN_PROCESS_RUN, str(brand.folder / "amp_braze.yaml")],
        cwd=brand.folder, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and any step processes it started
    except ProcessLookupError:
        pass
    proc.wait(30)


def _changed(feed: pl.DataFrame, share: float, seed: int, step: float) -> pl.DataFrame:
    rng = random.Random(seed)
    ids = [f"user-{i}" for i in rng.sample(range(N), int(N * share))]
    return feed.with_columns(
        pl.when(pl.col("id").is_in(ids)).then(pl.col("ltv") + step).otherwise("ltv").alias("ltv")
    )


@pytest.fixture
def chaos_brand(tmp_path, emulator, monkeypatch) -> Brand:
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(
        tmp_path / "brand", emulator.url, n=N, checkpoint_rows=CHECKPOINT_ROWS,
        concurrency=CONCURRENCY,
    )  # fmt: skip
    brand.sync()
    assert_braze_matches(brand, emulator)
    return brand


def test_overlapping_job_runs_send_the_change_once(chaos_brand, emulator, tmp_path):
    brand = chaos_brand
    home = tmp_path / "dagster_home"  # one plain instance, as a schedule and a person share it
    feed = make_feed(N)
    # An instance that exists already, as a deployment's does (two processes creating a brand-new
    # SQLite instance at the same instant race inside Dagster itself).
    dagster = Path(sys.executable).with_name("dagster")
    init = subprocess.run(
        [str(dagster), "instance", "migrate"], env=_env(brand, home, emulator.key),
        capture_output=True, text=True,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr[-2000:]
    emulator.faults(latency_ms=10)
    report = []
    for round_ in range(3):
        feed = _changed(feed, 0.4, seed=round_, step=1.0)
        brand.write_feed(feed)
        before = emulator.stats()
        env = _env(brand, home, emulator.key)
        procs = [_job_execute(brand, env) for _ in range(2)]  # the same moment
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
        after = emulator.stats()
        # The change, as a single run on the same data computes it now (it sends nothing).
        _, meta = brand.sync()
        assert meta["braze_sync"]["users_sent"] == 0
        sent = after["data_points"] - before["data_points"]
        needless = after["unchanged_data_points"] - before["unchanged_data_points"]
        report.append((round_, sent, needless))
        assert needless == 0, report
        assert_braze_matches(brand, emulator)
    print("overlapping rounds (round, data points sent, of which unchanged):", report)


# Where each kill lands. (failpoint, nth time reached) or ("requests", k): after k requests.
TRIALS = [
    ("sync.lease_taken", 1),  # before the first request
    ("sync.window_recorded", 1),  # the first window recorded, nothing sent yet
    ("requests", 3),  # mid-batch
    ("journal.checkpoint", 1),  # right after the first checkpoint
    ("storage.create_staged", 4),  # inside a journal write: staged, not yet published
    ("requests", 9),
    ("sync.window_recorded", 3),
    ("commit.part_written", 1),  # the new version's table written, its manifest not
    ("requests", 14),
    ("commit.manifest_written", 1),  # committed, before old versions are pruned
    ("journal.checkpoint", 2),
    ("requests", 6),
]


def _kill_at(brand, emulator, env, where, nth, job_execute: bool, flags: Path) -> str:
    for f in flags.glob("*"):
        f.unlink()
    env = dict(env)
    if where != "requests":
        env |= {ENV: f"{where}:{nth}", DIR_ENV: str(flags)}
    start_requests = emulator.stats()["track_requests"]
    proc = (_job_execute if job_execute else _in_process)(brand, env)
    deadline = time.monotonic() + 120
    while True:
        if where == "requests":
            if emulator.stats()["track_requests"] - start_requests >= nth:
                break
        elif (flags / where).exists():
            break
        if proc.poll() is not None:
            return "finished before the kill"
        assert time.monotonic() < deadline, f"never reached {where}:{nth}"
        time.sleep(0.005)
    _kill(proc)
    return "killed"


def test_syncs_killed_at_any_moment_lose_nothing(chaos_brand, emulator, tmp_path):
    brand = chaos_brand
    flags = tmp_path / "flags"
    flags.mkdir()
    feed = make_feed(N)
    emulator.faults(latency_ms=25)  # spreads a run's 1 s of sending over more moments
    bound = (
        CHECKPOINT_ROWS + window_rows(brand.config, brand.config.braze) + 75 * 3 * CONCURRENCY
    ) * 2
    rows = []
    for t, (where, nth) in enumerate(TRIALS):
        previous = feed
        feed = _changed(feed, 0.35, seed=100 + t, step=1.0)
        brand.write_feed(feed)
        env = _env(brand, tmp_path / "dagster_home", emulator.key)
        job_execute = t in (1, 7)  # two trials through the default multiprocess executor
        outcome = _kill_at(brand, emulator, env, where, nth, job_execute, flags)
        if t % 2 == 1:  # the data changes again before the next run, half of it back
            back = random.Random(t).sample(range(N), N // 5)
            ids = [f"user-{i}" for i in back]
            feed = feed.with_columns(
                pl.when(pl.col("id").is_in(ids)).then(previous["ltv"]).otherwise("ltv").alias("ltv")
            )
            feed = _changed(feed, 0.05, seed=200 + t, step=0.5)
            brand.write_feed(feed)
        before = emulator.stats()
        _, meta = brand.sync()  # the normal run after the crash
        after = emulator.stats()
        needless = after["unchanged_data_points"] - before["unchanged_data_points"]
        assert_braze_matches(brand, emulator)
        _, meta2 = brand.sync()
        assert meta2["braze_sync"]["users_sent"] == 0, (where, nth)
        rows.append((t, f"{where}:{nth}", outcome, job_execute, needless))
        assert needless <= bound, rows
    worst = max(rows, key=lambda r: r[-1])
    print("\nkill trials (trial, where, outcome, multiprocess, unchanged data points resent):")
    for r in rows:
        print("  ", r)
    print(f"worst: {worst[-1]} data points (bound {bound}: one checkpoint, one window, in flight)")
    assert sum(r[2] == "killed" for r in rows) >= 10
