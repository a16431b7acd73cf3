"""The Dagster code location: ``defs`` is built from the configuration (see amp_braze.config)."""

from __future__ import annotations

import importlib
import multiprocessing

import dagster as dg

from amp_braze.audiences import definitions as audiences
from amp_braze.config import Config, ConfigError, load_config
from amp_braze.currents import definitions as currents
from amp_braze.events import definitions as events
from amp_braze.identity import definitions as identity
from amp_braze.profiles import definitions as profiles
from amp_braze.sync import definitions as sync

AREAS = (profiles, identity, audiences, sync, currents, events)  # each area's own Definitions


def step_executor(config: Config) -> dg.ExecutorDefinition:
    """The executor ``scale.executor`` names. ``multiprocess``: Dagster's multiprocess executor
    (a process per step: each step's memory goes back when it ends), its processes forked from a
    server that has imported Dagster once, where the platform has one: spawning each step afresh
    is most of a small brand's run (benchmarks/RESULTS.md, "Session 7"). ``celery``: each step a
    task on dagster-celery's workers; a task whose worker dies is given to another worker
    (acknowledged late, rejected when its worker is lost). ``k8s``: each step a Kubernetes job."""
    kind = config.scale.executor
    if kind == "celery":
        celery = _optional_executor("dagster_celery", "celery_executor", "celery")
        return celery.configured(
            {
                "broker": config.scale.celery_broker,
                "backend": config.scale.backend,
                "config_source": {
                    "task_acks_late": True,
                    "task_reject_on_worker_lost": True,
                    "worker_prefetch_multiplier": 1,
                    "broker_transport_options": {
                        "visibility_timeout": config.scale.celery_redelivery_seconds
                    },
                },
            },
            name="amp_braze_celery",
        )
    if kind == "k8s":
        return _optional_executor("dagster_k8s", "k8s_job_executor", "k8s")
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return dg.multiprocess_executor
    preload = {"forkserver": {"preload_modules": ["dagster", "amp_braze.step_preload"]}}
    return dg.multiprocess_executor.configured({"start_method": preload})


def _optional_executor(module: str, name: str, extra: str) -> dg.ExecutorDefinition:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ConfigError(
            "scale.executor",
            f"{extra} needs {module.replace('_', '-')}, which is not installed: "
            f"pip install 'amp_braze[{extra}]'",
        ) from None


def build_defs(config: Config) -> dg.Definitions:
    """Definitions for one configuration (tests build their own from their own files): each
    area's own Definitions, with its resources, merged."""
    return dg.Definitions.merge(
        *(area.defs(config) for area in AREAS),
        dg.Definitions(executor=step_executor(config)),
    )


_prebuilt: dg.Definitions | None = None


def prebuild() -> None:
    """Build the definitions now, for the processes forked from this one (a run's steps): a step
    then starts with the code location its run loaded moments before. A configuration that does
    not load is left for the step to report."""
    global _prebuilt
    try:
        built = build_defs(load_config())
        built.get_repository_def()  # the asset graph, resolved once
    except Exception:
        return
    _prebuilt = built


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, not when the package is imported: the CLI's
    --config never depends on the file in the working directory."""
    return _prebuilt if _prebuilt is not None else build_defs(load_config())
