"""Per sync a job that runs everything it needs, a plan job that stops at its plan (what
``amp-braze plan`` runs), and a schedule; ``braze_sync_job`` runs every sync. Their names are the
sync's own (``SyncSpec.names``)."""

from __future__ import annotations

import dagster as dg

from amp_braze.catalogue import (
    ALL_SYNCS_JOB,
    ATTRIBUTES,
    CURRENTS_EVENTS,
    FIELD_REJECTIONS,
    MEMBERSHIPS,
    PROFILES,
    SYNC,
    SYNC_PLAN,
    SYNC_REJECTIONS,
)
from amp_braze.config import Config, SyncSpec
from amp_braze.shard_figures import ROUND_TAG
from amp_braze.shards import shard_names
from amp_braze.sync.assets import sync_asset_key


def _with_side_tables(cfg: Config, spec: SyncSpec, keys: list[dg.AssetKey]) -> dg.AssetSelection:
    """These assets and everything upstream, with the rejection tables that come with the assets
    that write them. The hourly Currents loads run from their sensor: a sync refreshes
    engagement_summary from whatever hours are loaded."""
    side = [dg.AssetKey(FIELD_REJECTIONS)]
    if spec.names.own_attributes:
        side.append(dg.AssetKey(spec.names.field_rejections.split("/")))
    selection = dg.AssetSelection.assets(*keys).upstream() | dg.AssetSelection.assets(*side)
    if cfg.currents is not None:
        selection = selection - dg.AssetSelection.assets(CURRENTS_EVENTS)
    return selection


def sync_selection(cfg: Config, spec: SyncSpec) -> dg.AssetSelection:
    """Everything a sync needs, from the feeds to its braze_sync."""
    keys = [sync_asset_key(spec, SYNC), sync_asset_key(spec, SYNC_REJECTIONS)]
    return _with_side_tables(cfg, spec, keys)


def plan_selection(cfg: Config, spec: SyncSpec) -> dg.AssetSelection:
    """Everything a sync's plan needs, from the feeds to its braze_sync_plan: nothing is sent."""
    return _with_side_tables(cfg, spec, [sync_asset_key(spec, SYNC_PLAN)])


def sharded_selection(cfg: Config) -> dg.AssetSelection:
    """The assets split in shards (scale.shards > 1): customer_profiles down to every braze_sync."""
    keys = [dg.AssetKey(k) for k in (PROFILES, ATTRIBUTES, FIELD_REJECTIONS, MEMBERSHIPS)]
    for spec in cfg.syncs.values():
        keys += [sync_asset_key(spec, k) for k in (SYNC_PLAN, SYNC, SYNC_REJECTIONS)]
        if spec.names.own_attributes:
            keys += [
                dg.AssetKey(t.split("/"))
                for t in (spec.names.attributes, spec.names.field_rejections)
            ]
    return dg.AssetSelection.assets(*keys)


def feeds_job_name(job: str) -> str:
    """The job that reads what every shard of ``job`` reads (scale.shards > 1)."""
    return f"{job}_feeds"


def build_jobs(cfg: Config) -> tuple[list[dg.UnresolvedAssetJobDefinition], list]:
    """(jobs, schedules and sensors): per sync its job, its plan job and its schedule, and
    braze_sync_job. Split in shards, each job runs one shard (a partition), and its schedule
    runs the job's ``_feeds`` job (the feeds and everything else all shards read), whose success
    launches one run of the job per shard (``shard_runs``)."""
    jobs: list = []
    everything = None
    own: dict[str, tuple[dg.AssetSelection, str]] = {}
    for spec in cfg.syncs.values():
        selection = sync_selection(cfg, spec)
        everything = selection if everything is None else everything | selection
        jobs += _job(
            cfg,
            spec.names.plan_job,
            plan_selection(cfg, spec),
            f"Everything sync {spec.name!r} needs up to its plan: shows what it would send "
            "(amp-braze plan runs it); sends nothing.",
        )
        if spec.names.job != ALL_SYNCS_JOB:
            own[spec.name] = (selection, spec.names.job)
    all_jobs = _job(
        cfg,
        ALL_SYNCS_JOB,
        everything,
        "Every sync, and everything they need, from the feeds to braze_sync.",
    )
    by_sync = {
        name: _job(
            cfg, job, sel, f"Everything sync {name!r} needs, from the feeds to its braze_sync."
        )
        for name, (sel, job) in own.items()
    }
    triggers: list = []
    for spec in cfg.syncs.values():
        chain = by_sync.get(spec.name, all_jobs)
        triggers += _triggers(cfg, spec, chain)
    if len(all_jobs) == 2 and not any(
        spec.names.job == ALL_SYNCS_JOB for spec in cfg.syncs.values()
    ):
        # braze_sync_job of several syncs has no schedule, but its feeds job run by hand still
        # goes on to every shard.
        triggers.append(shard_runs(*all_jobs, shard_names(cfg.scale.shards)))
    return [*all_jobs, *(j for js in by_sync.values() for j in js), *jobs], triggers


def _job(
    cfg: Config, name: str, selection: dg.AssetSelection, description: str
) -> list[dg.UnresolvedAssetJobDefinition]:
    """The job (one shard per run when split in shards), and when split its feeds job."""
    if cfg.scale.shards == 1:
        return [dg.define_asset_job(name, selection=selection, description=description)]
    sharded = sharded_selection(cfg)
    return [
        dg.define_asset_job(
            name,
            selection=selection & sharded,
            description=f"{description} One shard per run: the feeds are read by "
            f"{feeds_job_name(name)}.",
        ),
        dg.define_asset_job(
            feeds_job_name(name),
            selection=selection - sharded,
            description=f"What every shard of {name} reads (the feeds, ...); when it succeeds, "
            f"{name} runs once per shard.",
        ),
    ]


def _triggers(cfg: Config, spec: SyncSpec, jobs: list) -> list:
    if len(jobs) == 1:
        return [_schedule(spec, jobs[0])]
    chain, feeds = jobs
    return [_schedule(spec, feeds), shard_runs(chain, feeds, shard_names(cfg.scale.shards))]


def shard_runs(
    chain: dg.UnresolvedAssetJobDefinition,
    feeds: dg.UnresolvedAssetJobDefinition,
    shards: list[str],
) -> dg.SensorDefinition:
    """When a feeds job succeeds, one run of its job per shard (each any worker's)."""

    @dg.run_status_sensor(
        name=f"{chain.name}_shards",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[feeds],
        request_job=chain,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Runs {chain.name} once per shard after {feeds.name} succeeds.",
    )
    def _shards(context: dg.RunStatusSensorContext):
        run_id = context.dagster_run.run_id
        return [
            dg.RunRequest(
                run_key=f"{run_id}:{shard}", partition_key=shard, tags={ROUND_TAG: run_id}
            )
            for shard in shards
        ]

    return _shards


def _schedule(spec: SyncSpec, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return stopped_schedule(spec.names.schedule, job, spec.schedule, spec.timezone)


def stopped_schedule(
    name: str, job: dg.UnresolvedAssetJobDefinition, cron: str, timezone: str
) -> dg.ScheduleDefinition:
    """A job's schedule, stopped until someone starts it (a deployment should not begin sending
    to Braze the moment it loads)."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs {job.name} on '{cron}' ({timezone}).",
    )
