"""Identity resolution as Dagster definitions: identity_clusters, when ``identity:`` is
configured (nothing otherwise: feeds then share a customer_key)."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import Config
from amp_braze.identity.assets import identity_assets
from amp_braze.resources import storage_resource


def defs(config: Config) -> dg.Definitions:
    if config.identity is None:
        return dg.Definitions()
    return dg.Definitions(
        assets=identity_assets(config), resources={"storage": storage_resource(config.storage)}
    )
