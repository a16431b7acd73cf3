"""Braze Currents as Dagster definitions (nothing without a ``currents:`` section)."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import Config
from amp_braze.currents.assets import currents_defs


def defs(config: Config) -> dg.Definitions:
    return currents_defs(config)
