"""Scenario 2, sync throughput: amp_braze's client against the emulator with a rate limit R.

Sustained requests/s as a share of R, 429s received, and the client's own CPU per 1,000 requests of
75 objects (sending, and separately encoding them from a plan). Baseline: one ``requests.post`` at
a time, the way a simple script sends. The emulator runs in its own process, so its CPU is not
counted as the client's."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import polars as pl
import requests as requests_lib

from amp_braze.braze.client import BrazeClient
from amp_braze.braze.identifiers import ID
from amp_braze.braze.payload import object_json
from amp_braze.braze.payload import requests as make_requests
from amp_braze.braze.plan_columns import NEW, AttrSpec, flag
from benchmarks.harness import Row, report


def make_plan(n: int) -> pl.DataFrame:
    return pl.select(i=pl.int_range(n)).select(
        pl.format("user-{}", pl.col("i")).alias("external_id"),
        pl.format("user-{}", pl.col("i")).alias(ID),
        pl.lit(False).alias(NEW),
        (pl.col("i") % 1000).alias("points_balance"),
        pl.lit(True).alias(flag("points_balance")),
        (pl.col("i") % 2 == 0).alias("amp_vip"),
        pl.lit(True).alias(flag("amp_vip")),
    )


ATTRS = [AttrSpec("points_balance"), AttrSpec("amp_vip")]


def encode(plan: pl.DataFrame) -> tuple[list, float]:
    t = time.process_time()
    objs = object_json(plan, ATTRS, "external_id")
    reqs = list(make_requests(objs, plan.get_column(ID)))
    return reqs, time.process_time() - t


def start_emulator(rate: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "amp_braze.cli", "emulator", "--port", "0", "--api-key", "k",
           "--rate-limit", str(rate * 3), "--rate-window", "3"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().split()[-1]


def run_client(url: str, reqs: list, rate: int, concurrency: int) -> dict:
    client = BrazeClient(url, "k", rate_per_second=rate, concurrency=concurrency)
    accepted = 0

    def on_result(r) -> None:
        nonlocal accepted
        accepted += len(r.accepted)

    cpu0, t0 = time.process_time(), time.perf_counter()
    stats = client.send(reqs, on_result)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.close()
    return {"rps": stats.requests / wall, "429s": stats.rate_limited, "cpu_per_k": cpu / stats.requests * 1000,
            "accepted": accepted, "wall": wall}  # fmt: skip


def run_baseline(url: str, reqs: list, seconds: float) -> tuple[float, int]:
    """(accepted requests/s, 429s) for one requests.post at a time, no pacing."""
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    t0, ok, limited = time.perf_counter(), 0, 0
    for r in reqs:
        status = requests_lib.post(
            f"{url}/users/track", data=r.body, headers=headers, timeout=30
        ).status_code
        ok += status == 201
        limited += status == 429
        if time.perf_counter() - t0 > seconds:
            break
    return ok / (time.perf_counter() - t0), limited


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks sync")
    p.add_argument("--rates", default="300,600", help="rate limits R to test, requests/s")
    p.add_argument("--seconds", type=float, default=10.0, help="sending time per rate")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    rows = []
    for rate in (int(r) for r in a.rates.split(",")):
        n_req = int(rate * a.seconds)
        plan = make_plan(n_req * 75)
        reqs, enc_cpu = encode(plan)
        proc, url = start_emulator(rate)
        try:
            amp = run_client(url, reqs, rate, a.concurrency)
            base, base_429 = run_baseline(url, reqs, min(6.0, a.seconds))
        finally:
            proc.terminate()
            proc.wait()
        assert amp["accepted"] == len(reqs) * 75
        rows += [
            Row(
                f"R={rate}: sustained requests/s (accepted)",
                round(amp["rps"], 1),
                round(base, 1),
                "req/s",
            ),
            Row(
                f"R={rate}: share of R",
                f"{amp['rps'] / rate:.1%}",
                f"{base / rate:.1%}",
                "",
                ">= 90%",
            ),
            Row(f"R={rate}: 429s received", amp["429s"], base_429, ""),
            Row(
                f"R={rate}: client CPU per 1,000 requests, sending",
                round(amp["cpu_per_k"], 3),
                "",
                "CPU-s",
                "<= 0.5",
            ),
            Row(
                f"R={rate}: client CPU per 1,000 requests, encoding",
                round(enc_cpu / len(reqs) * 1000, 3),
                "",
                "CPU-s",
            ),
        ]
    report(
        "Sync throughput against the emulator",
        "sync " + " ".join(argv),
        rows,
        notes=f"{a.concurrency} workers, 75 objects per request (2 changed attributes each), Braze-style fixed "
        "windows of 3 s on the emulator (limit 3R per window). Baseline: one requests.post at a time "
        f"on the same emulator. Machine: {os.cpu_count()} cores shared by client and emulator.",
        record=not a.no_record,
    )
