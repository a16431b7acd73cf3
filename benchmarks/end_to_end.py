"""Scenario 4, end to end: N profiles through the real Dagster definitions against the emulator at a
rate limit R: a first full sync, then an incremental run with 1% of the customers changed. Wall time
of each materialization (feeds to braze_sync), plus what was sent."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import load_config
from amp_braze.demo.run import QUIET, _day_two
from benchmarks.harness import Row, report

CONFIG = """
storage: {home}/storage
sources:
  pos: {{path: {home}/data/pos_customers.csv, customer_key: customer_id, updated_at: updated_at, priority: 1,
        columns: {{EMAIL: email, PHONE: phone}}, types: {{phone: string, last_purchase_date: date}}}}
  ecommerce: {{path: {home}/data/ecommerce_customers.parquet, customer_key: customer_id, updated_at: updated_at, priority: 2}}
  loyalty: {{path: {home}/data/loyalty_members.ndjson, customer_key: customer_id, updated_at: updated_at, priority: 3,
            columns: {{member_customer_id: customer_id}}, types: {{dob: date}}}}
profile_sql: {sql}
braze:
  rest_endpoint: {url}
  rate_limit: {{requests: {limit}, per_seconds: 3}}
  concurrency: 8
segments:
  vip: {{sql: "SELECT external_id FROM braze_customer_attributes WHERE lifetime_value > 1000"}}
  lapsed: {{rules: {{all: [{{not: {{attribute: last_purchase_date, op: within_last_days, value: 180}}}},
                          {{attribute: email_subscribe, op: "=", value: opted_in}}]}}, exclude: [vip]}}
  loyal_gold: {{rules: {{attribute: loyalty_tier, op: in, value: [gold, platinum]}}}}
sync: {{checkpoint_rows: 50000}}
"""


RECOMPUTE = "same change, everything recomputed"

# One step of the run in a process of its own, as Dagster's default executor runs it: its peak
# memory is the step's own (VmHWM starts afresh at exec), not what earlier steps left behind.
STEP = """
import json, sys, time, dagster as dg
from amp_braze.config import load_config
from amp_braze.definitions import build_defs
# The run config of amp_braze.demo.run.QUIET, inline: a step process loads the code location, not
# the demo (which imports the sample-data generator and numpy).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
defs = build_defs(load_config(sys.argv[1]))
step = [a for a in defs.assets if a.node_def.name == sys.argv[2]]
t = time.perf_counter()
part = sys.argv[3] if len(sys.argv) > 3 and step[0].partitions_def else None
dg.materialize(step, resources=defs.resources, run_config=QUIET, selection=list(step[0].keys),
               partition_key=part)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(json.dumps({"seconds": time.perf_counter() - t, "mb": int(hwm.split()[1]) / 1024}))
"""


def steps_in_own_processes(
    cfg_path: Path, steps: list[str], shard: str | None = None
) -> dict[str, tuple[float, float]]:
    """Per step (in the order given), its seconds and peak memory in a fresh process; a step
    split in shards runs ``shard``."""
    out = {}
    for step in steps:
        cmd = [sys.executable, "-c", STEP, str(cfg_path), step, *([shard] if shard else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"step {step} failed in its own process:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        out[step] = (figures["seconds"], figures["mb"])
    return out


def as_a_scheduled_run(cfg_path: Path, dagster_home: Path) -> float:
    """Wall seconds of ``braze_sync_job`` through ``dagster job execute``: the job's own executor
    (a process per step, forked from a server, as a schedule or the UI runs it), on a persistent
    instance."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"AMP_BRAZE_CONFIG": str(cfg_path), "DAGSTER_HOME": str(dagster_home)}
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "job", "execute", "-m", "amp_braze.definitions", "-j", "braze_sync_job"]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cfg_path.parent)
    if done.returncode:
        raise RuntimeError(f"dagster job execute failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


class RssSampler:
    """This process's resident memory every 0.1 s, to find each step's peak (steps run one after
    another in this process, so a step's figure also holds what earlier steps left allocated:
    an upper bound)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    self.samples.append((time.time(), int(line.split()[1]) / 1024))

    def peak(self, start: float, end: float) -> float:
        return max((mb for t, mb in self.samples if start <= t <= end), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


POS_TABLE = "pos_customers"


def pos_database(csv: Path):
    """A PostgreSQL server holding the point-of-sale feed as a table: the CSV's rows with the
    types the file feed reads them in (updated_at as timestamptz, indexed)."""
    from amp_braze_tests.support.postgres import PostgresServer
    from benchmarks.pg_source import SERVER_SETTINGS

    pg = PostgresServer(settings=SERVER_SETTINGS).start()
    frame = pl.read_csv(
        csv,
        try_parse_dates=True,
        infer_schema_length=10_000,
        schema_overrides={
            "customer_id": pl.String,
            "PHONE": pl.String,
            "last_purchase_date": pl.String,
        },  # fmt: skip
    ).with_columns(pl.col("updated_at").dt.replace_time_zone("UTC"))
    pg.load(POS_TABLE, frame, mode="create")
    pg.execute(f"CREATE INDEX pos_updated_at ON {POS_TABLE} (updated_at)")
    pg.execute(f"VACUUM (ANALYZE) {POS_TABLE}")
    return pg


def pos_day_two(pg, csv: Path, share: float = 0.01) -> int:
    """The demo's day two (``_day_two``) as the point-of-sale system would write it: an UPDATE
    of 1% of the customers' rows, spend up and updated_at newer."""
    ids = pl.read_csv(csv, columns=["customer_id"], schema_overrides={"customer_id": pl.String})
    chosen = ids.get_column("customer_id").unique().sort().gather_every(int(1 / share))
    pg.load("pos_chosen", chosen.to_frame(), mode="create")
    pg.execute(
        f"UPDATE {POS_TABLE} SET lifetime_spend = round((lifetime_spend + 1200)::numeric, 2), "
        "updated_at = TIMESTAMPTZ '2026-11-02 00:00:00+00' "
        "WHERE customer_id IN (SELECT customer_id FROM pos_chosen)"
    )
    return chosen.len()


def run(argv: list[str]) -> None:
    from amp_braze.definitions import build_defs

    p = argparse.ArgumentParser(prog="python -m benchmarks e2e")
    p.add_argument("--profiles", type=int, default=1_000_000)
    p.add_argument("--rate", type=int, default=1000, help="requests/s (Braze: 1,000)")
    p.add_argument(
        "--pos-in-postgres",
        action="store_true",
        help="the changed feed (pos) as a PostgreSQL table read by what changed, not a CSV file",
    )
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    pg = None
    demo_sql = (
        Path(__file__).resolve().parent.parent / "amp_braze/demo/sql/braze_customer_attributes.sql"
    )
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        # The demo's query keyed by the feeds' shared customer_id (this scenario has no identity:
        # resolution; the demo's feeds share no key and use amp_id).
        sql = home / "profile.sql"
        sql.write_text(demo_sql.read_text().replace("p.amp_id", "p.customer_id"))
        # In a process of its own, so the peak memory below is the pipeline's.
        gen = [sys.executable, "-m", "amp_braze.cli", "generate", "--profiles", str(a.profiles),
               "--out", str(home / "data"), "--shared-key"]  # fmt: skip
        subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
        cmd = [sys.executable, "-m", "amp_braze.cli", "emulator", "--port", "0", "--api-key", "k",
               "--rate-limit", str(a.rate * 3), "--rate-window", "3"]  # fmt: skip
        emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        url = emu.stdout.readline().split()[-1]
        os.environ["BRAZE_API_KEY"] = "k"
        # The demo SQL reads engagement_summary; without Currents it is empty with its columns.
        (home / "p.sql").write_text(sql.read_text())
        cfg_path = home / "amp_braze.yaml"
        config = CONFIG.format(home=home, sql=home / "p.sql", url=url, limit=a.rate * 3)
        if a.pos_in_postgres:
            pg = pos_database(home / "data" / "pos_customers.csv")
            config = config.replace(
                f"path: {home}/data/pos_customers.csv", f"database: {pg.uri}, table: {POS_TABLE}"
            )
        cfg_path.write_text(config)
        defs = build_defs(load_config(cfg_path))
        # The same run recomputing everything: a copy of the storage taken before the change,
        # without the tables that let a build reuse the last one.
        full_cfg = home / "amp_braze_full.yaml"
        full_cfg.write_text(cfg_path.read_text().replace(f"{home}/storage", f"{home}/storage_full"))
        full_defs = build_defs(load_config(full_cfg))
        instance = dg.DagsterInstance.ephemeral()
        rss = RssSampler()
        try:
            results = []
            for label in ("first full sync", "incremental, 1% changed", RECOMPUTE):
                if label.startswith("incremental"):
                    shutil.copytree(home / "storage", home / "storage_steps")
                    shutil.copytree(home / "storage", home / "storage_job")
                    shutil.copytree(home / "storage", home / "storage_full")
                    tables = home / "storage_full" / "tables"
                    for gone in ("_rebuild", "sources", "customer_profiles.parquet",
                                 "braze_customer_attributes.parquet"):  # fmt: skip
                        target = tables / gone
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    if pg is None:
                        _day_two(home / "data" / "pos_customers.csv")
                    else:
                        pos_day_two(pg, home / "data" / "pos_customers.csv")
                run_defs = full_defs if label == RECOMPUTE else defs
                t = time.perf_counter()
                r = dg.materialize(
                    list(run_defs.assets),
                    resources=run_defs.resources,
                    instance=instance,
                    run_config=QUIET,
                )
                wall = time.perf_counter() - t
                if label.startswith("incremental"):
                    incremental_run = r.run_id
                md = {
                    e.asset_key.to_user_string(): e.materialization.metadata
                    for e in r.get_asset_materialization_events()
                }
                sync = {k: getattr(v, "value", v) for k, v in md["braze_sync"].items()}
                stats = instance.get_run_step_stats(r.run_id)
                steps = {st.step_key: (st.end_time or 0) - (st.start_time or 0) for st in stats}
                peaks = {st.step_key: rss.peak(st.start_time, st.end_time) for st in stats}
                results.append((label, wall, sync, steps, peaks))
            # The incremental run again, from the same storage, each step in its own process.
            steps_cfg = home / "amp_braze_steps.yaml"
            steps_cfg.write_text(
                cfg_path.read_text().replace(f"{home}/storage", f"{home}/storage_steps")
            )
            stats = sorted(
                instance.get_run_step_stats(incremental_run), key=lambda st: st.start_time
            )
            own = steps_in_own_processes(steps_cfg, [st.step_key for st in stats])
            # And once more as a schedule would run it.
            job_cfg = home / "amp_braze_job.yaml"
            job_cfg.write_text(
                cfg_path.read_text().replace(f"{home}/storage", f"{home}/storage_job")
            )
            job_wall = as_a_scheduled_run(job_cfg, home / "dagster_home")
        finally:
            if pg is not None:
                pg.stop()
            rss.stop()
            emu.terminate()
            emu.wait()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [Row("peak RSS of the pipeline process (every step of all three runs)", round(peak),
                unit="MB", goal="<= 8,000 MB in any step")]  # fmt: skip
    inc, full = results[1][1], results[2][1]
    rows.append(Row("incremental vs everything recomputed: wall", round(inc, 1), round(full, 1), "s",
                    "<= 60 s at 10M"))  # fmt: skip
    for label, wall, sync, steps, peaks in results:
        goal = "<= 60 s" if label.startswith("incremental") else ""
        # Each step's own time (steps run one after another here); the rest of the wall time is
        # Dagster's planning and bookkeeping between them.
        shares = sorted(steps.items(), key=lambda kv: -kv[1])
        rows += [
            Row(f"{label}: steps", ", ".join(f"{k} {v:.1f} s ({v / wall:.0%})" for k, v in shares)),
            Row(f"{label}: outside the steps", round(wall - sum(steps.values()), 1), unit="s"),
            Row(f"{label}: peak RSS during the heaviest step ({max(peaks, key=peaks.get)})",
                round(max(peaks.values())), unit="MB", goal="<= 8,000 MB"),
        ]  # fmt: skip
        rows += [
            Row(f"{label}: wall, feeds to braze_sync", round(wall, 1), "", "s", goal),
            Row(f"{label}: users / data points / requests",
                f"{sync['users_sent']:,} / {sync['data_points']:,} / {sync['requests']:,}"),
            Row(f"{label}: sending time and rate", f"{sync['duration_seconds']:.1f} s, {sync['requests_per_second']:.0f} req/s"),
        ]  # fmt: skip
    heaviest = max(own, key=lambda k: own[k][1])
    rows += [
        Row("incremental, each step in its own process: peak memory of the heaviest step "
            f"({heaviest})", round(own[heaviest][1]), unit="MB", goal="<= 8,000 MB"),
        Row("incremental, each step in its own process: peak memory (MB) and seconds",
            ", ".join(f"{k} {mb:,.0f} MB {sec:.1f} s" for k, (sec, mb) in own.items())),
        Row("incremental, as a scheduled run (dagster job execute: a process per step): wall",
            round(job_wall, 1), round(inc, 1), "s", "vs all steps in one process"),
    ]  # fmt: skip
    report(
        f"End to end, {a.profiles:,} profiles at R={a.rate}/s"
        + (" (pos feed in PostgreSQL)" if a.pos_in_postgres else ""),
        "e2e " + " ".join(argv),
        rows,
        notes="Real definitions through dagster.materialize (ephemeral instance), emulator in its own process "
        "(Braze-style 3 s windows), 3 feeds, 3 segments, the demo's profile SQL.",
        record=not a.no_record,
    )
