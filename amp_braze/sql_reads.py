"""What a user's SQL query reads and returns, found by parsing it (sqlglot), not by running it:
the tables give the asset graph its edges, the output columns tell which attributes a sync manages."""

from __future__ import annotations

import sqlglot
from sqlglot import exp


def _parse(sql: str) -> list[exp.Expression] | None:
    try:
        return [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError:
        return None


def tables_read(sql: str) -> set[str] | None:
    """The tables a query reads (common table expressions left out); None when the query cannot
    be parsed (polars then says what is wrong when it runs)."""
    statements = _parse(sql)
    if statements is None:
        return None
    ctes = {c.alias_or_name for s in statements for c in s.find_all(exp.CTE)}
    return {t.name for s in statements for t in s.find_all(exp.Table)} - ctes


def output_columns(sql: str) -> list[str] | None:
    """The names of the columns a query returns; None when they cannot be known without running
    it (a ``*``, or a query that does not parse)."""
    statements = _parse(sql)
    if not statements or not isinstance(statements[-1], exp.Query):
        return None
    query = statements[-1]
    if any(isinstance(e, exp.Star) or e.find(exp.Star) for e in query.selects):
        return None
    return list(query.named_selects)
