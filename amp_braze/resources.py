"""The Dagster resources: where amp_braze keeps its data, and each Braze workspace it sends to.

They show on the UI's resource pages. A workspace's API key is read from the environment variable
its destination names (``api_key_env``) when a sync sends, and is never part of run config or
metadata. (Not an ``EnvVar`` field: Dagster resolves those when any run starts, for every resource
of the code location, so a Currents load would then fail for want of a Braze key.)"""

from __future__ import annotations

import os

import dagster as dg

from amp_braze.braze.instances import endpoint_for
from amp_braze.config import BrazeConfig, Config
from amp_braze.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """The storage root: a local folder or s3://bucket/prefix (tables, sync state, Currents)."""

    root: str

    def get(self) -> Storage:
        return Storage(self.root)


class BrazeWorkspace(dg.ConfigurableResource):
    """One Braze workspace (a configured destination): its REST endpoint and where its API key is."""

    destination: str
    rest_endpoint: str
    api_key_env: str

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "")


def workspace_key(b: BrazeConfig, legacy: bool) -> str:
    """The resource key of a destination's workspace (the single-destination shape: braze)."""
    return "braze" if legacy else f"braze_{b.name}"


def build_resources(config: Config) -> dict[str, dg.ConfigurableResource]:
    legacy = any(spec.legacy for spec in config.syncs.values())
    out: dict[str, dg.ConfigurableResource] = {"storage": StorageResource(root=config.storage)}
    for b in config.destinations.values():
        out[workspace_key(b, legacy)] = BrazeWorkspace(
            destination=b.name,
            rest_endpoint=endpoint_for(b.instance, b.rest_endpoint),
            api_key_env=b.api_key_env,
        )
    return out
