"""Per sync a job that runs everything it needs, a plan job that stops at its plan (what
``amp-braze plan`` runs), and a schedule; ``braze_sync_job`` runs every sync. Their names are the
sync's own (``SyncSpec.names``)."""

from __future__ import annotations

import dagster as dg

from amp_braze.catalogue import (
    ALL_SYNCS_JOB,
    CURRENTS_EVENTS,
    FIELD_REJECTIONS,
    SYNC,
    SYNC_PLAN,
    SYNC_REJECTIONS,
)
from amp_braze.config import Config, SyncSpec
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


def build_jobs(cfg: Config) -> tuple[list[dg.UnresolvedAssetJobDefinition], list]:
    """(jobs, schedules): per sync its job, its plan job and its schedule, and braze_sync_job."""
    jobs: list = []
    schedules: list = []
    everything = None
    own_jobs: dict[str, dg.UnresolvedAssetJobDefinition] = {}
    for spec in cfg.syncs.values():
        selection = sync_selection(cfg, spec)
        everything = selection if everything is None else everything | selection
        jobs.append(
            dg.define_asset_job(
                spec.names.plan_job,
                selection=plan_selection(cfg, spec),
                description=f"Everything sync {spec.name!r} needs up to its plan: shows what "
                "it would send (amp-braze plan runs it); sends nothing.",
            )
        )
        if spec.names.job != ALL_SYNCS_JOB:
            own_jobs[spec.name] = dg.define_asset_job(
                spec.names.job,
                selection=selection,
                description=f"Everything sync {spec.name!r} needs, from the feeds to its "
                "braze_sync.",
            )
    all_job = dg.define_asset_job(
        ALL_SYNCS_JOB,
        selection=everything,
        description="Every sync, and everything they need, from the feeds to braze_sync.",
    )
    for spec in cfg.syncs.values():
        schedules.append(_schedule(spec, own_jobs.get(spec.name, all_job)))
    return [all_job, *own_jobs.values(), *jobs], schedules


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
