"""Metadata the Dagster UI understands (row counts, column schemas), built from polars frames."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl


def column_schema(schema: pl.Schema | dict[str, pl.DataType]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=name, type=str(dtype)) for name, dtype in schema.items()]
    )


def table_metadata(df: pl.DataFrame, uri: str | None = None) -> dict[str, Any]:
    """``dagster/row_count`` and ``dagster/column_schema`` (plus where the table lives)."""
    meta: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(df.height),
        "dagster/column_schema": column_schema(df.schema),
    }
    if uri:
        meta["dagster/uri"] = dg.MetadataValue.path(uri)
    return meta


def markdown_table(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    """A small Markdown table for the UI (a few rows, never a whole dataset)."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in cols) + " |")
    return dg.MetadataValue.md("\n".join(lines))
