"""Identity at the sizes a brand starts with: training completes and links above the floor.

For each size (people) and seed: the held-out mix of ``identity.synthetic`` (pairwise F1 against
the known people; goal >= 0.99, as the identity benchmark holds at 50k) and the demo's own brand
(``profiles.sample_data``, the data ``amp-braze demo`` runs on). Each row gives the lowest and the
median F1 over the seeds, how many trainings completed, and the seconds per resolution.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from amp_braze.config import BUNDLED_CONFIG, load_config
from amp_braze.identity.resolve import resolve
from amp_braze.identity.synthetic import CONFIG, HELD_OUT, generate
from amp_braze.profiles.database_feed import read_source
from amp_braze.profiles.sample_data import customer_of_record
from amp_braze.profiles.sample_data import generate as demo_brand
from benchmarks.harness import Row, report
from benchmarks.identity import EMPTY, _feeds, quality

SIZES = (1_000, 3_000, 5_000, 10_000, 20_000, 50_000)


def _held_out(people: int, seed: int) -> float:
    syn = generate(people, seed, HELD_OUT)
    return quality(resolve(_feeds(syn.feeds), CONFIG, EMPTY, 1).table, syn.truth)["f1"]


def _demo(people: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as home:
        demo_brand(
            Path(home) / ".amp_braze/demo_data", customers=people, seed=seed, shared_key=False
        )
        os.environ["AMP_BRAZE_HOME"] = home
        cfg = load_config(BUNDLED_CONFIG)
        assert cfg.identity is not None
        feeds = {n: (s, read_source(s).lazy()) for n, s in cfg.profile_sources.items()}
        table = resolve(feeds, cfg.identity, EMPTY, 1).table
    return quality(
        table, table.select("source", "record_id", customer_of_record().alias("person"))
    )["f1"]


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks identity-sweep")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    for label, fn, goal in (("held-out mix", _held_out, ">= 0.99"), ("demo brand", _demo, "")):
        for people in sizes:
            f1s, seconds, failed = [], [], []
            for seed in seeds:
                t = time.perf_counter()
                try:
                    f1s.append(fn(people, seed))
                except Exception as e:  # a benchmark reports a failed training, it does not stop
                    failed.append(f"seed {seed}: {type(e).__name__}")
                seconds.append(time.perf_counter() - t)
            rows.append(
                Row(
                    f"{label}, {people:,} people: F1 lowest / median "
                    f"({len(f1s)} of {len(seeds)} trained{'; ' + ', '.join(failed) if failed else ''})",
                    f"{min(f1s):.4f} / {statistics.median(f1s):.4f}" if f1s else "none",
                    unit=f"{statistics.median(seconds):.1f} s each",
                    goal=goal,
                )
            )
    report("identity-sweep", " ".join(argv) or "(defaults)", rows, record=not a.no_record)
