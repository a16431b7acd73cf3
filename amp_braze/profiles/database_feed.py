"""A database table (or query) read into its feed table, the whole of it or only what changed.

A full read streams the table's rows in batches into the feed's Parquet table. With ``updated_at``
the next read takes only the rows updated (or soft-deleted, with ``deleted_at``) since the newest
``updated_at`` read so far minus ``lookback``, with every other row of the keys they hold, and
merges them into the stored table by key: the stored rows of every key it saw leave, the key's
rows as the database holds them now come in.

A *key scan* reads the key column whole (every ``delete_scan_every`` incremental reads) and makes
the merge exact where timestamps alone cannot: a key the table no longer has leaves (a hard delete); a key whose number of rows
differs from what the feed holds (a row inserted late with an old ``updated_at``, one of a
duplicated key's rows deleted) has all its rows read again. What a read cannot see is a row
changed without its ``updated_at`` moving past the lookback: that is the column's contract.

Rows without a key are left out (they cannot be merged, and no profile is built from them);
they are counted in ``rows_without_key`` on full reads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from amp_braze.braze import phones
from amp_braze.config import SourceConfig
from amp_braze.profiles import databases as db
from amp_braze.profiles.feeds import typed
from amp_braze.storage import Storage, parts
from amp_braze.storage.base import non_null_counts

READER_VERSION = 1  # bump when the table a read gives for the same rows changes
FOOTER_KEY = "database_read"
DELETED = "__amp_deleted"  # the soft-delete flag of a changed row, while it is merged
REREAD_CHUNK = 1_000  # keys per `IN (...)` list when rows are read again by key
# Rows typed at once in a full read: the phone rule has a cost per call (a few steps per region
# of a calling code) that a driver's batch of about 100,000 rows pays too often; one part's rows
# (parts.PART_ROWS) keep the driver, the typing and the writer at work side by side.
TYPED_ROWS = parts.PART_ROWS


@dataclass
class DatabaseRead:
    """What one read did, for the asset's metadata."""

    uri: str
    rows: int  # rows the feed table holds now
    read: str  # "incremental" or "full"
    reason: str  # why a full read was full; what an incremental one took
    rows_read: int  # rows fetched from the database (a key scan's keys not included)
    rows_changed: int  # rows of the feed table that are new or differ from the last read
    rows_deleted: int  # keys the feed held that the table no longer has
    cursor: str | None  # the newest updated_at read so far (ISO 8601, UTC)
    key_scan: bool
    written: str  # how the table was written: "parts" (a full read), "changes" or "compacted"
    summary: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _key(src: SourceConfig) -> str:
    return src.customer_key or src.record_id


def _db_name(src: SourceConfig, column: str) -> str:
    """A column's name in the database (the configuration names it after ``columns:`` renames)."""
    inverse = {v: k for k, v in src.columns.items()}
    return inverse.get(column, column)


def _fingerprint(src: SourceConfig, schema: pl.Schema) -> str:
    """What the feed table depends on besides the rows: reading again when it changes (a column
    added, a rename, another cast) makes the table what a full read gives."""
    settings = src.model_dump(exclude={"lookback", "delete_scan_every", "upstream", "priority"})
    basis = [READER_VERSION, phones.METADATA_VERSION, pl.__version__, settings, str(schema)]
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _shape(src: SourceConfig, frame: pl.DataFrame, keep_deleted: bool = False) -> pl.DataFrame:
    """A batch from the database as the feed table holds it; rows without a key left out."""
    lf = typed(src, frame.lazy())
    if keep_deleted and src.deleted_at:
        lf = lf.with_columns(pl.col(src.deleted_at).is_not_null().alias(DELETED))
    return lf.filter(pl.col(_key(src)).is_not_null()).collect()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _newest(src: SourceConfig, frame: pl.DataFrame, cursor: datetime | None) -> datetime | None:
    if not src.updated_at or frame.height == 0:
        return cursor
    top = frame.get_column(src.updated_at).max()
    return top if cursor is None or (top is not None and top > cursor) else cursor


def _live(src: SourceConfig) -> str:
    return f" WHERE {db.quote(_db_name(src, src.deleted_at))} IS NULL" if src.deleted_at else ""


def read_database_feed(src: SourceConfig, store: Storage, table: str) -> DatabaseRead:
    """Read the feed into ``table``: only what changed when the last read allows it."""
    started = time.perf_counter()
    with db.connection(src) as conn:
        raw = db.schema(conn, src)
        db.check_types(src, raw)
        typed(src, pl.LazyFrame(schema=raw)).collect_schema()  # named columns exist
        fp = _fingerprint(src, raw)
        previous = store.table_snapshot(table) if store.table_exists(table) else None
        before = (previous.footer.get(FOOTER_KEY) or {}) if previous else {}
        if not src.updated_at:
            why = "no updated_at: the table is read whole"
        elif previous is None or not before:
            why = "first read"
        elif before.get("fingerprint") != fp:
            why = "the table's columns or the source's settings changed"
        elif before.get("cursor") is None:
            why = "no updated_at read yet"
        else:
            why = ""
        if why:
            result = _full(conn, src, store, table, raw, fp, why, previous)
        else:
            result = _incremental(conn, src, store, table, raw, fp, previous)
    result.seconds["total"] = time.perf_counter() - started
    return result


def _footer(src: SourceConfig, fp: str, cursor: datetime | None, since_scan: int) -> dict:
    return {"fingerprint": fp, "cursor": _iso(cursor), "reads_since_key_scan": since_scan}


def _summary(
    store: Storage, table: str, src: SourceConfig, without_key: int, hashes: list[pl.Series]
) -> dict[str, int]:
    """The table's key counts. ``hashes`` (the keys' 64-bit hashes, taken as the rows streamed
    by) answer without reading the table again when they are all different: then so are the keys.
    Equal hashes (duplicate keys, or once in a blue moon two keys that collide) mean counting the
    keys themselves."""
    key = pl.col(_key(src))
    every = pl.concat(hashes) if hashes else pl.Series([], dtype=pl.UInt64)
    rows = distinct = every.len()
    if every.n_unique() != rows:
        rows, distinct = store.scan_table(table).select(pl.len(), key.n_unique()).collect().row(0)
    label = "distinct_customers" if src.customer_key else "distinct_records"
    return {
        label: distinct,
        "rows_without_key": without_key,
        "duplicate_key_rows": rows - distinct,
    }


def _full(conn, src, store, table, raw, fp, why, previous) -> DatabaseRead:
    lap = time.perf_counter()
    every = db.columns_sql(src, raw)
    sql = f"SELECT {every} FROM {db.relation(src)}{_live(src)}"
    columns, batches = db.fetch(conn, src, sql, raw)
    shaped = typed(src, pl.LazyFrame(schema=columns)).collect_schema()
    state: dict[str, Any] = {"read": 0, "without_key": 0, "cursor": None, "hashes": []}

    def frames() -> Iterator[pl.DataFrame]:
        for batch in _gathered(batches, TYPED_ROWS):
            state["read"] += batch.height
            df = typed(src, batch.lazy()).collect()
            keyed = df.filter(pl.col(_key(src)).is_not_null())
            state["without_key"] += df.height - keyed.height
            state["cursor"] = _newest(src, keyed, state["cursor"])
            state["hashes"].append(keyed.get_column(_key(src)).hash(seed=0))
            yield keyed

    def footer() -> dict:
        return {FOOTER_KEY: _footer(src, fp, state["cursor"], 0)}

    old_keys = _stored_rows(previous, src) if previous is not None else None
    uri, rows = parts.write_stream(store, store.table_name(table), shaped, frames(), footer)
    read_s = time.perf_counter() - lap
    changed = deleted = rows
    if old_keys is not None:
        changed, deleted = _compare_full(store, table, src, old_keys)
    summary = _summary(store, table, src, state["without_key"], state["hashes"])
    _write_summary(store, table, summary)
    return DatabaseRead(
        uri=uri,
        rows=rows,
        read="full",
        reason=why,
        rows_read=state["read"],
        rows_changed=changed,
        rows_deleted=deleted if old_keys is not None else 0,
        cursor=_iso(state["cursor"]),
        key_scan=False,
        written="parts",
        summary=summary,
        seconds={"read and write": read_s},
    )


def _gathered(batches: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """The batches, joined into frames of at least ``rows`` rows (the last may hold fewer)."""
    held: list[pl.DataFrame] = []
    for batch in batches:
        held.append(batch)
        if sum(b.height for b in held) >= rows:
            yield pl.concat(held)
            held = []
    if held:
        yield pl.concat(held)


def _stored_rows(previous, src: SourceConfig) -> pl.DataFrame:
    """The last read's keys and row hashes: what a full read is compared against."""
    frame = previous.frame
    cols = frame.collect_schema().names()
    return frame.select(pl.col(_key(src)), pl.struct(cols).hash(0).alias("h")).collect()


def _compare_full(store, table, src, old: pl.DataFrame) -> tuple[int, int]:
    now = store.scan_table(table)
    cols = now.collect_schema().names()
    new = now.select(pl.col(_key(src)), pl.struct(cols).hash(0).alias("h")).collect()
    changed = new.join(old, on="h", how="anti").height
    deleted = old.select(_key(src)).unique().join(new, on=_key(src), how="anti").height
    return changed, deleted


def _merged_summary(
    src: SourceConfig, before: dict[str, int], rows: int, old: pl.DataFrame, new: pl.DataFrame
) -> dict[str, int]:
    """The summary after a merge, from the one before: every key of ``old`` (the rows that left)
    left whole, and ``new`` holds every row those keys have now."""
    label = "distinct_customers" if src.customer_key else "distinct_records"
    key = _key(src)
    distinct = before[label] - old.get_column(key).n_unique() + new.get_column(key).n_unique()
    return before | {label: distinct, "duplicate_key_rows": rows - distinct}


def _write_summary(store: Storage, table: str, summary: dict[str, int]) -> None:
    """The feed's summary beside its table (the table's own footer is written before the
    summary's distinct count can be taken from it)."""
    store.write_json(f"{store.table_name(table)}.summary.json", summary)


def read_summary(store: Storage, table: str) -> dict[str, int]:
    return store.read_json(f"{store.table_name(table)}.summary.json", {}) or {}


def _incremental(conn, src, store, table, raw, fp, previous) -> DatabaseRead:
    seconds: dict[str, float] = {}
    lap = time.perf_counter()
    before = previous.footer[FOOTER_KEY]
    cursor = datetime.fromisoformat(before["cursor"])
    since = (cursor - src.lookback).isoformat()
    kind, key = src.database.kind, _key(src)
    changed_where = [db.at_or_after(kind, _db_name(src, src.updated_at), since)]
    if src.deleted_at:
        changed_where.append(db.at_or_after(kind, _db_name(src, src.deleted_at), since))
    # Every row of each key that changed, so a key on several rows comes whole.
    db_key = db.quote(_db_name(src, key))
    sql = (
        f"SELECT {db.columns_sql(src, raw)} FROM {db.relation(src)} WHERE {db_key} IN "
        f"(SELECT {db_key} FROM {db.relation(src)} WHERE {' OR '.join(changed_where)})"
    )
    _, batches = db.fetch(conn, src, sql, raw)
    stored_schema = previous.frame.collect_schema()
    changed = _collect(src, batches, stored_schema, keep_deleted=True)
    rows_read = changed.height
    seconds["changed rows"] = time.perf_counter() - lap

    summary = read_summary(store, table)
    since_scan = int(before.get("reads_since_key_scan", 0)) + 1
    scan = since_scan >= src.delete_scan_every
    touched = changed.get_column(key).unique()
    live = changed.filter(~pl.col(DELETED)) if DELETED in changed.columns else changed
    live = live.drop(DELETED, strict=False)
    gone = pl.Series(key, [], pl.String)
    reread_keys = pl.Series(key, [], pl.String)
    if scan:
        lap = time.perf_counter()
        gone, reread_keys = _key_scan(conn, src, previous, changed, live, summary)
        seconds["key scan"] = time.perf_counter() - lap
        since_scan = 0
    reread = pl.DataFrame(schema=stored_schema)
    if reread_keys.len():
        lap = time.perf_counter()
        reread = _read_keys(conn, src, raw, reread_keys, stored_schema)
        rows_read += reread.height
        live = live.filter(~pl.col(key).is_in(reread_keys.implode()))
        seconds["rows read again"] = time.perf_counter() - lap
    new_rows = pl.concat([live.select(stored_schema.names()), reread])
    drop = pl.concat([touched, gone, reread_keys]).unique()

    lap = time.perf_counter()
    frame, dropped = previous.frame, drop.implode()
    old = frame.filter(pl.col(key).is_in(dropped)).collect()
    # Keys whose rows came back as they were (the lookback reads the last hour again) stay in
    # place: only keys that changed are written.
    same = _unchanged_keys(key, stored_schema, old, new_rows)
    if same.len():
        kept = ~pl.col(key).is_in(same.implode())
        old, new_rows, drop = (
            old.filter(kept),
            new_rows.filter(kept),
            drop.filter(~drop.is_in(same.implode())),
        )
    new_cursor = _newest(src, changed, cursor)
    # The new version's counts follow from the old one's: no pass over the rows kept.
    rows = previous.footer["rows"] - old.height + new_rows.height
    held, out, came = previous.footer["non_null"], non_null_counts(old), non_null_counts(new_rows)
    non_null = {c: held.get(c, 0) - out[c] + came[c] for c in stored_schema.names()}
    footer = {FOOTER_KEY: _footer(src, fp, new_cursor, since_scan)}
    head = store.table_name(table)
    uri, written = parts.write_changes(
        store, head, previous, key, new_rows, drop, rows, non_null, footer
    )
    seconds["merge and write"] = time.perf_counter() - lap
    hashes = pl.struct(stored_schema.names()).hash(0)
    rows_changed = new_rows.select(hashes.alias("h")).join(
        old.select(hashes.alias("h")), on="h", how="anti"
    )
    rows_deleted = old.select(key).unique().join(new_rows.select(key), on=key, how="anti")
    if summary:
        summary = _merged_summary(src, summary, rows, old, new_rows)
        _write_summary(store, table, summary)
    took = f"rows updated since {since} ({src.updated_at} >= newest read - lookback)"
    return DatabaseRead(
        uri=uri,
        rows=rows,
        read="incremental",
        reason=took + ("; key scan" if scan else ""),
        rows_read=rows_read,
        rows_changed=rows_changed.height,
        rows_deleted=rows_deleted.height,
        cursor=_iso(new_cursor),
        key_scan=scan,
        written=written,
        summary=summary,
        seconds=seconds,
    )


def _unchanged_keys(key: str, schema: pl.Schema, old: pl.DataFrame, new: pl.DataFrame) -> pl.Series:
    """The keys whose rows are the same in ``old`` and ``new`` (the same rows, as many times)."""
    hashes = pl.struct(schema.names()).hash(0).alias("h")

    def by_key(df: pl.DataFrame) -> pl.DataFrame:
        rows = df.select(pl.col(key), hashes).group_by(key).agg(pl.col("h").sort())
        return rows.select(
            key, pl.col("h").hash(0).alias("rows"), pl.col("h").list.len().alias("n")
        )

    return by_key(old).join(by_key(new), on=[key, "rows", "n"]).get_column(key)


def _collect(src, batches, stored_schema: pl.Schema, keep_deleted: bool) -> pl.DataFrame:
    frames = [_shape(src, b, keep_deleted) for b in batches]
    schema = dict(stored_schema) | (
        {DELETED: pl.Boolean()} if keep_deleted and src.deleted_at else {}
    )
    if not frames:
        return pl.DataFrame(schema=schema)
    df = pl.concat(frames, how="vertical_relaxed")
    if df.schema != pl.Schema(schema):
        df = df.select(pl.col(c).cast(t) for c, t in schema.items())
    return df


def _key_scan(conn, src, previous, changed: pl.DataFrame, live: pl.DataFrame, summary: dict):
    """(keys gone from the table, keys to read again): the table's keys and their row counts
    against what the feed holds with the changed rows merged. While every key is on one row on
    both sides (the usual case: the key is the table's primary key) sets of keys are compared,
    not counts."""
    key, kind = _key(src), src.database.kind
    db_key = _db_name(src, key)
    sql = (
        f"SELECT {db.as_text(kind, db_key)} AS {db.quote(key)} FROM {db.relation(src)}{_live(src)}"
    )
    _, batches = db.fetch(conn, src, sql)
    keys = pl.concat(
        [b.select(pl.col(key).cast(pl.String)) for b in batches]
        or [pl.DataFrame(schema={key: pl.String})]
    )
    keys = keys.drop_nulls()
    unique_held = summary.get("duplicate_key_rows", 1) == 0
    ordered = keys.get_column(key).sort() if unique_held else None
    if ordered is not None and not (ordered == ordered.shift(1)).any():
        held = previous.frame.select(key).collect()
        seen = pl.concat([held, live.select(key)])
        gone = seen.join(keys, on=key, how="anti").unique().get_column(key)
        known = pl.concat([held, changed.select(key)])
        reread = keys.join(known, on=key, how="anti").get_column(key)
        return gone, reread
    in_db = keys.group_by(key).len("n_db")
    held = previous.frame.select(key).collect().group_by(key).len("n_held")
    touched = changed.select(key).unique()
    in_changed = live.group_by(key).len("n_changed")
    both = in_db.join(held, on=key, how="full", coalesce=True).join(in_changed, on=key, how="left")
    both = both.with_columns(
        pl.col(key).is_in(touched.get_column(key).implode()).alias("touched"),
        pl.col("n_db").fill_null(0),
        pl.col("n_held").fill_null(0),
        pl.col("n_changed").fill_null(0),
    )
    gone = both.filter(pl.col("n_db") == 0).get_column(key)
    reread = both.filter(
        (pl.col("n_db") > 0)
        & pl.when(pl.col("touched"))
        .then(pl.col("n_db") != pl.col("n_changed"))
        .otherwise(pl.col("n_db") != pl.col("n_held"))
    ).get_column(key)
    return gone, reread


def _read_keys(conn, src, raw, keys: pl.Series, stored_schema: pl.Schema) -> pl.DataFrame:
    kind, key = src.database.kind, _key(src)
    col = db.as_text(kind, _db_name(src, key))
    live = f" AND {db.quote(_db_name(src, src.deleted_at))} IS NULL" if src.deleted_at else ""
    chunks = []
    values = keys.to_list()
    for lo in range(0, len(values), REREAD_CHUNK):
        chunk = db.string_list(values[lo : lo + REREAD_CHUNK])
        every = db.columns_sql(src, raw)
        sql = f"SELECT {every} FROM {db.relation(src)} WHERE {col} IN ({chunk}){live}"
        _, batches = db.fetch(conn, src, sql, raw)
        chunks.append(_collect(src, batches, stored_schema, keep_deleted=False))
    return pl.concat(chunks) if chunks else pl.DataFrame(schema=stored_schema)


def read_source(src: SourceConfig) -> pl.DataFrame:
    """A feed's rows in memory as its table would hold them, from a file or a database (for
    tools that look at a feed without storage: the identity benchmarks, tests)."""
    from amp_braze.profiles.feeds import read_feed

    if not src.is_database:
        return read_feed(src)
    with db.connection(src) as conn:
        raw = db.schema(conn, src)
        db.check_types(src, raw)
        sql = f"SELECT {db.columns_sql(src, raw)} FROM {db.relation(src)}{_live(src)}"
        columns, batches = db.fetch(conn, src, sql, raw)
        shaped = typed(src, pl.LazyFrame(schema=columns)).collect_schema()
        return _collect(src, batches, shaped, keep_deleted=False)
