"""The Dagster code location: ``defs`` is built from the configuration (see amp_braze.config)."""

from __future__ import annotations

import multiprocessing

import dagster as dg

from amp_braze.audiences.assets import build_audience_assets
from amp_braze.config import Config, load_config
from amp_braze.currents.assets import build_currents_defs
from amp_braze.profiles.assets import build_profile_assets
from amp_braze.resources import build_resources
from amp_braze.sync.assets import build_sync_assets, build_sync_jobs_and_schedules


def step_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor (a process per step: each step's memory goes back when it
    ends), its processes forked from a server that has imported Dagster once, where the platform
    has one. Spawning each step afresh cost braze_sync_job for 2,000 profiles 14.5-17.6 s against
    11.3-11.5 s forked (2.6-3.8 s with every step in one process): most of a small run."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return dg.multiprocess_executor
    preload = {"forkserver": {"preload_modules": ["dagster"]}}
    return dg.multiprocess_executor.configured({"start_method": preload})


def build_defs(config: Config) -> dg.Definitions:
    """Definitions for one configuration (tests build their own from their own files): one
    Definitions per area, merged, with the resources they share."""
    currents_assets, sensors, currents_jobs = build_currents_defs(config)
    jobs, schedules = build_sync_jobs_and_schedules(config)
    resources: dict = build_resources(config)
    if config.currents is not None:
        from dagster_aws.s3 import S3Resource

        resources["s3"] = S3Resource(region_name=config.currents.region)
    return dg.Definitions.merge(
        dg.Definitions(assets=build_profile_assets(config)),
        dg.Definitions(assets=build_audience_assets(config)),
        dg.Definitions(assets=build_sync_assets(config), jobs=jobs, schedules=schedules),
        dg.Definitions(assets=currents_assets, sensors=sensors, jobs=currents_jobs),
        dg.Definitions(resources=resources, executor=step_executor()),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, not when the package is imported: the CLI's
    --config never depends on the file in the working directory."""
    return build_defs(load_config())
