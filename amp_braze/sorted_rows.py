"""Changing a few rows of a large table kept sorted by a unique key, without a join or a sort.

The tables a run rebuilds (customer profiles, attributes, the sync state) have millions of rows and
change in thousands. The rows to change are found by binary search on the key; a row whose key
stays is rewritten in place (each column copied once, the table's own columns left as they are);
only rows that leave or arrive cost a pass over the whole table (a filter, a sorted merge).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl


def positions(keys: pl.Series, wanted: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Where each of ``wanted`` is in the sorted ``keys``: (found mask over ``wanted``, the row
    of each found one)."""
    at = keys.search_sorted(wanted, side="left")
    if not keys.len():
        return pl.repeat(False, wanted.len(), eager=True), at.head(0)
    found = (at < keys.len()) & (keys.gather(at.clip(0, keys.len() - 1)) == wanted)
    found = found.fill_null(False)
    return found, at.filter(found)


def put(column: pl.Series, rows: pl.Series, values: pl.Series) -> pl.Series:
    """``column`` with ``values`` at ``rows``, as a new column (the one given is not changed)."""
    if not rows.len():
        return column
    if not (column.dtype.is_nested() or column.dtype == pl.Null):
        return column.scatter(rows, values)
    # Lists and structs cannot be scattered: gather the values to full length instead.
    where = pl.repeat(None, column.len(), dtype=pl.UInt32, eager=True)
    where = where.scatter(rows, pl.int_range(rows.len(), dtype=pl.UInt32, eager=True))
    full = values.gather(where)
    out = pl.select(pl.when(where.is_not_null()).then(full).otherwise(column))
    return out.to_series().alias(column.name)


def put_columns(table: pl.DataFrame, edits: dict[str, tuple[pl.Series, pl.Series]]) -> pl.DataFrame:
    """``table`` with, per column named in ``edits``, its (rows, values) written in: the columns
    are written on polars' threads at once (each write is one copy of a column)."""
    with ThreadPoolExecutor(pl.thread_pool_size()) as pool:  # the GIL is released while copying
        written = pool.map(lambda c: put(table.get_column(c), *edits[c]), list(edits))
        return table.with_columns(written)


SLICE_ROWS = 250_000  # rows of a stored table read (and changed) at a time


def replace_rows(
    table: pl.DataFrame | pl.LazyFrame, key: str, new: pl.DataFrame, gone: pl.Series | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``table`` (sorted by the unique, non-null ``key``) without the rows whose key is in ``gone``,
    and with ``new``'s rows (unique keys, any order) in place of the rows with their keys; sorted.
    Also returns the rows taken out (those with a key in ``gone`` or ``new``), in table order.

    Equal to ``table.filter(~key.is_in(gone | new keys)).merge_sorted(new.sort(key))``. A lazy
    ``table`` (a stored one) is read a slice at a time, each slice changed as it comes: the whole
    table and its changed copy are never in memory together."""
    frame = table.lazy()
    columns = frame.collect_schema()
    keys = frame.select(key).collect().get_column(key)
    new = new.select(columns.names()).cast(dict(columns)).sort(key)
    found, at = positions(keys, new.get_column(key))
    changed = new.filter(found)
    taken = pl.repeat(False, keys.len(), eager=True).scatter(at, True)
    leave = None  # rows to drop, as a mask over the table
    if gone is not None and gone.len():
        gone = gone.filter(~gone.is_in(new.get_column(key).implode())).unique().sort()
        _, rows = positions(keys, gone)
        if rows.len():
            leave = pl.repeat(True, keys.len(), eager=True).scatter(rows, False)
            taken = taken | ~leave
    height, step = keys.len(), SLICE_ROWS if isinstance(table, pl.LazyFrame) else keys.len()
    del keys
    parts, old = [], []
    for lo in range(0, height, max(step, 1)):
        part = frame.slice(lo, step).collect() if isinstance(table, pl.LazyFrame) else table
        old.append(part.filter(taken.slice(lo, part.height)))
        here = (at >= lo) & (at < lo + part.height)
        rows = at.filter(here) - lo
        part = put_columns(
            part, {c: (rows, changed.get_column(c).filter(here)) for c in columns if c != key}
        )
        parts.append(part.filter(leave.slice(lo, part.height)) if leave is not None else part)
    out = pl.concat(parts, rechunk=False) if parts else pl.DataFrame(schema=columns)
    arriving = new.filter(~found)
    if arriving.height:
        out = out.lazy().merge_sorted(arriving.lazy(), key=key).collect()
    return out, pl.concat(old) if old else pl.DataFrame(schema=columns)
