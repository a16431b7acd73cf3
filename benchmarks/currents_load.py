"""Scenario 3, Currents loading: N events across F Avro files of mixed event types. Events per second
for the polars reader, for fastavro, and for amp_braze's whole hour load (read, deduplicate, split by
type, normalise), all from the same bytes in memory."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import time

import fastavro
import polars as pl

from amp_braze.currents import fixtures
from amp_braze.currents.keys import CurrentsFile
from amp_braze.currents.load import load_hour
from benchmarks.harness import Row, report

TYPES = ["users.messages.email.Send", "users.messages.email.Delivery", "users.messages.email.Open",
         "users.messages.email.Click", "users.behaviors.Purchase", "users.behaviors.app.SessionStart",
         "users.behaviors.CustomEvent", "users.messages.pushnotification.Open"]  # fmt: skip


def make_files(events: int, files: int, codec: str) -> dict[str, bytes]:
    rng = random.Random(1)
    per = events // files
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    out = {}
    for f in range(files):
        et = TYPES[f % len(TYPES)]
        records = [
            fixtures.event(
                et, f"user-{rng.randrange(200_000)}", start + dt.timedelta(seconds=i), rng
            )
            for i in range(per)
        ]
        out[fixtures.key_for("p", et, "2026-11-01-00", f)] = fixtures.avro_bytes(
            et, records, codec=codec
        )
    return out


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks currents")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--codec", default="deflate", choices=["null", "deflate"])
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    blobs = make_files(a.events, a.files, a.codec)
    n = sum(1 for _ in range(a.events // a.files * a.files))

    t = time.perf_counter()
    frames = [pl.read_avro(io.BytesIO(b)) for b in blobs.values()]
    polars_s = time.perf_counter() - t
    assert sum(f.height for f in frames) == n

    t = time.perf_counter()
    frames = [pl.from_dicts(list(fastavro.reader(io.BytesIO(b)))) for b in blobs.values()]
    fastavro_s = time.perf_counter() - t
    assert sum(f.height for f in frames) == n
    del frames

    files = [
        CurrentsFile(k, k.split("event_type=")[1].split("/")[0], "2026-11-01-00") for k in blobs
    ]
    t = time.perf_counter()
    load = load_hour(files, blobs.__getitem__)
    load_s = time.perf_counter() - t
    assert load.events.height == n and load.reader == {"polars": len(files)}
    rows = [
        Row(
            "polars read_avro: events/s",
            round(n / polars_s),
            round(n / fastavro_s),
            "events/s",
            ">= 500,000 (path used)",
        ),
        Row(
            "amp_braze hour load (polars, dedupe, split, normalise): events/s",
            round(n / load_s),
            "",
            "events/s",
            ">= 500,000",
        ),
        Row(
            "wall: polars / fastavro / amp_braze load",
            f"{polars_s:.2f} / {fastavro_s:.2f} / {load_s:.2f}",
            "",
            "s",
        ),
    ]
    report(
        f"Currents loading, {n:,} events in {a.files} files ({a.codec})",
        "currents " + " ".join(argv),
        rows,
        notes="Baseline column: fastavro.reader -> polars.from_dicts on the same bytes. "
        f"{len(TYPES)} event types, files of {n // a.files:,} events, read from memory (no S3 in the timing).",
        record=not a.no_record,
    )
