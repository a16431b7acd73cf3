"""A table kept as immutable parts that its head file names: written a batch at a time, changed by
writing only what changed.

The head is the table's usual file (``tables/<table>.parquet``): no rows, the table's schema, and
a footer that counts the whole table (``rows``, ``non_null``) and names its layout under
``parts``:

- ``files``: the base parts, each written once and never rewritten;
- ``key``, ``drop``: a file of keys; the base's rows of those keys are not in the table;
- ``delta``: a file with every current row of the dropped keys (rows changed since the base).

The table is the base's rows whose key is not dropped, then the delta's rows. A change writes a
new drop file and a new delta file (a few percent of the table) and a new head; when the delta
grows past ``COMPACT_AT`` of the table, the change writes the table again as one new base.
Readers pin the head as for any table; the parts it names stay in place while that head or the
one before it names them (and at least ``KEEP_SECONDS`` after they were written), so a reader
that took a snapshot is not left without its files by the next write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl

# ``storage`` below is an ``amp_braze.storage.Storage`` and ``previous`` a ``Snapshot``: the
# storage base class reads heads through this module, so this module does not import it.
Storage = Snapshot = Any

PARTS_KEY = "parts"
PART_ROWS = 1_000_000  # rows a base part holds (a full read writes one part at a time)
COMPACT_AT = 0.10  # a delta with its dropped keys beyond this share of the rows: a new base
KEEP_SECONDS = 3600.0  # a part no head names is deleted only when it is older than this
PART_OPTIONS = {"compression": "lz4", "statistics": True}


def folder(head: str) -> str:
    """Where a head's parts live (``tables/sources/crm.parquet`` -> ``tables/sources/crm.parts``)."""
    return head.removesuffix(".parquet") + ".parts"


def _part_name(head: str, kind: str) -> str:
    return f"{folder(head)}/{time.time_ns():020d}-{kind}-{uuid.uuid4().hex}.parquet"


def _written_ns(name: str) -> int:
    try:
        return int(name.rsplit("/", 1)[-1].split("-", 1)[0])
    except ValueError:
        return 0


def named(layout: dict[str, Any] | None) -> set[str]:
    """The files a layout reads."""
    if not layout:
        return set()
    return set(layout["files"]) | {layout[k] for k in ("drop", "delta") if layout.get(k)}


def assemble(storage: Storage, layout: dict[str, Any], head: pl.LazyFrame) -> pl.LazyFrame:
    """The table a layout describes (``head``: the head's own scan, for the schema)."""
    base = storage.scan_parquet(layout["files"]) if layout["files"] else head
    if layout.get("drop"):
        dropped = storage.read_parquet(layout["drop"]).to_series()
        base = base.filter(~pl.col(layout["key"]).is_in(dropped.implode()))
    if layout.get("delta"):
        return pl.concat([base, storage.scan_parquet([layout["delta"]])])
    return base


def _write_head(
    storage: Storage,
    head: str,
    schema: pl.Schema,
    layout: dict,
    rows: int,
    non_null: dict,
    extra: dict,
) -> str:
    footer = {"rows": rows, "non_null": non_null, **extra, PARTS_KEY: layout}
    return storage.write_parquet(head, pl.DataFrame(schema=schema), footer)


def _tidy(storage: Storage, head: str, keep: set[str]) -> None:
    """Delete the parts no head in ``keep`` names, once they are old enough that no write
    still under way can be about to name them."""
    cutoff = time.time_ns() - int(KEEP_SECONDS * 1e9)
    for name in storage.list(folder(head)):
        if name not in keep and _written_ns(name) < cutoff:
            storage.delete(name)
    storage.remove_stale_temp_files(folder(head))


def _layout_now(storage: Storage, head: str) -> dict | None:
    try:
        return storage.footer(head).get(PARTS_KEY)
    except FileNotFoundError:
        return None


class PartWriter:
    """Writes one table's rows as base parts of about ``part_rows`` rows each, the file writes on
    ``pool`` (a part is written while the next one is gathered), and then its head."""

    def __init__(
        self,
        storage: Storage,
        head: str,
        schema: pl.Schema,
        pool: ThreadPoolExecutor,
        part_rows: int | None = None,
    ):
        self.storage, self.head, self.schema, self.pool = storage, head, schema, pool
        self.part_rows = part_rows or PART_ROWS
        self.before = _layout_now(storage, head) if storage.exists(head) else None
        self.files: list[str] = []
        self.rows, self.non_null = 0, dict.fromkeys(schema.names(), 0)
        self._pending: list[pl.DataFrame] = []
        self._in_flight: Future | None = None

    def add(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        if df.schema != self.schema:
            df = df.select(pl.col(c).cast(t) for c, t in self.schema.items())
        self.rows += df.height
        for c, n in df.null_count().row(0, named=True).items():
            self.non_null[c] += df.height - n
        self._pending.append(df)
        if sum(p.height for p in self._pending) >= self.part_rows:
            self._flush()

    def _flush(self) -> None:
        if self._in_flight is not None:
            self._in_flight.result()  # one part of this table in flight at a time
        name = _part_name(self.head, "base")
        self.files.append(name)
        part = pl.concat(self._pending)
        self._pending.clear()
        self._in_flight = self.pool.submit(
            self.storage._write_parquet_file, name, part, PART_OPTIONS
        )

    def close(self, footer: dict) -> str:
        """Write what is left, then the head with ``footer``; returns the head's URI."""
        if self._pending:
            self._flush()
        if self._in_flight is not None:
            self._in_flight.result()
        layout = {"files": self.files, "key": None, "drop": None, "delta": None}
        uri = _write_head(
            self.storage, self.head, self.schema, layout, self.rows, self.non_null, footer
        )
        _tidy(self.storage, self.head, named(layout) | named(self.before))
        return uri


def write_stream(
    storage: Storage,
    head: str,
    schema: pl.Schema,
    frames: Iterable[pl.DataFrame],
    footer: Callable[[], dict],
) -> tuple[str, int]:
    """Write frames as base parts of ``PART_ROWS`` rows (a table larger than memory takes the
    memory of about two parts), then the head; ``footer`` is called once the last frame is in.
    Returns the head's URI and the rows written."""
    with ThreadPoolExecutor(1, thread_name_prefix="amp-braze-part") as pool:
        writer = PartWriter(storage, head, schema, pool)
        for df in frames:
            writer.add(df)
        return writer.close(footer()), writer.rows


def write_changes(
    storage: Storage,
    head: str,
    previous: Snapshot,
    key: str,
    new_rows: pl.DataFrame,
    dropped: pl.Series,
    rows: int,
    non_null: dict[str, int],
    footer: dict,
) -> tuple[str, str]:
    """The table of ``previous`` without the rows of the keys in ``dropped``, with ``new_rows``
    (every current row of those keys) added: only the changes are written while they are a small
    share of the table. Returns the head's URI and how it was written (``changes`` or ``compacted``)."""
    before = previous.footer.get(PARTS_KEY)
    schema = previous.frame.collect_schema()
    new_rows = new_rows.select(pl.col(c).cast(t) for c, t in schema.items())
    dropped = dropped.rename(key).cast(schema[key]).unique()
    if before is not None and before.get("key") in (None, key):
        old_drop = (
            storage.read_parquet(before["drop"]).to_series()
            if before.get("drop")
            else pl.Series(key, [], schema[key])
        )
        old_delta = (
            storage.read_parquet(before["delta"])
            if before.get("delta")
            else pl.DataFrame(schema=schema)
        )
        delta = pl.concat([old_delta.filter(~pl.col(key).is_in(dropped.implode())), new_rows])
        drop = pl.concat([old_drop, dropped]).unique()
        if delta.height + drop.len() <= COMPACT_AT * max(rows, 1):
            layout = {
                "files": before["files"],
                "key": key,
                "drop": _part_name(head, "drop"),
                "delta": _part_name(head, "delta"),
                "dropped_keys": drop.len(),
                "delta_rows": delta.height,
            }
            storage._write_parquet_file(layout["drop"], drop.to_frame(), PART_OPTIONS)
            storage._write_parquet_file(layout["delta"], delta, PART_OPTIONS)
            uri = _write_head(storage, head, schema, layout, rows, non_null, footer)
            _tidy(storage, head, named(layout) | named(before))
            return uri, "changes"
    kept = previous.frame.filter(~pl.col(key).is_in(dropped.implode()))
    base = _part_name(head, "base")
    with storage._staged_file(base) as path:
        pl.concat([kept, new_rows.lazy()]).sink_parquet(path, **PART_OPTIONS)
    layout = {"files": [base], "key": None, "drop": None, "delta": None}
    uri = _write_head(storage, head, schema, layout, rows, non_null, footer)
    _tidy(storage, head, named(layout) | named(before))
    return uri, "compacted"


def describe(footer: dict) -> dict[str, int] | None:
    """How a head's table is laid out, for metadata (None: one file)."""
    layout = footer.get(PARTS_KEY)
    if layout is None:
        return None
    return {
        "base_parts": len(layout["files"]),
        "rows_changed_since_base": layout.get("delta_rows", 0),
        "keys_replaced_since_base": layout.get("dropped_keys", 0),
    }
