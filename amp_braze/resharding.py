"""``amp-braze reshard`` and ``amp-braze plan`` over shards: a sync's job run in this process,
its feeds once and then each shard, and the change of the number of shards (docs/scale.md)."""

from __future__ import annotations

import uuid
from contextlib import ExitStack

import dagster as dg

from amp_braze.catalogue import SYNC_PLAN
from amp_braze.config import Config
from amp_braze.definitions import build_defs
from amp_braze.shard_figures import ROUND_TAG
from amp_braze.shards import record_layout, recorded_shards, shard_names
from amp_braze.storage import Storage
from amp_braze.sync.jobs import feeds_job_name
from amp_braze.sync.lease import Lease
from amp_braze.sync.reshard import Resplit, resplit_state

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_job(
    defs: dg.Definitions,
    cfg: Config,
    job: str,
    instance: dg.DagsterInstance,
    without: set[dg.AssetKey] | None = None,
) -> None:
    """Run a sync's job here: split in shards, its feeds job and then one run per shard, as its
    schedule and sensor would; ``without`` leaves those assets out."""
    job_def = defs.resolve_job_def(job)
    keys = None
    if without:
        keys = [k for k in job_def.asset_layer.executable_asset_keys if k not in without]
    if cfg.scale.shards == 1:
        job_def.execute_in_process(instance=instance, run_config=QUIET, asset_selection=keys)
        return
    feeds = defs.resolve_job_def(feeds_job_name(job)).execute_in_process(
        instance=instance, run_config=QUIET
    )
    tags = {ROUND_TAG: feeds.run_id}  # as the shards' sensor tags them
    for shard in shard_names(cfg.scale.shards):
        job_def.execute_in_process(
            instance=instance,
            run_config=QUIET,
            partition_key=shard,
            asset_selection=keys,
            tags=tags,
        )


def reshard(cfg: Config) -> tuple[int, list[Resplit]]:
    """Split the storage's sync state in ``scale.shards`` shards; returns the old number and
    what each sync's state became. Every destination's lease is held throughout, so no sync
    sends meanwhile; nothing is sent to Braze."""
    shared = Storage(cfg.storage)
    old, new = recorded_shards(shared), cfg.scale.shards
    if old == new:
        return old, []
    run_id = f"reshard-{uuid.uuid4().hex[:12]}"
    leases = {spec.names.lease for spec in cfg.syncs.values()}
    with ExitStack() as held:
        for name in sorted(leases):
            lease = Lease(shared, name, run_id, ttl=cfg.sync.lease_seconds)
            lease.acquire(cfg.sync.lease_wait_seconds)
            held.enter_context(lease)
        # The new shards' tables, up to what each sync sends from (not its plan: the state the
        # plans compare with is what this writes).
        defs = build_defs(cfg)
        instance = dg.DagsterInstance.ephemeral()
        plans = {dg.AssetKey(spec.names.key(SYNC_PLAN)) for spec in cfg.syncs.values()}
        for spec in cfg.syncs.values():
            run_job(defs, cfg, spec.names.plan_job, instance, without=plans)
        done = resplit_state(cfg, shared, old, new)
        record_layout(shared, new, replace=True)
    return old, done
