"""Planning a brand split in shards against planning it whole: the delta benchmark's brand (20
attributes and 3 segment flags per user, 1% of users with one changed attribute) written once
whole and once split in N shards, each shard's attributes, memberships and sync state holding the
users the shard rule puts there (``amp_braze.shards``), written as the delta benchmark writes
them. Every plan runs in a fresh process, as a Dagster step does; the shards one after another
on this machine (their sum is what one worker would take; N workers take about the longest).
The shards' plans must add up to the whole plan's users, attributes and data points."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import polars as pl

from amp_braze.shards import shard_names, shard_of
from amp_braze.storage import Storage
from amp_braze.sync.run import make_plan
from benchmarks.delta import (
    ALIGNED,
    STREAM_ABOVE,
    _config,
    _plan_in_fresh_process,
    _write_brand,
    _write_brand_streaming,
    make_tables,
    write_tables,
)
from benchmarks.harness import Row, peak_rss_mb, report

BATCH = 10_000_000  # ids hashed at a time


def shard_rows(n: int, shards: int) -> list[pl.Series]:
    """Per shard, the row numbers of the brand's users it holds (their ids as make_tables
    names them)."""
    out: list[list[pl.Series]] = [[] for _ in range(shards)]
    for start in range(0, n, BATCH):
        i = pl.int_range(start, min(start + BATCH, n), eager=True, dtype=pl.Int64)
        ids = pl.select(pl.format("user-{}", i.cast(pl.String).str.zfill(9))).to_series()
        which = shard_of(ids, shards)
        for s, rows in pl.DataFrame({"i": i, "s": which}).group_by("s"):
            out[int(s[0])].append(rows.get_column("i"))
    return [pl.concat(parts).sort() for parts in out]


def _write_shard(n: int, root: str, shards: int, shard: str, rows: pl.Series) -> int:
    wanted, state, changed = make_tables(n, rows=rows)
    storage = Storage(_config(root, ALIGNED).storage).shard(shard, shards)
    write_tables(storage, root, wanted, state, (ALIGNED,))
    return changed


def _shard_plan(root: str, shard: str, shards: int) -> tuple[float, dict, float]:
    """(seconds, stats, peak RSS MB) of one shard's make_plan in this (fresh) process."""
    cfg = _config(root, ALIGNED)
    t = time.perf_counter()
    plan = make_plan(cfg, Storage(cfg.storage).shard(shard, shards), cfg.syncs["braze"])
    return time.perf_counter() - t, plan.stats, peak_rss_mb()


def _drop_caches() -> bool:
    """Empty the page cache (root only), so that the next plan reads its files from disk."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        return False
    return True


def _cold_and_warm(fn, *args) -> tuple[tuple | None, tuple]:
    """A plan with the page cache emptied first (None when this user cannot), then again with
    its files just read."""
    cold = _fresh(fn, *args) if _drop_caches() else None
    return cold, _fresh(fn, *args)


def _fresh(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


SUMMED = ("users_changed", "attributes_changed", "data_points", "state_users")


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks shard-plans")
    p.add_argument("--profiles", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    n, k = a.profiles, a.shards
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        if n > STREAM_ABOVE:
            changed = _fresh(_write_brand_streaming, n, root, (ALIGNED,))
        else:
            changed = _fresh(_write_brand, n, root)
        whole_write = time.perf_counter() - t
        whole_cold, whole = _cold_and_warm(_plan_in_fresh_process, root, ALIGNED)
        t = time.perf_counter()
        rows = shard_rows(n, k)
        changed_split = sum(
            _fresh(_write_shard, n, root, k, name, r)
            for name, r in zip(shard_names(k), rows, strict=True)
        )
        split_write = time.perf_counter() - t
        del rows
        both = {name: _cold_and_warm(_shard_plan, root, name, k) for name in shard_names(k)}
    plans = {name: warm for name, (_, warm) in both.items()}
    cold = {name: c for name, (c, _) in both.items() if c is not None}
    assert changed_split == changed == whole[1]["users_changed"], (changed_split, whole[1])
    totals = {f: sum(int(s[1].get(f, 0)) for s in plans.values()) for f in SUMMED}
    same = all(totals[f] == int(whole[1].get(f, 0)) for f in SUMMED)
    if not same:
        raise SystemExit(f"the shards' plans add up to {totals}, the whole plan {whole[1]}")
    seconds = sum(s[0] for s in plans.values())
    heaviest = max(plans, key=lambda s: plans[s][2])
    slowest = max(plans, key=lambda s: plans[s][0])
    rows_out = [
        Row(f"plans of {k} shards add up to the whole plan (users changed / attributes / data "
            "points / users in state)", " / ".join(f"{totals[f]:,}" for f in SUMMED), "",
            "", "equal"),
        Row(f"all {k} shards' plans, one after another (each in a fresh process, its files "
            "in the page cache)", round(seconds, 1), round(whole[0], 1), "s", "<= 1.3x"),
        Row(f"slowest shard's plan ({slowest})", round(plans[slowest][0], 2), round(whole[0], 1),
            "s", f"{k} workers: about this"),
        Row(f"heaviest shard plan's peak RSS ({heaviest})", round(plans[heaviest][2]),
            round(whole[2]), "MB", "<= 1,000 MB"),
    ]  # fmt: skip
    if whole_cold is not None and len(cold) == k:
        rows_out.append(
            Row(f"all {k} shards' plans, each with the page cache emptied first",
                round(sum(c[0] for c in cold.values()), 1), round(whole_cold[0], 1), "s")
        )  # fmt: skip
    rows_out += [
        Row("writing the tables (whole, streaming above 20M / split, shard by shard)",
            round(split_write, 1), round(whole_write, 1), "s"),
        Row("per shard: seconds / peak MB",
            ", ".join(f"{s[-2:]} {v[0]:.1f} s {v[2]:,.0f} MB" for s, v in plans.items())),
    ]  # fmt: skip
    report(
        f"Plans in {k} shards, {n:,} profiles",
        "shard-plans " + " ".join(argv),
        rows_out,
        notes="What braze_sync_plan runs (make_plan over Parquet as amp_braze writes it), the "
        "whole brand once and each shard once, every plan in a fresh spawned process, imports "
        "excluded; the baseline is the whole brand's plan. Peak RSS includes the interpreter.",
        record=not a.no_record,
    )
