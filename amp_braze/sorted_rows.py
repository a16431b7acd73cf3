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


def replace_rows(
    table: pl.DataFrame, key: str, new: pl.DataFrame, gone: pl.Series | None = None
) -> pl.DataFrame:
    """``table`` (sorted by the unique, non-null ``key``) without the rows whose key is in ``gone``,
    and with ``new``'s rows (unique keys, any order) in place of the rows with their keys; sorted.

    Equal to ``table.filter(~key.is_in(gone | new keys)).merge_sorted(new.sort(key))``."""
    new = new.select(table.columns).cast(dict(table.schema)).sort(key)
    found, rows = positions(table.get_column(key), new.get_column(key))
    kept = new.filter(found)
    out = put_columns(table, {c: (rows, kept.get_column(c)) for c in table.columns if c != key})
    if gone is not None and gone.len():
        gone = gone.filter(~gone.is_in(new.get_column(key).implode())).unique().sort()
        _, at = positions(out.get_column(key), gone)
        if at.len():
            mask = pl.repeat(True, out.height, eager=True).scatter(at, False)
            out = out.filter(mask)
    arriving = new.filter(~found)
    if arriving.height:
        out = out.lazy().merge_sorted(arriving.lazy(), key=key).collect()
    return out
