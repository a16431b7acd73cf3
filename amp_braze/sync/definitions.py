"""The syncs as Dagster definitions: per sync its assets, job, plan job and schedule, with its
destination's Braze workspace as a resource; and braze_sync_job, which runs them all."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import Config
from amp_braze.resources import braze_workspace, storage_resource
from amp_braze.sync.assets import sync_assets
from amp_braze.sync.jobs import build_jobs


def defs(config: Config) -> dg.Definitions:
    jobs, triggers = build_jobs(config)
    schedules = [t for t in triggers if isinstance(t, dg.ScheduleDefinition)]
    sensors = [t for t in triggers if not isinstance(t, dg.ScheduleDefinition)]
    resources: dict = {"storage": storage_resource(config.storage)}
    for spec in config.syncs.values():
        resources[spec.names.workspace] = braze_workspace(config.destination_of(spec))
    assets = [a for spec in config.syncs.values() for a in sync_assets(config, spec)]
    return dg.Definitions(
        assets=assets, jobs=jobs, schedules=schedules, sensors=sensors, resources=resources
    )
