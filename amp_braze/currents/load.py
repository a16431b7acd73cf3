"""Loading one queue hour of Currents Avro files, losslessly, with bad files set aside.

Each file is read with polars' native Avro reader (the faster one; see benchmarks/RESULTS.md); a file
polars cannot read goes through fastavro; a file neither can read (corrupt, truncated, not Avro) is quarantined with its
key and the reason, and the rest of the hour loads. Every field of every event type is kept (one
table per event type, whatever fields it carries, so new optional fields need no code change), plus
a long table of the fields common to all events, deduplicated on ``id``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fastavro
import orjson
import polars as pl

from amp_braze.currents.keys import CurrentsFile, event_type_from_schema

UTC = pl.Datetime("us", "UTC")
# The normalised long table: the fields most event types share (Braze's Currents event glossary).
COMMON: dict[str, pl.DataType] = {
    "event_type": pl.String(),
    "id": pl.String(),
    "user_id": pl.String(),
    "external_user_id": pl.String(),
    "time": UTC,
    "timezone": pl.String(),
    "app_id": pl.String(),
    "platform": pl.String(),
    "campaign_id": pl.String(),
    "message_variation_id": pl.String(),
    "canvas_id": pl.String(),
    "canvas_variation_id": pl.String(),
    "canvas_step_id": pl.String(),
    "dispatch_id": pl.String(),
    "send_id": pl.String(),
    "email_address": pl.String(),
    "name": pl.String(),  # custom events
    "product_id": pl.String(),  # purchases
    "price": pl.Float64(),
    "currency": pl.String(),
    "session_id": pl.String(),
}


@dataclass
class HourLoad:
    by_type: dict[str, pl.DataFrame] = field(default_factory=dict)  # lossless, deduplicated
    events: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=COMMON))
    files: int = 0
    reader: dict[str, int] = field(default_factory=dict)  # files read by polars / fastavro
    quarantined: list[dict] = field(default_factory=list)  # {key, reason}
    duplicates: int = 0
    raw_events: int = 0


def polars_can_read(schema: object) -> bool:
    """polars' Avro reader has no maps and no unions of several non-null types (it panics on them)."""
    if isinstance(schema, list):
        non_null = [t for t in schema if t != "null"]
        return len(non_null) <= 1 and all(polars_can_read(t) for t in non_null)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "map":
            return False
        if kind == "record":
            return all(polars_can_read(f["type"]) for f in schema.get("fields", []))
        if kind == "array":
            return polars_can_read(schema.get("items"))
        if isinstance(kind, dict | list):
            return polars_can_read(kind)
    return True


def read_avro(data: bytes) -> tuple[pl.DataFrame, str, str]:
    """(frame, event type from the writer schema, reader used); raises ValueError for a bad file."""
    try:
        header = fastavro.reader(io.BytesIO(data))
        writer_schema = header.writer_schema
    except Exception as e:  # not Avro at all, or a broken header
        raise ValueError(f"not an Avro container file: {e}") from None
    name = writer_schema.get("name") if isinstance(writer_schema, dict) else None
    event_type = event_type_from_schema(name)
    if polars_can_read(writer_schema):
        try:
            return pl.read_avro(io.BytesIO(data)), event_type, "polars"
        except (Exception, pl.exceptions.PanicException):
            pass  # fastavro below reads what polars cannot, or says why nobody can
    try:
        records = list(fastavro.reader(io.BytesIO(data)))
    except Exception as e:
        raise ValueError(f"unreadable Avro data (corrupt or truncated): {e}") from None
    try:
        return pl.from_dicts(records, infer_schema_length=None), event_type, "fastavro"
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        # Values of several types in one field (an Avro union): keep them all, as text.
        texts = [{k: _text(v) for k, v in r.items()} for r in records]
        return pl.from_dicts(texts, infer_schema_length=None), event_type, "fastavro"


def _text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, dict | list):
        return orjson.dumps(v, default=str).decode()
    return str(v)


def normalise(df: pl.DataFrame, event_type: str) -> pl.DataFrame:
    """The common fields of one event type's frame, typed; missing ones are null."""
    cols = []
    for name, dtype in COMMON.items():
        if name == "event_type":
            cols.append(pl.lit(event_type).alias(name))
        elif name not in df.columns:
            cols.append(pl.lit(None, dtype).alias(name))
        elif name == "time":
            cols.append(
                pl.from_epoch(pl.col("time").cast(pl.Int64), "s")
                .dt.replace_time_zone("UTC")
                .alias("time")
            )
        else:
            cols.append(pl.col(name).cast(dtype, strict=False).alias(name))
    return df.select(cols)


def load_hour(
    files: list[CurrentsFile], fetch: Callable[[str], bytes], workers: int = 8
) -> HourLoad:
    """Read every file of an hour; ``fetch`` returns a key's bytes (S3 GET)."""
    out = HourLoad(files=len(files))
    frames: dict[str, list[pl.DataFrame]] = {}

    def read(f: CurrentsFile) -> tuple[CurrentsFile, pl.DataFrame | None, str, str]:
        try:
            df, schema_type, reader = read_avro(fetch(f.key))
            return f, df, f.event_type or schema_type, reader
        except ValueError as e:
            return f, None, str(e), ""

    with ThreadPoolExecutor(workers) as pool:
        for f, df, what, reader in pool.map(read, files):
            if df is None:
                out.quarantined.append({"key": f.key, "reason": what})
                continue
            out.reader[reader] = out.reader.get(reader, 0) + 1
            if df.height:
                frames.setdefault(what, []).append(df)
    longs = []
    for event_type, parts in sorted(frames.items()):
        df = pl.concat(parts, how="diagonal_relaxed")
        out.raw_events += df.height
        # Events without an id cannot be told apart: each is kept (only ids dedupe).
        unique = (
            df.filter(pl.col("id").is_null() | pl.col("id").is_first_distinct())
            if "id" in df.columns
            else df
        )
        out.duplicates += df.height - unique.height
        out.by_type[event_type] = unique
        longs.append(normalise(unique, event_type))
    if longs:
        out.events = pl.concat(longs)
    return out
