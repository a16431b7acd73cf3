"""engagement_summary over a long Currents history: the incremental roll-up against recomputing the
summary from every loaded hour (what the asset did before), on the same hour files."""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time

import numpy as np
import polars as pl

from amp_braze.currents.hours import EVENTS_DIR, current_hours, write_load
from amp_braze.currents.keys import hour_of
from amp_braze.currents.load import COMMON
from amp_braze.currents.rollup import SummaryRun, update_summary
from amp_braze.currents.summary import COUNTS, LAST, PURCHASE, SESSION, summarize
from amp_braze.storage import Storage
from benchmarks.harness import Row, report

TYPES = sorted({t for ts in COUNTS.values() for t in ts} | set(LAST.values()) | {PURCHASE, SESSION})


def write_history(storage: Storage, end: dt.datetime, days: int, per_hour: int, users: int) -> int:
    """``days`` of loaded hours ending at ``end``, ``per_hour`` events each, as the load writes them."""
    rng = np.random.default_rng(7)
    hours = days * 24
    n = hours * per_hour
    start = end - dt.timedelta(hours=hours)
    seconds = rng.integers(0, hours * 3600, n).astype("int64")
    df = pl.DataFrame(
        {
            "event_type": pl.Series(np.array(TYPES)[rng.integers(0, len(TYPES), n)]),
            "id": pl.int_range(n, eager=True).cast(pl.String),
            "user": rng.integers(0, users, n),
            "time": pl.Series(seconds) * 1_000_000 + int(start.timestamp() * 1_000_000),
            "price": rng.random(n) * 100,
        }
    ).with_columns(
        pl.format("u{}", "user").alias("external_user_id"),
        pl.format("braze-{}", "user").alias("user_id"),
        pl.col("time").cast(pl.Datetime("us", "UTC")),
        (pl.col("time").cast(pl.Int64) // 3_600_000_000).alias("__hour"),
    )
    df = df.select(
        [
            pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
            for c, t in COMMON.items()
        ]
        + [pl.col("__hour")]
    )
    for (h,), part in df.partition_by("__hour", as_dict=True).items():
        q = dt.datetime.fromtimestamp(h * 3600, dt.UTC)
        write_load(storage, hour_of(q), part.drop("__hour").sort("time"))
    return n


def _both(storage: Storage, as_of: dt.datetime) -> tuple[pl.DataFrame, float, SummaryRun, float]:
    """(full recompute, its seconds, the asset's incremental run, its seconds) at ``as_of``."""
    names = sorted(h.events for h in current_hours(storage).values())
    t = time.perf_counter()
    full = summarize(storage.scan_parquet(names), as_of)
    full_s = time.perf_counter() - t
    t = time.perf_counter()
    run = update_summary(storage, EVENTS_DIR, as_of)
    return full, full_s, run, time.perf_counter() - t


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks summary")
    p.add_argument("--days", type=int, default=365, help="days of loaded Currents hours")
    p.add_argument("--events-per-hour", type=int, default=1000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    end = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        total = write_history(storage, end, a.days, a.events_per_hour, a.users)
        full, full_s, first, first_s = _both(storage, end)
        assert first.table.equals(full)
        # The next hour arrives; the summary is asked for again.
        last = max(h.events for h in current_hours(storage).values())
        extra = pl.read_parquet(storage.uri(last)).with_columns(
            (pl.col("time") + dt.timedelta(hours=1)), pl.col("id") + "-next"
        )
        write_load(storage, hour_of(end), extra)
        full_later, full_later_s, inc, inc_s = _both(storage, end + dt.timedelta(hours=1))
        assert inc.rollup == "incremental" and inc.hours_folded == 1, inc
        assert inc.table.equals(full_later)
    rows = [
        Row("summary after one new hour: seconds", round(inc_s, 3), round(full_later_s, 3), "s",
            "incremental vs full recompute"),
        Row("summary after one new hour: events read", inc.events_read, total + extra.height, "events"),
        Row("hours read for the windows / loaded", f"{inc.hours_read_for_windows:,} / {inc.hours_loaded:,}"),
        Row("first run (roll-up built from every hour)", round(first_s, 3), round(full_s, 3), "s"),
        Row("users in the summary", inc.table.height),
    ]  # fmt: skip
    report(
        f"engagement_summary over {a.days} days of Currents ({total:,} events)",
        "summary " + " ".join(argv),
        rows,
        notes=f"{a.events_per_hour:,} events per queue hour over {a.users:,} users, {len(TYPES)} event "
        "types, one _events.parquet per hour as braze_currents_events writes it, local disk. Baseline: "
        "the summary computed from every loaded hour (what the asset did before the roll-up). Both "
        "results are checked equal.",
        record=not a.no_record,
    )
