"""The audiences area as Dagster definitions: segment_memberships and its size guard."""

from __future__ import annotations

import dagster as dg

from amp_braze.audiences.assets import audience_assets
from amp_braze.config import Config
from amp_braze.resources import storage_resource


def defs(config: Config) -> dg.Definitions:
    return dg.Definitions(
        assets=audience_assets(config), resources={"storage": storage_resource(config.storage)}
    )
