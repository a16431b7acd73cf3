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


def cross_customer(sql: str, local: set[str], keys: set[str]) -> str | None:
    """Why a query's result for some customers would depend on other customers' rows, or None
    when it keeps customers apart: then running it over each shard's rows of the ``local`` tables
    (the other tables whole) and putting the results together gives what one run over everyone
    gives. Conservative: what it cannot show to be key-local it names."""
    statements = _parse(sql)
    if not statements or not isinstance(statements[-1], exp.Query):
        return "it cannot be parsed, so whether it keeps customers apart cannot be checked"
    query = statements[-1]
    ctes = {c.alias_or_name: c.this for c in query.find_all(exp.CTE)}
    scope = _Scope(local, keys, ctes)
    problem = scope.rooted(query)
    if problem:
        return problem
    for select in query.find_all(exp.Select):
        problem = scope.select_problem(select)
        if problem:
            return problem
    return None


class _Scope:
    """The tables split by customer, the key columns, and the query's common table expressions."""

    def __init__(self, local: set[str], keys: set[str], ctes: dict[str, exp.Expression]):
        self.local, self.keys, self.ctes = local, keys, ctes

    def reads_local(self, node: exp.Expression, seen: frozenset[str] = frozenset()) -> bool:
        for t in node.find_all(exp.Table):
            if t.name in self.local and t.name not in self.ctes:
                return True
            if t.name in self.ctes and t.name not in seen:
                if self.reads_local(self.ctes[t.name], seen | {t.name}):
                    return True
        return False

    def rooted(self, node: exp.Expression, seen: frozenset[str] = frozenset()) -> str | None:
        """Whether every row of ``node`` comes from one row of a split table."""
        if isinstance(node, exp.Subquery):
            return self.rooted(node.this, seen)
        if isinstance(node, exp.SetOperation):
            return self.rooted(node.left, seen) or self.rooted(node.right, seen)
        if isinstance(node, exp.Table):
            if node.name in self.ctes and node.name not in seen:
                return self.rooted(self.ctes[node.name], seen | {node.name})
            if node.name in self.local:
                return None
            return f"its rows come from {node.name}, which is not split by customer"
        if not isinstance(node, exp.Select):
            return f"its rows come from {node.sql()[:60]}, which is not split by customer"
        source = node.args.get("from_")
        if source is None:
            return "it reads no table split by customer"
        problem = self.rooted(source.this, seen)
        if problem:
            return problem
        for join in node.args.get("joins") or []:
            if join.side in ("RIGHT", "FULL"):
                return (
                    f"its {join.side} JOIN of {join.this.sql()[:60]} keeps rows that belong to "
                    "no customer of the shard"
                )
        return None

    def _key(self, node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name in self.keys

    def _own(self, node: exp.Expression, select: exp.Select) -> bool:
        """Whether ``node`` belongs to ``select`` itself, not to a query nested in it."""
        return node.find_ancestor(exp.Select) is select

    def select_problem(self, select: exp.Select) -> str | None:
        source = select.args.get("from_")
        joins = select.args.get("joins") or []
        relations = ([source.this] if source else []) + [j.this for j in joins]
        local = [r for r in relations if self.reads_local(r)]
        if not local:
            return None  # over tables every shard reads whole: the same in every shard
        keys = ", ".join(sorted(self.keys))
        group = select.args.get("group")
        grouped = group is not None and any(self._key(e) for e in group.expressions)
        aggregates = [
            a
            for a in select.find_all(exp.AggFunc)
            if self._own(a, select) and not a.find_ancestor(exp.Window)
        ]
        if (aggregates or group is not None) and not grouped:
            what = aggregates[0].sql()[:60] if aggregates else group.sql()[:60]
            return f"{what} adds up rows of many customers (group by the customer key: {keys})"
        for w in select.find_all(exp.Window):
            if self._own(w, select) and not any(
                self._key(e) for e in w.args.get("partition_by") or []
            ):
                return (
                    f"the window {w.sql()[:60]} looks across customers (partition it by the "
                    f"customer key: {keys})"
                )
        for clause in ("limit", "offset", "fetch"):
            if select.args.get(clause) is not None:
                return f"its {clause.upper()} picks rows among all customers"
        if select.args.get("distinct") is not None and not any(
            self._key(e.unalias()) for e in select.expressions
        ):
            return f"its DISTINCT merges rows of different customers (select the key: {keys})"
        if len(local) > 1:
            for join in joins:
                on = join.args.get("on")
                pairs = list(on.find_all(exp.EQ)) if on is not None else []
                if not any(self._key(p.left) and self._key(p.right) for p in pairs):
                    return (
                        f"its join of {join.this.sql()[:60]} pairs rows of different customers "
                        f"(join on the customer key: {keys})"
                    )
        for sub in select.find_all(exp.Subquery, exp.Exists, exp.In):
            nested = sub if isinstance(sub, exp.Subquery) else sub.args.get("query")
            if nested is None or sub in relations or not self._own(sub, select):
                continue
            if self.reads_local(nested):
                return (
                    f"its subquery {nested.sql()[:60]} reads other customers' rows of a table "
                    "split by customer"
                )
        return None
