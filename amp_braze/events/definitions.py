"""The event streams as Dagster definitions: per stream its assets, job and schedule, with its
destination's Braze workspace as a resource."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import Config
from amp_braze.events.assets import stream_assets, stream_job, stream_schedule
from amp_braze.resources import braze_workspace, storage_resource


def defs(config: Config) -> dg.Definitions:
    assets, jobs, schedules = [], [], []
    resources: dict = {"storage": storage_resource(config.storage)}
    for stream in config.events.values():
        assets.append(stream_assets(config, stream))
        job = stream_job(config, stream)
        jobs.append(job)
        schedules.append(stream_schedule(stream, job))
        resources[stream.names.workspace] = braze_workspace(config.destination_of(stream))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, resources=resources)
