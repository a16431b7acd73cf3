"""The ``scale:`` section: how many shards the pipeline from customer_profiles down is split in,
and which Dagster executor runs a job's steps (this machine's processes, Celery workers, or
Kubernetes pods)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from amp_braze.config.errors import problem
from amp_braze.config.section import Section
from amp_braze.config.values import bounded, one_of

# Two-digit shard names (shard_00 ... shard_99) are what the UI, the storage folders and users'
# runbooks spell; more shards than that would be a different layout.
MAX_SHARDS = 100

Executor = Literal["multiprocess", "celery", "k8s"]


class ScaleConfig(Section):
    """How the pipeline splits by customer, and where its steps run (docs/scale.md)."""

    shards: bounded(int, low=1, high=MAX_SHARDS) = Field(
        1,
        description="Split everything from `customer_profiles` to `braze_sync` in this many "
        "shards by a stable hash of the customer key: each shard is a Dagster partition "
        "(`shard_00`, ...) with its own tables and sync state, which any worker can run. "
        "1 keeps the graph, names and files as they are.",
    )
    executor: one_of(Executor, "executor") = Field(
        "multiprocess",
        description="What runs each step of a job: `multiprocess` (a process of this machine "
        "per step), `celery` (dagster-celery's workers, which need `celery_broker`; install "
        "`amp_braze[celery]`) or `k8s` (a Kubernetes job per step, dagster-k8s; install "
        "`amp_braze[k8s]`, see deploy/).",
    )
    celery_broker: str | None = Field(
        None,
        description="With `executor: celery`: the broker's URL, such as "
        "`redis://redis:6379/0` (usually `${CELERY_BROKER_URL}`); the workers are started with "
        "the same one.",
    )
    celery_backend: str | None = Field(
        None,
        description="With `executor: celery`: where workers put step results; defaults to the "
        "broker's URL for Redis and `rpc://` otherwise.",
    )

    celery_redelivery_seconds: bounded(int, low=1) = Field(
        3600,
        description="With `executor: celery` and Redis: how long a step's task may stay "
        "unacknowledged before the broker gives it to another worker (Celery's "
        "`visibility_timeout`). A worker that dies mid-step has its step run again elsewhere "
        "after this long; keep it above the longest step, or a step still running is started "
        "twice (amp_braze's steps are safe to repeat, and the lease keeps the sends one at a "
        "time). Start the workers with the same value.",
    )

    @model_validator(mode="after")
    def _broker(self) -> ScaleConfig:
        if self.executor == "celery" and not self.celery_broker:
            raise problem("needs celery_broker (the broker's URL) with executor: celery")
        return self

    @property
    def backend(self) -> str | None:
        if self.celery_backend or self.celery_broker is None:
            return self.celery_backend
        return self.celery_broker if self.celery_broker.startswith("redis") else "rpc://"
