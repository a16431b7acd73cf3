"""The resources every area shares: where amp_braze keeps its data, and each Braze workspace it
sends to. They show on the UI's resource pages, and each hands out what it configures: the
storage, or a Braze client with the workspace's rate limit and retry policy.

A workspace's API key is an ``EnvVar`` field: Dagster 1.13 resolves it only for runs whose steps
use that workspace (amp_braze_tests/test_resources.py pins this), so a Currents load or a plan never
needs a Braze key, and the key's value is never part of run config, metadata or the UI."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar

import dagster as dg

from amp_braze.braze.client import BrazeClient
from amp_braze.braze.instances import endpoint_for
from amp_braze.braze.retry import RetryPolicy
from amp_braze.config import BrazeConfig
from amp_braze.shards import shard_names
from amp_braze.storage import Storage

T = TypeVar("T")


class StorageResource(dg.ConfigurableResource):
    """The storage root: a local folder or s3://bucket/prefix (tables, sync state, Currents)."""

    root: str

    def get(self) -> Storage:
        return Storage(self.root)

    def for_run(self, context: dg.AssetExecutionContext) -> Storage:
        """The storage of what this step writes: its shard's root when the asset is split in
        shards (the partition), the root itself otherwise."""
        store = self.get()
        if not context.has_partition_key:
            return store
        shards = len(context.assets_def.partitions_def.get_partition_keys())
        return store.shard(context.partition_key, shards)


def _one_per_key(fn: Callable[..., T]) -> Callable[..., T]:
    """``functools.cache`` under a lock: two threads building definitions at once would each make
    their own object on a miss, and one build could end up naming both (``Definitions.merge``
    refuses two resources under one key)."""
    cached, lock = cache(fn), threading.Lock()

    @wraps(fn)
    def once(*args: Any) -> T:
        with lock:
            return cached(*args)

    return once


@_one_per_key
def shard_partitions(shards: int) -> dg.StaticPartitionsDefinition | None:
    """The partitions of a pipeline split in shards (None: not split), one object per count."""
    return dg.StaticPartitionsDefinition(shard_names(shards)) if shards > 1 else None


@_one_per_key
def storage_resource(root: str) -> StorageResource:
    """One resource object per root: every area's Definitions name the same one, as
    ``Definitions.merge`` requires."""
    return StorageResource(root=root)


class BrazeWorkspace(dg.ConfigurableResource):
    """One Braze workspace (a configured destination): its REST endpoint, its API key (from the
    environment variable its destination names) and how patiently amp_braze talks to it."""

    destination: str
    rest_endpoint: str
    api_key_env: str
    api_key: str
    requests: int = 3000
    per_seconds: float = 3.0
    concurrency: int = 8
    timeout_seconds: float = 30.0
    max_retries: int = 6
    max_wait_seconds: float = 900.0
    max_consecutive_failures: int = 20

    def key(self) -> str:
        """The API key: Dagster's resolved value in a run, the environment's outside one."""
        key = self.api_key
        return key.get_value() or "" if isinstance(key, dg.EnvVar) else key

    def client(self, start_at: float = 0.0, retry_unanswered: bool = True) -> BrazeClient:
        """A client for this workspace; ``start_at`` (epoch seconds) holds its first request back
        when it takes over from another sender of the same workspace."""
        return BrazeClient(
            self.rest_endpoint,
            self.key(),
            key_env=self.api_key_env,
            start_at=start_at,
            rate_per_second=self.requests / self.per_seconds,
            concurrency=self.concurrency,
            timeout=self.timeout_seconds,
            retry=RetryPolicy(
                max_retries=self.max_retries,
                max_wait_seconds=self.max_wait_seconds,
                max_consecutive_failures=self.max_consecutive_failures,
                retry_unanswered=retry_unanswered,
            ),
        )


def braze_workspace(b: BrazeConfig) -> BrazeWorkspace:
    """The workspace of a destination, one resource object per destination (see
    ``storage_resource``)."""
    rl = b.rate_limit
    return _workspace(
        b.name,
        endpoint_for(b.instance, b.rest_endpoint),
        b.api_key_env,
        rl.requests,
        rl.per_seconds,
        b.concurrency,
        b.timeout_seconds,
        b.max_retries,
        b.max_wait_seconds,
        b.max_consecutive_failures,
    )


@_one_per_key
def _workspace(
    destination: str,
    rest_endpoint: str,
    api_key_env: str,
    requests: int,
    per_seconds: float,
    concurrency: int,
    timeout_seconds: float,
    max_retries: int,
    max_wait_seconds: float,
    max_consecutive_failures: int,
) -> BrazeWorkspace:
    return BrazeWorkspace(
        destination=destination,
        rest_endpoint=rest_endpoint,
        api_key_env=api_key_env,
        api_key=dg.EnvVar(api_key_env),
        requests=requests,
        per_seconds=per_seconds,
        concurrency=concurrency,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        max_wait_seconds=max_wait_seconds,
        max_consecutive_failures=max_consecutive_failures,
    )
