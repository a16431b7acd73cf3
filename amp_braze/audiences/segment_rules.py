"""Rule segments ("no SQL"): nested all/any/not of {attribute, op, value}, compiled to one polars
expression over braze_customer_attributes. Never a loop over rows. The grammar itself is checked
when the configuration loads (amp_braze.config.rules).

Semantics, chosen to match what a marketer expects: a condition on a missing value is false, except
``!=`` and ``not_in``, which are true for a missing value ("tier is not gold" includes unknown tiers).
``between`` is inclusive. ``within_last_days`` is true for a date or time in the last N days (up to
now, inclusive). ``contains`` works on text (substring) and on arrays (element).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from amp_braze.config import ConfigError

_ORDER_OPS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}


def _is_temporal(dtype: pl.DataType) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


def _literal(value: Any, dtype: pl.DataType, key: str) -> Any:
    """Turn a YAML value into one comparable with the column."""
    if value is None:
        raise ConfigError(key, "a value of null is not allowed; use op is_null")
    if dtype == pl.Date:
        try:
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(key, f"{value!r} is not a date (YYYY-MM-DD)") from None
    if isinstance(dtype, pl.Datetime):
        try:
            v = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(key, f"{value!r} is not a date-time (ISO 8601)") from None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            v = dt.datetime.combine(value, dt.time())
        if dtype.time_zone and v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v
    if dtype.is_numeric():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                key, f"{value!r} is not a number, but the attribute is numeric ({dtype})"
            )
        return value
    if dtype == pl.Boolean:
        if not isinstance(value, bool):
            raise ConfigError(
                key, f"{value!r} is not true or false, but the attribute is a boolean"
            )
        return value
    if dtype == pl.String:
        if isinstance(value, dict | list):
            raise ConfigError(key, f"{value!r} is not a text value")
        return str(value) if not isinstance(value, bool) else str(value).lower()
    return value


def compile_rule(
    rule: dict, schema: pl.Schema, key: str, now: dt.datetime | None = None
) -> pl.Expr:
    """One boolean expression (never null) for a validated rule tree; unknown attributes and type
    mismatches raise ConfigError naming the key."""
    now = now or dt.datetime.now(dt.UTC)
    if "all" in rule:
        return pl.all_horizontal(
            [compile_rule(r, schema, f"{key}.all[{i}]", now) for i, r in enumerate(rule["all"])]
        )
    if "any" in rule:
        return pl.any_horizontal(
            [compile_rule(r, schema, f"{key}.any[{i}]", now) for i, r in enumerate(rule["any"])]
        )
    if "not" in rule:
        return ~compile_rule(rule["not"], schema, f"{key}.not", now)
    return _condition(rule, schema, key, now).fill_null(False)


def _condition(rule: dict, schema: pl.Schema, key: str, now: dt.datetime) -> pl.Expr:
    attr, op = rule["attribute"], rule["op"]
    if attr not in schema:
        known = ", ".join(c for c in schema if c != "__id")
        raise ConfigError(
            f"{key}.attribute", f"unknown attribute {attr!r}; braze_customer_attributes has {known}"
        )
    dtype = schema[attr]
    c = pl.col(attr)
    vkey = f"{key}.value"
    if op == "is_null":
        return c.is_null()
    if op == "not_null":
        return c.is_not_null()
    value = rule.get("value")
    if op == "=":
        return c == _literal(value, dtype, vkey)
    if op == "!=":
        return c.ne_missing(_literal(value, dtype, vkey))
    if op in _ORDER_OPS:
        if not (dtype.is_numeric() or _is_temporal(dtype) or dtype == pl.String):
            raise ConfigError(
                f"{key}.op", f"op {op} needs a number, date or text attribute; {attr!r} is {dtype}"
            )
        return getattr(c, _ORDER_OPS[op])(_literal(value, dtype, vkey))
    if op in ("in", "not_in"):
        values = [_literal(v, dtype, f"{vkey}[{i}]") for i, v in enumerate(value)]
        member = c.is_in(pl.Series(values, dtype=dtype).implode())
        return member if op == "in" else ~member.fill_null(False)
    if op == "between":
        lo, hi = (_literal(v, dtype, f"{vkey}[{i}]") for i, v in enumerate(value))
        return (c >= lo) & (c <= hi)
    if op == "contains":
        if isinstance(dtype, pl.List):
            return c.list.contains(_literal(value, dtype.inner, vkey))
        if dtype != pl.String:
            raise ConfigError(
                f"{key}.op", f"op contains needs a text or array attribute; {attr!r} is {dtype}"
            )
        return c.str.contains(str(value), literal=True)
    if op == "starts_with":
        if dtype != pl.String:
            raise ConfigError(
                f"{key}.op", f"op starts_with needs a text attribute; {attr!r} is {dtype}"
            )
        return c.str.starts_with(str(value))
    if op == "within_last_days":
        if not _is_temporal(dtype):
            raise ConfigError(
                f"{key}.op",
                f"op within_last_days needs a date or time attribute; {attr!r} is {dtype}",
            )
        if dtype == pl.Date:
            today = now.date()
            return (c >= today - dt.timedelta(days=float(value))) & (c <= today)
        ts = now if dtype.time_zone else now.replace(tzinfo=None)
        return (c >= ts - dt.timedelta(days=float(value))) & (c <= ts)
    raise ConfigError(f"{key}.op", f"unknown op {op!r}")
