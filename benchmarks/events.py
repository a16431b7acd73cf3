"""Event streams: events per second through the client against the emulator (against the rate
limit R times 75 objects), and the ledger's cost per run when it holds many sent ids and a run
brings a few new ones: the check of the query's rows against the ledger, the validation and
encoding of those rows, and the commit of the new ids."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.client import BrazeClient
from amp_braze.braze.payload import requests as make_requests
from amp_braze.config import BrazeConfig
from amp_braze.config.events import EventStream
from amp_braze.events import ledger as lg
from amp_braze.events import shape
from amp_braze.events.prepare import LedgerIndex, prepare
from amp_braze.events.types import OBJ, SENT_ID
from amp_braze.storage import Storage
from benchmarks.harness import Row, peak_rss_mb, report
from benchmarks.sync_throughput import start_emulator

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rows(n: int, start: int = 0) -> pl.DataFrame:
    """A custom event stream's query result: n visits of n/4 customers, two properties."""
    i = pl.int_range(start, start + n, eager=True)
    return pl.select(
        ("user-" + (i // 4).cast(pl.String)).alias("external_id"),
        ("visit-" + i.cast(pl.String)).alias("event_id"),
        (pl.lit(datetime(2026, 11, 1, tzinfo=UTC)) + pl.duration(seconds=i % 86400)).alias("time"),
        ("store-" + (i % 300).cast(pl.String)).alias("store"),
        (i % 5).alias("basket_items"),
    )


def _stream() -> EventStream:
    from pathlib import Path

    return EventStream.model_construct(stream="visits", type="custom", name="store_visit",
                                       sql=Path("visits.sql"), resend_uncertain=False)  # fmt: skip


def _dest() -> BrazeConfig:
    return BrazeConfig.model_construct(identifier="external_id", update_existing_only=False)


def throughput(rate: int, seconds: float, concurrency: int) -> dict:
    n = int(rate * seconds) * 75
    ready = prepare(rows(n), _stream(), _dest(), NOW).ready
    reqs = list(make_requests(ready.get_column(OBJ), ready.get_column(SENT_ID), 75, array="events"))
    proc, url = start_emulator(rate)
    try:
        client = BrazeClient(url, "k", rate_per_second=rate, concurrency=concurrency)
        accepted = 0

        def on_result(r) -> None:
            nonlocal accepted
            accepted += len(r.accepted)

        t0 = time.perf_counter()
        stats = client.send(reqs, on_result)
        wall = time.perf_counter() - t0
        client.close()
    finally:
        proc.terminate()
        proc.wait()
    assert accepted == n, (accepted, n)
    return {
        "events_per_s": accepted / wall,
        "rps": stats.requests / wall,
        "429s": stats.rate_limited,
    }


def subscription_rate(users: int, latency_ms: float, concurrency: int) -> dict:
    """Subscription-group states sent by the sync's sender (``sync.subscriptions.send``) for
    ``users`` changed users of one group, against the emulator answering after ``latency_ms``."""
    import requests as http

    from amp_braze.braze.identifiers import ID
    from amp_braze.braze.plan_columns import flag, subscription_column
    from amp_braze.sync import subscriptions

    col = subscription_column("5b1e7c9a-0d2f-4c3e-9a61-6e2d8b7f4a10")
    table = pl.select(
        ("user-" + pl.int_range(users).cast(pl.String)).alias(ID),
        pl.lit("subscribed").alias(col),
        pl.lit(True).alias(flag(col)),
    )
    proc, url = start_emulator(600)
    try:
        http.post(f"{url}/_emulator/faults", json={"latency_ms": latency_ms}, timeout=10)
        client = BrazeClient(url, "k", concurrency=concurrency)
        report = subscriptions.SubscriptionReport()
        t0 = time.perf_counter()
        subscriptions.send(table, [col], client, 5_000, lambda _: None, lambda _: None, report)
        wall = time.perf_counter() - t0
        client.close()
    finally:
        proc.terminate()
        proc.wait()
    assert sum(report.accepted[next(iter(report.accepted))].values()) == users
    return {"rps": report.requests / wall, "requests": report.requests}


def ledger_cost(sent: int, new: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Storage(tmp)
        ledger = lg.Ledger(store, "events/visits")
        old = prepare(rows(sent), _stream(), _dest(), NOW).ready
        ledger.write_intent(old.get_column(SENT_ID), old.get_column("__hash"))
        ledger.write_accepted(old.get_column(SENT_ID).to_list())
        ledger.commit()
        del old
        query = rows(sent + new)
        t0 = time.perf_counter()
        keyed = shape.keyed(query)
        t1 = time.perf_counter()
        view = ledger.current()
        status = LedgerIndex(view).statuses(keyed.get_column("event_id"))
        t2 = time.perf_counter()
        assert status.get_column("__sent").null_count() == new
        prepared = prepare(query, _stream(), _dest(), NOW, ledger.current())
        t3 = time.perf_counter()
        assert prepared.new == new and prepared.already_sent == sent
        go = prepared.ready
        ledger.write_intent(go.get_column(SENT_ID), go.get_column("__hash"))
        ledger.write_accepted(go.get_column(SENT_ID).to_list())
        ledger.commit()
        t4 = time.perf_counter()
        assert ledger.current().frame.select(pl.len()).collect().item() == sent + new
    return {"key": t1 - t0, "check": t2 - t1, "prepare": t3 - t2, "commit": t4 - t3}


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks events")
    p.add_argument("--rate", type=int, default=600, help="rate limit R, requests/s")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sent", type=int, default=10_000_000, help="ids the ledger holds")
    p.add_argument("--new", type=int, default=100_000, help="new rows in the run")
    p.add_argument("--subscription-users", type=int, default=50_000)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    t = throughput(a.rate, a.seconds, a.concurrency)
    c = ledger_cost(a.sent, a.new)
    sub = subscription_rate(a.subscription_users, 50.0, a.concurrency)
    sub_limit = er.SUBSCRIPTION_RATE_LIMIT / er.SUBSCRIPTION_RATE_WINDOW_SECONDS
    goal = a.rate * 75
    out = [
        Row(f"R={a.rate}: events/s sent (accepted)", round(t["events_per_s"]), goal, "events/s",
            ">= 0.90x"),
        Row(f"R={a.rate}: 429s received", t["429s"], "", ""),
        Row(f"ledger of {a.sent:,}, {a.new:,} new: check against the ledger", round(c["check"], 3),
            "", "s", "<= 2 s"),
        Row(f"ledger of {a.sent:,}: key and hash {a.sent + a.new:,} rows", round(c["key"], 3),
            "", "s"),
        Row(f"ledger of {a.sent:,}: the whole preparation (key, check, validate and encode the "
            "new)", round(c["prepare"], 3), "", "s"),
        Row(f"ledger of {a.sent:,}: commit {a.new:,} new ids", round(c["commit"], 3), "", "s"),
        Row(f"subscription states: {a.subscription_users:,} users, requests/s at 50 ms a request",
            round(sub["rps"], 1), round(sub_limit, 1), "req/s", ">= 0.90x"),
        Row("peak RSS", round(peak_rss_mb()), "", "MB"),
    ]  # fmt: skip
    report(
        "Event streams: throughput and the ledger's cost",
        "events " + " ".join(argv),
        out,
        notes="Subscription states: one group, 50 ids a request, Braze's limit of 5,000 requests a "
        "minute as the baseline. "
        f"Custom events with two properties, 75 per request, {a.concurrency} workers; the "
        "emulator in its own process with Braze-style windows of 3 s (limit 3R). Baseline of the "
        f"first row: R x 75. Machine: {os.cpu_count()} cores shared by client and emulator.",
        record=not a.no_record,
    )
