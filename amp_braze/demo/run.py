"""``amp-braze demo``: the whole loop, offline, on generated data and the real Dagster definitions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from amp_braze.config import BUNDLED_CONFIG, load_config
from amp_braze.profiles.sample_data import generate

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class Progress:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def step(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {text}", flush=True)


def _materialized(result: dg.ExecuteInJobResult) -> dict[str, dict]:
    out = {}
    for ev in result.get_asset_materialization_events():
        md = ev.materialization.metadata
        out[ev.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in md.items()}
    return out


def run_demo(
    profiles: int = 10_000, workdir: Path = Path(".amp_braze_demo"), keep_running: bool = False
) -> int:
    from amp_braze.definitions import build_defs

    progress = Progress()
    workdir = workdir.resolve()
    os.environ["AMP_BRAZE_HOME"] = str(workdir)
    progress.step(f"generating sample feeds for {profiles:,} customers in {workdir}")
    generate(workdir / ".amp_braze" / "demo_data", customers=profiles)
    config = load_config(BUNDLED_CONFIG)
    defs = build_defs(config)
    instance = dg.DagsterInstance.ephemeral()

    progress.step(
        "materializing sources/*, customer_profiles, braze_customer_attributes, segment_memberships"
    )
    result = dg.materialize(
        list(defs.assets), instance=instance, raise_on_error=True, run_config=QUIET
    )
    meta = _materialized(result)
    progress.step("done")
    print()
    print("amp_braze demo summary")
    print("----------------------")
    for name in config.sources:
        m = meta[f"sources/{name}"]
        print(
            f"  feed {name:<10} {m['dagster/row_count']:>10,} rows  {m['distinct_customers']:>10,} customers"
        )
    cp = meta["customer_profiles"]
    print(f"  customer_profiles {cp['dagster/row_count']:>10,} unified customers")
    ba = meta["braze_customer_attributes"]
    print(
        f"  braze attributes  {ba['dagster/row_count']:>10,} users ready, {ba['rejected_rows']:,} rows set aside "
        f"by field rules (braze_customer_attributes_rejections)"
    )
    sm = meta["segment_memberships"]
    for seg in config.segments:
        print(f"  segment {seg:<12} {sm[f'size_{seg}']:>8,} members")
    print(f"  storage: {config.storage}")
    if keep_running:
        print("  --keep-running has nothing to keep up yet: the servers arrive with the sync.")
    return 0
