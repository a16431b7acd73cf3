"""The customer_360 area as Dagster definitions: the feeds, customer_profiles and
braze_customer_attributes."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import Config
from amp_braze.profiles.assets import profile_assets
from amp_braze.resources import storage_resource


def defs(config: Config) -> dg.Definitions:
    return dg.Definitions(
        assets=profile_assets(config), resources={"storage": storage_resource(config.storage)}
    )
