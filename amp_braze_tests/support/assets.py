"""Picking assets out of a code location's Definitions."""

from __future__ import annotations

import dagster as dg


def assets_named(defs: dg.Definitions, *names: str) -> list:
    """The assets definitions that hold any of these keys (a multi-asset holds several)."""
    return [a for a in defs.assets if any(k.to_user_string() in names for k in a.keys)]
