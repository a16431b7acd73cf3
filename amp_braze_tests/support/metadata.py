"""Materialization metadata as plain values, so tests compare numbers and text, not wrappers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg


def plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Each entry's value: a MetadataValue's ``.value`` (a number, text, Markdown, a TableSchema);
    a table's rows as dicts, in order."""
    return {k: _plain(v) for k, v in metadata.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dg.TableMetadataValue):
        return [r.data for r in value.records]
    return getattr(value, "value", value)


def materialized(result: Any) -> dict[str, dict[str, Any]]:
    """The metadata of every asset a run materialized, by asset key, as plain values."""
    return {
        e.asset_key.to_user_string(): plain(e.materialization.metadata)
        for e in result.get_asset_materialization_events()
    }


def from_graphql(entries: list[dict]) -> dict[str, Any]:
    """The webserver's ``metadataEntries`` (Int and Float entries) as plain numbers by label."""
    return {e["label"]: e.get("intValue", e.get("floatValue")) for e in entries}
