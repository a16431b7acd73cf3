"""Entry point: ``python -m benchmarks <scenario> [options]``; ``python -m benchmarks --help`` lists them."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "emulator": ("benchmarks.emulator_speed", "Braze emulator requests/s for 75-object requests"),
    "sync": (
        "benchmarks.sync_throughput",
        "client throughput against the emulator at R=300,600 req/s",
    ),
    "currents": (
        "benchmarks.currents_load",
        "Currents Avro loading, polars against fastavro (1M events)",
    ),
    "e2e": (
        "benchmarks.end_to_end",
        "1M profiles through Dagster: full sync, then 1% changed (R=1000)",
    ),
    "delta": (
        "benchmarks.delta",
        "delta planning against a naive dict diff (1M; --profiles 10000000)",
    ),
    "identity": (
        "benchmarks.identity",
        "identity resolution: F1 on held-out data, 1M records end to end, 1% new records",
    ),
    "identity-chunks": (
        "benchmarks.identity_chunks",
        "identity scoring in N x N pieces against one predict(): same links, peak memory",
    ),
    "identity-sweep": (
        "benchmarks.identity_sweep",
        "identity F1 at 1k..50k people, three seeds, held-out mix and the demo's brand",
    ),
    "demo": (
        "benchmarks.demo_time",
        "README's first command timed: amp-braze demo at its default size, install included",
    ),
    "summary": (
        "benchmarks.summary",
        "engagement_summary over a year of Currents hours: roll-up against full recompute",
    ),
    "database": (
        "benchmarks.database",
        "a 10M-row PostgreSQL feed: full read against psql \\copy, 1% changed read incrementally",
    ),
    "events": (
        "benchmarks.events",
        "event streams: events/s against the emulator, the ledger's cost at 10M sent ids",
    ),
    "shards": (
        "benchmarks.shards",
        "the pipeline in 1, 4 and 16 shards (1M): the same Braze, data points; wall, peak memory",
    ),
    "shard-plans": (
        "benchmarks.shard_plans",
        "delta plans of a brand split in 16 shards against the whole (--profiles 100000000)",
    ),
    "phones": (
        "benchmarks.phones",
        "the Braze phone rule, libphonenumber against the old regex rule (10M values, 1M distinct)",
    ),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help") or sys.argv[1] not in SCENARIOS:
        print("usage: python -m benchmarks <scenario> [options]\n\nscenarios:")
        for name, (_, text) in SCENARIOS.items():
            print(f"  {name:<12} {text}")
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    module = importlib.import_module(SCENARIOS[sys.argv[1]][0])
    module.run(sys.argv[2:])


if __name__ == "__main__":
    main()
