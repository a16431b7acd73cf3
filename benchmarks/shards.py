"""The pipeline split in shards against one shard: the end-to-end brand (three feeds, three
segments, the demo's profile SQL) synced twice, the second time with 1% of the customers changed,
once per number of shards, each into an emulator of its own. Braze must end the same in every
case, with the same data points and rejections; the figures are each case's wall time and its
heaviest step's peak memory.

Every shard runs in this process one after another (``amp_braze.resharding.run_job``, as
``amp-braze plan`` runs them): the peak memory of a step is its process's high-water mark since
the step began (``StepCost``), which holds what earlier steps left allocated, an upper bound of
what the step needs in a process of its own."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import orjson
import requests

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.demo.run import _day_two
from amp_braze.resharding import run_job
from amp_braze.shards import shard_names, shard_stores
from amp_braze.storage import Storage
from amp_braze.sync.verify import flatten_braze_profile
from benchmarks.end_to_end import CONFIG, steps_in_own_processes
from benchmarks.harness import Row, report

SEGMENT_FLAGS = {"amp_vip", "amp_lapsed", "amp_loyal_gold"}
CHAIN = ("customer_profiles", "braze_customer_attributes", "segment_memberships",
         "braze_sync_plan", "braze_sync")  # fmt: skip


def _emulator(rate: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "amp_braze.cli", "emulator", "--port", "0", "--api-key", "k",
           "--rate-limit", str(rate * 3), "--rate-window", "3"]  # fmt: skip
    emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return emu, emu.stdout.readline().split()[-1]


PAGE = 200_000  # profiles fetched at a time: ten million in one answer is too much JSON


def braze_digest(url: str) -> tuple[int, str]:
    """(profiles, a digest of every profile's attributes as the comparison sees them). The digest
    adds up each profile's own hash (mod 2^128), so it does not depend on the order Braze holds
    the profiles in, and the profiles are read a page at a time."""
    total, count, offset = 0, 0, 0
    while True:
        page = requests.get(
            f"{url}/_emulator/users", data=orjson.dumps({"offset": offset, "limit": PAGE}),
            timeout=600,
        ).json()  # fmt: skip
        for u in page:
            flat = [u.get("external_id") or "", flatten_braze_profile(u, SEGMENT_FLAGS)]
            h = hashlib.blake2b(orjson.dumps(flat, option=orjson.OPT_SORT_KEYS), digest_size=16)
            total = (total + int.from_bytes(h.digest(), "big")) % (1 << 128)
        count += len(page)
        offset += len(page)
        if len(page) < PAGE:
            return count, f"{total:032x}"[:16]


def _figures(instance: dg.DagsterInstance, since: int) -> dict:
    """What the runs since event ``since`` reported: data points, rejected rows, the heaviest
    step's peak and which step."""
    out = {"data_points": 0, "braze_rejected": 0, "peak_mb": 0, "peak_step": ""}
    for key in CHAIN:
        records = instance.fetch_materializations(dg.AssetKey(key), limit=10_000).records
        for r in records:
            if r.storage_id <= since:
                continue
            meta = r.asset_materialization.metadata
            if key == "braze_sync":
                out["data_points"] += meta["data_points"].value
                out["braze_rejected"] += meta["rejected_rows"].value
            mb = meta["peak_memory_mb"].value
            if mb > out["peak_mb"]:
                out["peak_mb"], out["peak_step"] = mb, key
    return out


def _last_event(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_materializations(dg.AssetKey("braze_sync"), limit=1).records
    return records[0].storage_id if records else 0


def one_case(home: Path, data: Path, sql: Path, shards: int, rate: int, own: bool) -> dict:
    """Two syncs of the brand in ``shards`` shards; their figures and Braze's digest. With
    ``own``, the second sync's steps again, each in a process of its own, from a copy of the
    storage as the first sync left it (split: the feeds, then the first shard's steps)."""
    emu, url = _emulator(rate)
    try:
        body = CONFIG.format(home=home, sql=sql, url=url, limit=rate * 3).replace(
            f"{home}/data", str(data)
        )
        cfg_path = home / f"amp_braze_{shards}.yaml"
        cfg_path.write_text(
            body.replace(f"{home}/storage", f"{home}/storage_{shards}")
            + f"scale: {{shards: {shards}}}\n"
        )
        cfg = load_config(cfg_path)
        defs = build_defs(cfg)
        instance = dg.DagsterInstance.ephemeral()
        out = {}
        storage, before = home / f"storage_{shards}", home / f"storage_{shards}_before"
        for day in ("first sync", "1% changed"):
            if day == "1% changed":
                if own:
                    shutil.copytree(storage, before)
                _day_two(data / "pos_customers.csv")
            since = _last_event(instance)
            t = time.perf_counter()
            run_job(defs, cfg, "braze_sync_job", instance)
            out[day] = {"wall": time.perf_counter() - t, **_figures(instance, since)}
        stores = shard_stores(Storage(cfg.storage), shards)
        out["field_rejections"] = sum(
            s.read_table("braze_customer_attributes_rejections").height for s in stores
        )
        out["braze"] = braze_digest(url)
        if own:  # Braze already has the change: sending it again leaves Braze as it is
            again = home / f"amp_braze_{shards}_own.yaml"
            again.write_text(cfg_path.read_text().replace(str(storage), str(before)))
            steps = [
                a.node_def.name for a in defs.assets if a.node_def.name.startswith("sources__")
            ]
            feeds = steps_in_own_processes(again, steps)
            chain = steps_in_own_processes(again, list(CHAIN), shard_names(shards)[0])
            out["own"] = feeds | chain
            shutil.rmtree(before)
        return out
    finally:
        emu.terminate()
        emu.wait()


def _heaviest(
    own: dict[str, tuple[float, float]], among: tuple[str, ...] | None = None
) -> tuple[str, float]:
    """The step with the highest peak (of ``among``, or of all) and its peak in MB."""
    step = max((k for k in own if among is None or k in among), key=lambda k: own[k][1])
    return step, own[step][1]


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks shards")
    p.add_argument("--profiles", type=int, default=1_000_000)
    p.add_argument("--shards", default="1,4,16", help="numbers of shards, the first the baseline")
    p.add_argument("--rate", type=int, default=1000, help="requests/s (Braze: 1,000)")
    p.add_argument(
        "--own-process",
        action="store_true",
        help="also each step of the second sync in a process of its own (its peak)",
    )
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    counts = [int(n) for n in a.shards.split(",")]
    demo_sql = Path(__file__).resolve().parents[1] / "amp_braze/demo/sql"
    os.environ["BRAZE_API_KEY"] = "k"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sql = home / "p.sql"
        text = (demo_sql / "braze_customer_attributes.sql").read_text()
        sql.write_text(text.replace("p.amp_id", "p.customer_id"))
        gen = [sys.executable, "-m", "amp_braze.cli", "generate", "--profiles", str(a.profiles),
               "--out", str(home / "data"), "--shared-key"]  # fmt: skip
        subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
        cases = {}
        for n in counts:
            data = home / f"data_{n}"
            shutil.copytree(home / "data", data)  # each case changes its own copy on day two
            cases[n] = one_case(home, data, sql, n, a.rate, a.own_process)
            print(f"{n} shard(s): {cases[n]}", flush=True)
    base = cases[counts[0]]
    rows = []
    for n in counts:
        c = cases[n]
        same = (
            c["braze"] == base["braze"]
            and all(
                c[d]["data_points"] == base[d]["data_points"]
                and c[d]["braze_rejected"] == base[d]["braze_rejected"]
                for d in ("first sync", "1% changed")
            )
            and c["field_rejections"] == base["field_rejections"]
        )
        rows.append(Row(f"{n} shard(s): Braze profiles / digest, as {counts[0]} shard(s) leave it",
                        f"{c['braze'][0]:,} / {c['braze'][1]}", "", "",
                        "equal" if same else "DIFFERENT"))  # fmt: skip
        for day in ("first sync", "1% changed"):
            d, b = c[day], base[day]
            rows += [
                Row(f"{n} shard(s), {day}: data points / rejected by Braze",
                    f"{d['data_points']:,} / {d['braze_rejected']:,}",
                    f"{b['data_points']:,} / {b['braze_rejected']:,}"),
                Row(f"{n} shard(s), {day}: wall, feeds and every shard in one process",
                    round(d["wall"], 1), round(b["wall"], 1), "s", "<= 1.5x at 16 shards"),
                Row(f"{n} shard(s), {day}: heaviest step's peak ({d['peak_step']})",
                    d["peak_mb"], b["peak_mb"], "MB", "<= 1/8 at 16 shards"),
            ]  # fmt: skip
        rows.append(Row(f"{n} shard(s): rows set aside by field rules", c["field_rejections"],
                        base["field_rejections"]))  # fmt: skip
        if "own" in c:
            # A shard's steps against every step of the baseline; the feeds are read once for
            # all shards (not split), so they are a row of their own.
            step, mb = _heaviest(c["own"], CHAIN if n > 1 else None)
            base_step, base_mb = _heaviest(base["own"])
            feed, feed_mb = _heaviest({k: v for k, v in c["own"].items() if k not in CHAIN})
            where = "" if n == 1 else f" ({shard_names(n)[0]})"
            rows += [
                Row(f"{n} shard(s), 1% changed, each step in its own process{where}: heaviest "
                    f"{'shard ' if n > 1 else ''}step's peak ({step}; baseline {base_step})",
                    round(mb), round(base_mb), "MB", "<= 1/8 at 16 shards"),
                Row(f"{n} shard(s), 1% changed, each step in its own process: heaviest feed "
                    f"step's peak ({feed}; read once for every shard)", round(feed_mb),
                    unit="MB"),
                Row(f"{n} shard(s), 1% changed, each step in its own process{where}: peak "
                    "memory (MB) and seconds",
                    ", ".join(f"{k} {m:,.0f} MB {t:.1f} s" for k, (t, m) in c["own"].items())),
            ]  # fmt: skip
        if not same:
            raise SystemExit(f"{n} shard(s) left Braze otherwise than {counts[0]}: {c} / {base}")
    report(
        f"Shards, {a.profiles:,} profiles at R={a.rate}/s",
        "shards " + " ".join(argv),
        rows,
        notes="Each case syncs into its own emulator process; the feeds job, then every shard, "
        "one after another in this process (peaks are upper bounds: memory earlier steps kept).",
        record=not a.no_record,
    )
