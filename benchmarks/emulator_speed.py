"""How many 75-object /users/track requests per second the emulator serves on one core.

The emulator runs in its own process (``amp-braze emulator``); the load comes from other processes,
each with a pool of threads on keep-alive urllib3 connections, so the client is not what is measured.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import orjson
import urllib3

from benchmarks.harness import Row, report


def body(kind: str, n: int = 75, offset: int = 0) -> bytes:
    if kind == "delta":  # what an incremental sync sends: one or two changed attributes per user
        objs = [
            {"external_id": f"user-{offset + i}", "amp_vip": i % 2 == 0, "points_balance": i}
            for i in range(n)
        ]
    else:  # a first sync: identifier plus 20 attributes
        objs = [
            {
                "external_id": f"user-{offset + i}",
                "email": f"user{offset + i}@example.com",
                "first_name": "Ann",
                "last_name": "Smith",
                "dob": "1980-12-21",
                "gender": "F",
                "country": "US",
                "home_city": "Boston",
                "email_subscribe": "opted_in",
                **{f"attr_{k}": k * 1.5 for k in range(12)},
            }
            for i in range(n)
        ]
    return orjson.dumps({"attributes": objs})


def _load(url: str, key: str, kind: str, seconds: float, threads: int, out: mp.Queue) -> None:
    pool = urllib3.HTTPConnectionPool(
        url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]), maxsize=threads
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [body(kind, offset=k * 75) for k in range(40)]
    deadline = time.time() + seconds
    counts = [0] * threads
    errors = [0] * threads

    def worker(t: int) -> None:
        i = t
        while time.time() < deadline:
            r = pool.urlopen("POST", "/users/track", body=bodies[i % len(bodies)], headers=headers)
            if r.status == 201:
                counts[t] += 1
            else:
                errors[t] += 1
            i += threads

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((sum(counts), sum(errors)))


@contextlib.contextmanager
def _emulator() -> Iterator[tuple[subprocess.Popen, str]]:
    """A fresh emulator in its own process, without a rate limit: (process, URL)."""
    cmd = [sys.executable, "-m", "amp_braze.cli", "emulator", "--port", "0", "--api-key", "k",
           "--rate-limit", "1000000000"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        yield server, server.stdout.readline().split()[-1]
    finally:
        server.terminate()
        server.wait()


def measure(kind: str, seconds: float, procs: int, threads: int) -> tuple[float, float, int]:
    """(requests/s, emulator CPU seconds per 1,000 requests, non-201 responses)."""
    with _emulator() as (server, url):
        before = _cpu(server.pid)
        q: mp.Queue = mp.Queue()
        ps = [
            mp.Process(target=_load, args=(url, "k", kind, seconds, threads, q))
            for _ in range(procs)
        ]
        start = time.perf_counter()
        for p in ps:
            p.start()
        results = [q.get() for _ in ps]
        for p in ps:
            p.join()
        wall = time.perf_counter() - start
        cpu = _cpu(server.pid) - before
    ok = sum(r[0] for r in results)
    return ok / wall, cpu / ok * 1000, sum(r[1] for r in results)


def memory_per_million(profiles: int, threads: int = 8) -> tuple[float, float, float]:
    """Fill a fresh emulator with ``profiles`` distinct 20-attribute profiles: (MB of resident
    memory per million profiles, requests/s while filling, total MB)."""
    with _emulator() as (server, url):
        before = _rss_mb(server.pid)
        host, port = url.split("//")[1].split(":")
        pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=threads)
        headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        offsets = iter(range(0, profiles, 75))
        lock = threading.Lock()
        failures = []

        def worker() -> None:
            while True:
                with lock:
                    off = next(offsets, None)
                if off is None:
                    return
                n = min(75, profiles - off)
                r = pool.urlopen("POST", "/users/track", body=body("full", n, off), headers=headers)
                if r.status != 201:
                    failures.append(r.status)

        start = time.perf_counter()
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - start
        stats = orjson.loads(pool.urlopen("GET", "/_emulator/stats").data)
        if failures or stats["users"] != profiles:
            raise RuntimeError(f"fill failed: {failures[:5]}, {stats['users']:,} users")
        total = _rss_mb(server.pid) - before
    return total / profiles * 1e6, -(-profiles // 75) / wall, total


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks emulator")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--procs", type=int, default=1, help="load-generating processes")
    p.add_argument("--threads", type=int, default=8, help="threads per load process")
    p.add_argument("--profiles", type=int, default=1_000_000, help="profiles for the memory figure")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    rows = []
    per_million, fill_rate, total = memory_per_million(a.profiles)
    rows += [
        Row(f"memory per million profiles, 20 attributes ({a.profiles:,} held)", round(per_million),
            unit="MB", goal="<= 400 (10M in <= 4 GB)"),
        Row("memory holding them all", round(total), unit="MB"),
        Row("req/s while filling (75 new profiles each)", round(fill_rate), unit="req/s"),
    ]  # fmt: skip
    for kind in ("delta", "full"):
        rps, cpu_per_k, errors = measure(kind, a.seconds, a.procs, a.threads)
        rows.append(
            Row(
                f"emulator req/s, 75 objects ({kind})",
                round(rps),
                unit="req/s",
                goal=">= 1,500 on one core",
            )
        )
        rows.append(Row(f"emulator CPU per 1,000 requests ({kind})", cpu_per_k, unit="CPU-s",
                        goal="<= 0.667 means one core serves 1,500/s"))  # fmt: skip
        if errors:
            rows.append(Row(f"non-201 responses ({kind})", errors))
    report(
        "Braze emulator throughput",
        "emulator " + " ".join(argv),
        rows,
        notes="Load: urllib3 keep-alive pool, "
        f"{a.procs} process(es) x {a.threads} threads, on the same 2-core machine as the emulator. "
        "'delta' objects carry 2 attributes, 'full' objects 20.",
        record=not a.no_record,
    )
