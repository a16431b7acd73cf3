"""Materialization metadata as plain values, so tests compare numbers and text, not wrappers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Each entry's value: a MetadataValue's ``.value`` (a number, text, Markdown, a TableSchema)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def materialized(result: Any) -> dict[str, dict[str, Any]]:
    """The metadata of every asset a run materialized, by asset key, as plain values."""
    return {
        e.asset_key.to_user_string(): plain(e.materialization.metadata)
        for e in result.get_asset_materialization_events()
    }


def from_graphql(entries: list[dict]) -> dict[str, Any]:
    """The webserver's ``metadataEntries`` (Int and Float entries) as plain numbers by label."""
    return {e["label"]: e.get("intValue", e.get("floatValue")) for e in entries}


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of a Markdown table (header and rule left out), each cell stripped."""
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in markdown.splitlines()[2:]]
