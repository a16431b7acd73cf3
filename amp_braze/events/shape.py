"""What every event stream's rows share: the columns a query must return, ``time`` in UTC, the
first rule a row breaks, properties and their limits, JSON fragments. Polars expressions only."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.identifiers import ID, id_expr, id_problem, identifier_columns
from amp_braze.braze.payload import fragment, wire

EVENT_ID, TIME = "event_id", "time"
RULE = "__rule"  # the first rule a row breaks (null: none)
TS = "__time"  # time as UTC
HASH = "__hash"  # the query row's hash: a row sent and later changed is counted, not resent
DUP = "__dup"
STATE = "__state"  # new | uncertain (resent) | split (a purchase of over 100: checked per part)
WIRE_TIME = "%Y-%m-%dT%H:%M:%S%.3fZ"
_NULLS = (r',"[A-Za-z0-9_]+":null', r'"[A-Za-z0-9_]+":null,?')  # members a JSON text leaves out


class EventsError(ValueError):
    """A stream's query does not return what its type needs (a column missing, of a type that
    cannot be sent): no row of it could be sent, so the run stops and says which."""


def required_columns(df: pl.DataFrame, identifier: str, stream: str) -> None:
    need = [*identifier_columns(identifier), EVENT_ID, TIME]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise EventsError(
            f"events.{stream}.sql: the query returns no {', '.join(missing)} (it returns: "
            f"{', '.join(df.columns)}); an event stream's query returns the identifier, "
            "event_id, time and the fields of its type"
        )


def utc_time(dtype: pl.DataType) -> pl.Expr:
    """``time`` as a UTC datetime: a datetime with a zone, a naive one taken as UTC, a date as
    midnight UTC, or ISO 8601 text (with an offset or ``Z``, or naive: UTC); null when not."""
    c = pl.col(TIME)
    if isinstance(dtype, pl.Datetime):
        t = c.dt.cast_time_unit("us")
        return (
            t.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else t.dt.convert_time_zone("UTC")
        )
    if dtype == pl.Date:
        return c.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype != pl.String:
        return pl.lit(None, pl.Datetime("us", "UTC"))
    s = c.str.strip_chars().str.replace(r"Z$", "+00:00").str.replace(" ", "T", literal=True)
    naive = [
        s.str.to_datetime(f, time_unit="us", strict=False).dt.replace_time_zone("UTC")
        for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")
    ]
    date = s.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    return pl.coalesce(
        s.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False),
        *naive,
        date.dt.replace_time_zone("UTC"),
    )


def common_rules(df: pl.DataFrame, identifier: str, now: datetime) -> list[pl.Expr]:
    """The rules of every type, in order: identifier, event_id, time."""
    eid = pl.col(EVENT_ID)
    late = pl.lit(now).cast(pl.Datetime("us", "UTC")) + pl.duration(
        seconds=er.FUTURE_TOLERANCE.total_seconds()
    )
    return [
        id_problem(identifier),
        pl.when(eid.is_null() | (eid == "")).then(pl.lit("event_id_missing")),
        pl.when(pl.col(DUP)).then(pl.lit("event_id_duplicate")),
        pl.when(pl.col(TS).is_null()).then(pl.lit("time_invalid")),
        pl.when(pl.col(TS) > late).then(pl.lit("time_in_future")),
    ]


def keyed(df: pl.DataFrame) -> pl.DataFrame:
    """The query's rows with a text ``event_id``, the row's hash and ``__dup`` (its event_id is
    on another, different row); rows that are exact duplicates (a query that joins one row
    twice) collapse into one. Cheap on every row (distinct hashes of the ids prove there is no
    duplicate): the rules run only on rows to send."""
    df = df.with_columns(pl.col(EVENT_ID).cast(pl.String).str.strip_chars())
    df = df.with_columns(pl.Series(HASH, df.hash_rows(seed=0)))
    ids = df.get_column(EVENT_ID).hash(1)
    if ids.n_unique() == df.height:
        return df.with_columns(pl.lit(False).alias(DUP))
    maybe = ids.is_duplicated()
    twins = df.filter(maybe).unique([EVENT_ID, HASH], maintain_order=True)
    return pl.concat(
        [
            df.filter(~maybe).with_columns(pl.lit(False).alias(DUP)),
            twins.with_columns(pl.col(EVENT_ID).is_duplicated().alias(DUP)),
        ]
    )


def prepared(df: pl.DataFrame, identifier: str) -> pl.DataFrame:
    """Keyed rows with ``__id`` and ``__time``."""
    return df.with_columns(id_expr(identifier), utc_time(df.schema[TIME]).alias(TS))


def first_rule(rules: list[pl.Expr]) -> pl.Expr:
    return pl.coalesce([r.cast(pl.String) for r in rules]).alias(RULE)


def wire_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """A property's value as it goes on the wire: decimals as floats, times as ISO 8601."""
    if isinstance(dtype, pl.Decimal):
        return pl.col(name).cast(pl.Float64)
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return wire(name, dtype)
    if dtype in (pl.Time, pl.Duration) or dtype == pl.Binary or isinstance(dtype, pl.Categorical):
        return pl.col(name).cast(pl.String)
    return pl.col(name)


def without_nulls(json: pl.Expr) -> pl.Expr:
    """A JSON text without its ``"key":null`` members (an unset optional field is left out)."""
    for pattern in _NULLS:
        json = json.str.replace_all(pattern, "")
    return json


def members(schema: pl.Schema, columns: list[str]) -> list[pl.Expr]:
    """``"col":<value>`` for each column, null where the value is null (left out)."""
    out = []
    for c in columns:
        f = fragment(c, wire_value(c, schema[c]))
        if isinstance(schema[c], (pl.List, pl.Array, pl.Struct)):
            f = without_nulls(f)
        out.append(pl.when(pl.col(c).is_not_null()).then(f))
    return out


def json_object(parts: list[pl.Expr]) -> pl.Expr:
    return pl.concat_str(pl.lit("{"), pl.concat_str(parts, separator=",", ignore_nulls=True),
                         pl.lit("}"))  # fmt: skip


def property_rules(schema: pl.Schema, props: list[str], reserved: frozenset[str]) -> list[pl.Expr]:
    """Braze's limits on custom event and purchase properties, as rules (a whole-column problem
    is every row's rule)."""
    rules: list[pl.Expr] = []
    for c in props:
        if c in reserved:
            rules.append(pl.lit(f"reserved_key: {c}"))
        elif not c or c.startswith("$") or len(c) > er.MAX_PROPERTY_KEY_CHARS:
            rules.append(pl.lit(f"property_key_invalid: {c[:40]}"))
    if len(props) > er.MAX_PROPERTIES:
        rules.append(pl.lit("too_many_properties"))
    nested = []
    for c in props:
        dt = schema[c]
        if dt == pl.String:
            too_long = pl.col(c).str.len_chars() > er.MAX_PROPERTY_STRING_CHARS
            rules.append(pl.when(too_long).then(pl.lit(f"property_too_long: {c}")))
        elif dt.is_float():
            bad = pl.col(c).is_nan() | pl.col(c).is_infinite()
            rules.append(pl.when(bad).then(pl.lit(f"property_not_finite: {c}")))
        elif isinstance(dt, (pl.List, pl.Array, pl.Struct)):
            nested.append(c)
    if nested:
        size = pl.sum_horizontal(
            [fragment(c, pl.col(c)).str.len_bytes().fill_null(0) for c in props]
        )
        rules.append(
            pl.when(size > er.MAX_NESTED_PROPERTIES_BYTES).then(pl.lit("properties_too_large"))
        )
    return rules


def properties_member(schema: pl.Schema, props: list[str], key: str = "properties") -> pl.Expr:
    """``"properties":{...}`` of the non-null properties (null when there are none)."""
    body = pl.concat_str(members(schema, props), separator=",", ignore_nulls=True)
    return pl.when(body.str.len_bytes() > 0).then(
        pl.concat_str(pl.lit(f'"{key}":{{'), body, pl.lit("}"))
    )


def time_member() -> pl.Expr:
    return pl.concat_str(pl.lit('"time":"'), pl.col(TS).dt.strftime(WIRE_TIME), pl.lit('"'))


def currency_rule(column: str = "currency") -> pl.Expr:
    c = pl.col(column)
    bad = c.is_null() | ~c.is_in(sorted(er.currency_codes()))
    return pl.when(bad).then(pl.lit("currency_invalid" if column == "currency" else
                                    f"currency_invalid: {column}"))  # fmt: skip


__all__ = ["ID", "EVENT_ID", "TIME", "RULE", "TS"]
