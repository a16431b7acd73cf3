"""Event streams under crashes and overlap, with real processes against the emulator: SIGKILL at
many moments of a stream's run (before its first request, right after a window is recorded as in
flight, mid-batch, while a ledger entry or version is written), each followed by normal runs;
answers lost after Braze applied them; two runs started at once. Every event_id ends in Braze
exactly once, except those the ledger lists as uncertain (at most once), and those are bounded by
the windows in flight when the crash came."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest

from amp_braze.events.ledger import UNCERTAIN, Ledger
from amp_braze.events.send import WINDOW_REQUESTS_PER_WORKER
from amp_braze.failpoints import DIR_ENV, ENV
from amp_braze_tests.events.support import EventBrand, orders

pytestmark = pytest.mark.slow

PER_REQUEST, CONCURRENCY = 10, 2
WINDOW = PER_REQUEST * CONCURRENCY * WINDOW_REQUESTS_PER_WORKER
RUN = """
import sys, dagster as dg
from amp_braze.config import load_config
from amp_braze.definitions import build_defs
defs = build_defs(load_config(sys.argv[1]))
defs.resolve_job_def("orders_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
"""
TRIALS = [  # (failpoint, nth time reached) or ("requests", k): after k requests
    ("ledger.intent", 1),
    ("requests", 3),
    ("ledger.accepted", 1),
    ("storage.create_staged", 3),
    ("requests", 12),
    ("ledger.intent", 3),
    ("ledger.settled", 1),
    ("requests", 25),
    ("ledger.accepted", 4),
    ("requests", 7),
    ("storage.create_staged", 9),
    ("requests", 40),
]


def _brand(tmp_path, emulator, monkeypatch, resend: bool = False) -> EventBrand:
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = EventBrand(tmp_path, emulator.url)
    text = brand.path.read_text().replace(
        "  concurrency: 2\n",
        f"  concurrency: {CONCURRENCY}\n  objects_per_request: {PER_REQUEST}\n",
    )
    if resend:
        text = text.replace("type: ecommerce.order_placed\n",
                            "type: ecommerce.order_placed\n    resend_uncertain: true\n")  # fmt: skip
    brand.path.write_text(text)
    return EventBrand.reload(brand)


def _counts(emulator) -> collections.Counter:
    return collections.Counter(
        o["properties"]["order_id"] for u in emulator.users().values()
        for o in u.get("event_objects", [])
    )  # fmt: skip


def _uncertain(brand: EventBrand) -> set[str]:
    held = Ledger(brand.storage, "events/orders").current().frame.collect()
    return set(held.filter(pl.col("status") == UNCERTAIN)["event_id"].to_list())


def _kill_at(brand, emulator, where, nth, flags) -> str:
    for f in flags.glob("*"):
        f.unlink()
    env = {k: v for k, v in os.environ.items() if k not in (ENV, DIR_ENV)}
    if where != "requests":
        env |= {ENV: f"{where}:{nth}", DIR_ENV: str(flags)}
    start = emulator.stats()["track_requests"]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(brand.path)], cwd=brand.folder, env=env,
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        if where == "requests" and emulator.stats()["track_requests"] - start >= nth:
            break
        if where != "requests" and (flags / where).exists():
            break
        if proc.poll() is not None:
            return "finished before the kill"
        assert time.monotonic() < deadline, f"never reached {where}:{nth}"
        time.sleep(0.003)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return "killed"


def test_streams_killed_at_any_moment_send_each_event_at_most_once(tmp_path, emulator, monkeypatch):
    brand = _brand(tmp_path / "brand", emulator, monkeypatch)
    emulator.faults(latency_ms=15)
    flags = tmp_path / "flags"
    flags.mkdir()
    rows, outcomes, total = [], [], 0
    for trial, (where, nth) in enumerate(TRIALS):
        total += 400
        brand.write_orders(orders(total))  # 400 new orders each trial, the old ones still there
        before = _uncertain(brand)
        outcomes.append(_kill_at(brand, emulator, where, nth, flags))
        assert brand.run()["__success"]  # the next normal run
        new_doubt = _uncertain(brand) - before
        rows.append((trial, where, nth, outcomes[-1], len(new_doubt)))
        # What a crash leaves in doubt is the windows that were in flight, no more.
        assert len(new_doubt) <= 2 * WINDOW, rows[-1]
    emulator.faults(latency_ms=0)
    m = brand.run()["orders/braze_events"]
    assert m["events_sent"] == 0
    counts = _counts(emulator)
    doubt = _uncertain(brand)
    everything = {f"o-{i}" for i in range(total)}
    print("\nkill trials (trial, where, nth, outcome, ids left uncertain):")
    for r in rows:
        print("  ", r)
    assert max(counts.values()) == 1  # never twice
    assert everything - set(counts) <= doubt  # missing only where in doubt
    assert set(counts) <= everything
    assert m["uncertain_events"] == len(doubt)
    assert sum(o == "killed" for o in outcomes) >= 10


def test_answers_lost_after_braze_applied_them_are_listed_not_resent(
    tmp_path, emulator, monkeypatch
):
    brand = _brand(tmp_path / "brand", emulator, monkeypatch)
    brand.write_orders(orders(1200))
    emulator.faults(drop_after_apply_rate=0.1, seed=7)
    first = brand.run()
    emulator.faults(drop_after_apply_rate=0.0)
    m = first["orders/braze_events"] if "orders/braze_events" in first else None
    doubt = _uncertain(brand)
    assert doubt and len(doubt) % PER_REQUEST == 0  # whole requests without an answer
    again = brand.run()["orders/braze_events"]
    assert again["events_sent"] == 0 and again["uncertain_events"] == len(doubt)
    listed = {r["event_id"] for r in again["uncertain_ids"]}
    assert listed <= doubt and len(listed) == min(50, len(doubt))
    counts = _counts(emulator)
    assert max(counts.values()) == 1 and set(counts) | doubt == {f"o-{i}" for i in range(1200)}
    assert m is None or m["uncertain_events"] == len(doubt)


def test_resend_uncertain_sends_them_again(tmp_path, emulator, monkeypatch):
    brand = _brand(tmp_path / "brand", emulator, monkeypatch, resend=True)
    brand.write_orders(orders(600))
    emulator.faults(drop_after_apply_rate=0.2, seed=3)
    brand.run()
    emulator.faults(drop_after_apply_rate=0.0)
    doubt = _uncertain(brand)
    assert doubt
    m = brand.run()["orders/braze_events"]
    assert m["resent_uncertain"] == len(doubt) and m["uncertain_events"] == 0
    counts = _counts(emulator)
    assert set(counts) == {f"o-{i}" for i in range(600)}  # at least once
    assert {k for k, v in counts.items() if v > 1} <= doubt


def test_two_runs_started_at_once_send_each_event_once(tmp_path, emulator, monkeypatch):
    brand = _brand(tmp_path / "brand", emulator, monkeypatch)
    emulator.faults(latency_ms=5)
    for round_ in range(3):
        brand.write_orders(orders(300 * (round_ + 1)))
        results: list = []

        def one(out: list = results) -> None:
            out.append(brand.run())

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert all(r["__success"] for r in results)
        sent = sorted(r["orders/braze_events"]["events_sent"] for r in results)
        assert sent == [0, 300], sent
    counts = _counts(emulator)
    assert len(counts) == 900 and max(counts.values()) == 1
